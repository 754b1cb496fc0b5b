"""The convert_checkpoint command against arrays torch itself saved (tests/fixtures, see
its script). The reader under it: tests/models/test_torch_checkpoint.py."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_resnet_cifar import convert_checkpoint
from keras_resnet_cifar.models import reference_weights

DATA = Path(__file__).resolve().parent / "fixtures"
EXPECTED = dict(np.load(DATA / "torch_tiny.npz"))


def _convert(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.convert_checkpoint", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_writes_an_npz_import_weights_can_read(tmp_path):
    out = tmp_path / "tiny.npz"
    r = _convert(str(DATA / "torch_tiny_legacy.th"), f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote {out}: 17 arrays" in r.stdout and not r.stderr
    # The licence travels with the weights, where import_weights and export look for it.
    licence = (tmp_path / "LICENSE.weights").read_text()
    assert licence == reference_weights.LICENCE_TEXT and "Yerlan Idelbayev" in licence
    assert licence.count("\n\n") == 4  # five paragraphs, each on one line
    state = reference_weights.load_state_dict(out)  # allow_pickle=False
    assert set(state) == {k for k in EXPECTED if not k.endswith("num_batches_tracked")}
    np.testing.assert_array_equal(state["linear.weight"], EXPECTED["linear.weight"])


def test_cli_several_checkpoints_into_a_folder_and_old_spellings(tmp_path):
    both = [str(DATA / "torch_tiny_legacy.th"), str(DATA / "torch_tiny_zip.th")]
    r = _convert(*both, f"--out={tmp_path / 'weights'}")
    assert r.returncode == 0, r.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert written == ["LICENSE.weights", "torch_tiny_legacy.npz", "torch_tiny_zip.npz"]
    assert convert_checkpoint.output_paths(["m/resnet20-12fca82f.th"], None) == [
        Path("m/resnet20-12fca82f.npz")]  # without --out: beside the checkpoint
    assert _convert(*both, f"--out={tmp_path / 'one.npz'}").stderr.splitlines() == [
        f"error: --out={tmp_path / 'one.npz'} is one file for 2 checkpoints: give a folder."]
    (tmp_path / "file").write_text("")
    unwritable = _convert(both[0], f"--out={tmp_path / 'file' / 'a.npz'}").stderr.splitlines()
    assert len(unwritable) == 1
    assert unwritable[0].startswith(f"error: Cannot write {tmp_path / 'file' / 'a.npz'} (")
    assert _convert().stderr.splitlines() == [
        "error: Give the reference's .th checkpoints to convert, e.g. resnet20-12fca82f.th."]
