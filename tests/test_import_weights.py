"""Fidelity to the reference PyTorch network: its trained weights give its figures here."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import keras

from keras_resnet_cifar import convert_checkpoint
from keras_resnet_cifar.models import reference_weights
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


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    for weights in (bad, tmp_path / "missing.npz"):
        r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.import_weights",
                            f"--weights={weights}", f"--out={tmp_path / 'o.keras'}"],
                           capture_output=True, text=True)
        assert r.returncode == 1
        assert "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("depth,correct", [(20, 9173), (32, 9263), (44, 9310), (56, 9339)])
def test_reference_weights_reproduce_reference_accuracy(depth, correct, reference_dir,
                                                        cifar10_test_set, tmp_path):
    """The reference's published figures, to the image, on the original test set.

    ResNet-20 91.73%, ResNet-32 92.63%, ResNet-44 93.10%, ResNet-56 93.39% (the
    reference README). The smallest top-2 margin is 2e-4 (ResNet-56), far above
    float noise, so the count is exact.
    """
    out = tmp_path / f"resnet{depth}.keras"
    subprocess.run([sys.executable, "-m", "keras_resnet_cifar.import_weights",
                    f"--weights={reference_dir / f'resnet{depth}.npz'}", f"--out={out}"],
                   check=True, capture_output=True)
    model = keras.saving.load_model(out, safe_mode=True)
    x, y = cifar10_test_set
    probs = model.predict(x.astype(np.float32), batch_size=500, verbose=0)
    assert int(np.sum(probs.argmax(-1) == y)) == correct


def test_to_state_dict_inverts_the_import():
    state = _fake_state(8, np.random.default_rng(1))
    back = reference_weights.to_state_dict(reference_weights.reference_model(state))
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_to_state_dict_of_plain_and_option_b_nets():
    from keras_resnet_cifar.models import networks

    plain = reference_weights.to_state_dict(networks.build_model("plain8"))
    assert sorted(plain) == sorted(_fake_state(8, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="Option-B"):
        reference_weights.to_state_dict(networks.build_model("resnet8", shortcut="B"))


def _import(tmp_path, *flags):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home")}
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.import_weights", *flags],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_released_model_in_one_step(tmp_path, released_resnet20, http_server,
                                      closed_port_url):
    """--weights=resnet20: downloaded (a loopback server), checked, cached, converted, written."""
    site = tmp_path / "site" / "models"
    site.mkdir(parents=True)
    shutil.copy(released_resnet20, site)
    base, asked = http_server(tmp_path / "site")
    r = _import(tmp_path, "--weights=resnet20", f"--weights_url={base}")
    assert r.returncode == 0, r.stderr
    assert asked == ["/models/resnet20-12fca82f.th"]
    cached = tmp_path / "keras_home" / "models" / "resnet20-12fca82f.th"
    assert cached.read_bytes() == released_resnet20.read_bytes()
    out = tmp_path / "runs" / "reference" / "resnet20.keras"
    assert f"wrote {out.relative_to(tmp_path)}: resnet20, 269,722 trainable" in r.stdout
    assert "Yerlan Idelbayev" in (out.parent / "LICENSE.weights").read_text()
    model = keras.saving.load_model(out, safe_mode=True)
    state = convert_checkpoint.convert(released_resnet20)
    np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0],
                                  state["linear.weight"].T)
    # The cache answers the next time: no server at all.
    r = _import(tmp_path, "--weights=resnet20", f"--weights_url={closed_port_url}",
                f"--out={tmp_path / 'again.keras'}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again.keras").is_file()


def test_offline_is_one_line_naming_the_url(tmp_path, closed_port_url):
    base = closed_port_url
    r = _import(tmp_path, "--weights=resnet56", f"--weights_url={base}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: Cannot download {base}resnet56-4bfd9763.th (")
    assert "resnet56-4bfd9763.th (it is checked against the same hash)" in line
    assert not (tmp_path / "runs").exists()


def test_a_th_file_is_taken_directly(tmp_path, released_resnet20):
    r = _import(tmp_path, f"--weights={released_resnet20}", f"--out={tmp_path / 'r20.keras'}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r20.keras").is_file() and (tmp_path / "LICENSE.weights").is_file()


@pytest.mark.realdata
def test_the_released_file_converts_to_the_reference_arrays(reference_dir, released_resnet20):
    """The fixture (the real release) gives exactly the arrays the exactness tests score."""
    state = convert_checkpoint.convert(released_resnet20)
    with np.load(reference_dir / "resnet20.npz") as ref:
        assert sorted(ref.files) == sorted(state)
        for key in ref.files:
            np.testing.assert_array_equal(state[key], ref[key], err_msg=key)


def test_weights_that_would_cost_gigabytes_are_refused_before_they_are_read(tmp_path):
    # Issue 29: weights whose key names implied ResNet-12002 took 3.5 GB and 114 s; an
    # .npz member of 2 GB was read whole.
    import zipfile

    from keras_resnet_cifar.errors import UserError

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
