"""The Keras-free architecture table: which model names exist and what they mean."""

import pytest

from keras_resnet_cifar.models import arch


@pytest.mark.parametrize("bad", ["resnet21", "resnet2", "plain", "vgg16", "resnet-20", 20,
                                 "resnet20\n", "resnet\u0662\u0660", "resnet1208"])
def test_bad_names_raise_value_error(bad):
    with pytest.raises(ValueError) as e:
        arch.parse_name(bad)
    assert repr(bad) in str(e.value)


def test_other_6n_plus_2_depths_are_accepted():
    assert arch.parse_name("resnet8").blocks_per_stage == 1
    assert arch.parse_name("plain1202").blocks_per_stage == 200
    spec = arch.parse_name("resnet56")
    assert (spec.residual, spec.depth, spec.widths) == (True, 56, (16, 32, 64))
