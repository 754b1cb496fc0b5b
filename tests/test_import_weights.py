"""Fidelity to the reference PyTorch network: its trained weights give its figures here."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import keras

from keras_resnet_cifar import convert_checkpoint


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


