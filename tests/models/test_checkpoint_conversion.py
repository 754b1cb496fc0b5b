"""checkpoint_conversion: a .th's state dict as exactly the arrays torch saved
(tests/fixtures, see its script), written to an .npz that loads without pickle."""

from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar.models import checkpoint_conversion, torch_checkpoint

DATA = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = dict(np.load(DATA / "torch_tiny.npz"))


@pytest.mark.parametrize("name", ["torch_tiny_zip.th", "torch_tiny_legacy.th"])
def test_both_formats_give_exactly_torch_arrays(name):
    checkpoint = torch_checkpoint.load(DATA / name)
    assert float(checkpoint["best_prec1"]) == 91.25
    raw = checkpoint["state_dict"]
    assert list(raw) == [f"module.{k}" for k in EXPECTED]  # order kept
    for key, want in EXPECTED.items():
        got = raw[f"module.{key}"]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    state = checkpoint_conversion.convert(DATA / name)
    assert set(state) == {k for k in EXPECTED if not k.endswith("num_batches_tracked")}
    for key, value in state.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, EXPECTED[key])


def test_write_npz_keeps_every_key_and_no_pickle(tmp_path):
    state = {"allow_pickle": np.ones(2, np.float32), "file": np.zeros(3, np.int64),
             "layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    checkpoint_conversion.write_npz(state, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as loaded:
        assert set(loaded) == set(state)
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary left
