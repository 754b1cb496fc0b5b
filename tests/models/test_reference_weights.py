"""The reference PyTorch layout to Keras and back: transposes, refusals, declared sizes."""

import zipfile

import numpy as np
import pytest

from keras_resnet_cifar.models import networks, reference_weights
from keras_resnet_cifar.errors import UserError


def _fake_state(depth, rng):
    n = (depth - 2) // 6
    state = {"conv1.weight": rng.normal(size=(16, 3, 3, 3))}
    for k in ("weight", "bias", "running_mean"):
        state[f"bn1.{k}"] = rng.normal(size=16)
    state["bn1.running_var"] = rng.uniform(0.5, 2, 16)
    cin = 16
    for s, c in enumerate((16, 32, 64), start=1):
        for b in range(n):
            for i, ci in ((1, cin), (2, c)):
                state[f"layer{s}.{b}.conv{i}.weight"] = rng.normal(size=(c, ci, 3, 3))
                for k in ("weight", "bias", "running_mean"):
                    state[f"layer{s}.{b}.bn{i}.{k}"] = rng.normal(size=c)
                state[f"layer{s}.{b}.bn{i}.running_var"] = rng.uniform(0.5, 2, c)
            cin = c
    state["linear.weight"] = rng.normal(size=(10, 64))
    state["linear.bias"] = rng.normal(size=10)
    return {k: v.astype(np.float32) for k, v in state.items()}


def test_layouts_are_transposed_correctly():
    state = _fake_state(8, np.random.default_rng(0))
    model = reference_weights.reference_model(state)
    assert model.name == "resnet8"
    kernel = model.get_layer("stage2_block1_conv1").get_weights()[0]  # HWIO
    np.testing.assert_array_equal(kernel[1, 2, 3, 4], state["layer2.0.conv1.weight"][4, 3, 1, 2])
    dense = model.get_layer("logits").get_weights()
    np.testing.assert_array_equal(dense[0], state["linear.weight"].T)
    bn = model.get_layer("stage3_block1_bn2").get_weights()
    np.testing.assert_array_equal(bn[3], state["layer3.0.bn2.running_var"])


def test_missing_extra_and_misshaped_keys_are_refused():
    state = _fake_state(8, np.random.default_rng(0))
    with pytest.raises(UserError, match="lacks 'linear.bias'"):
        reference_weights.reference_model({k: v for k, v in state.items() if k != "linear.bias"})
    with pytest.raises(UserError, match="does not use"):
        reference_weights.reference_model({**state, "fc.weight": np.zeros(3)})
    with pytest.raises(UserError, match="shape"):
        reference_weights.reference_model({**state, "linear.bias": np.zeros(11, np.float32)})


def test_to_state_dict_inverts_the_import():
    state = _fake_state(8, np.random.default_rng(1))
    back = reference_weights.to_state_dict(reference_weights.reference_model(state))
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_to_state_dict_of_plain_and_option_b_nets():
    plain = reference_weights.to_state_dict(networks.build_model("plain8"))
    assert sorted(plain) == sorted(_fake_state(8, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="Option-B"):
        reference_weights.to_state_dict(networks.build_model("resnet8", shortcut="B"))


def test_weights_that_would_cost_gigabytes_are_refused_before_they_are_read(tmp_path):
    # Issue 29: weights whose key names implied ResNet-12002 took 3.5 GB and 114 s; an
    # .npz member of 2 GB was read whole.
    deep = {f"layer1.{i}.conv1.weight": np.zeros(1, np.float32) for i in range(2000)}
    with pytest.raises(UserError, match="2,000 blocks per stage, a ResNet-12002: deeper than "
                                        "ResNet-1202"):
        reference_weights.reference_model(deep)
    path = tmp_path / "bomb.npz"
    np.savez(path, a=np.zeros(4, np.float32))
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"a.npy") - 46  # the member's central directory entry
    assert raw[entry:entry + 4] == b"PK\x01\x02"
    raw[entry + 24:entry + 28] = (2_000_000_000).to_bytes(4, "little")  # a size that lies
    path.write_bytes(bytes(raw))
    assert zipfile.ZipFile(path).getinfo("a.npy").file_size == 2_000_000_000
    with pytest.raises(UserError, match=r"announces 1 arrays of 2,000,000,000 bytes, more "
                                        r"than the 10,000 arrays and 268,435,456 bytes"):
        reference_weights.load_state_dict(path)
