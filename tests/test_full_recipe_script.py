"""scripts/full_recipe.sh, the driver of Table 1's days of training: a network cut in the
middle stops the script and is resumed by the next call, a finished one is evaluated once,
a call with everything done runs nothing, and a finished one copied back from its
committed small files (a new machine) is not trained again."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar import run_files
from keras_resnet_cifar.data import cifar_files

REPO = Path(__file__).resolve().parents[1]
NETS = ("resnet8", "plain8")  # in the script's order, as Table 1's resnet20, plain20

CTRL_C_HOOK = REPO / "tests" / "fixtures" / "ctrl_c"  # KRC_TEST_CUT=model:epoch:step


def _blank_cifar(root: Path) -> Path:
    """The official binary layout at its full size (the reader checks it), blank images."""
    folder = root / cifar_files.BIN_DIR
    folder.mkdir(parents=True)
    records = np.zeros((cifar_files.RECORDS_PER_BATCH, cifar_files.RECORD_BYTES), np.uint8)
    records[:, 0] = np.arange(cifar_files.RECORDS_PER_BATCH) % 10
    for name in (*cifar_files.TRAIN_BATCHES, cifar_files.TEST_BATCH):
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return root


def _stamps(out: Path) -> list[str]:
    return [line.split(" (code")[0].split("Z ", 1)[1]
            for net in NETS if (out / f"{net}.log").exists()
            for line in (out / f"{net}.log").read_text().splitlines()
            if line.startswith("=== ")]


@pytest.mark.slow
def test_full_recipe_script_stops_at_a_cut_net_resumes_it_and_skips_finished_ones(tmp_path):
    # The script as committed, beside flag files of a tiny recipe (it reads flags/<net>.cfg):
    # 4 steps of 25 images an epoch, 2 test batches.
    home = tmp_path / "checkout"
    (home / "scripts").mkdir(parents=True)
    for name in ("full_recipe.sh", "project_python.sh"):
        shutil.copy2(REPO / "scripts" / name, home / "scripts" / name)
    (home / "flags").mkdir()
    for net in NETS:
        (home / "flags" / f"{net}.cfg").write_text(
            f"--model={net}\n--epochs=2\n--batch_size=25\n--steps_per_epoch=4\n"
            "--eval_steps=2\n--lr_boundaries=1\n")
    data, out = _blank_cifar(tmp_path / "data"), tmp_path / "runs"
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(CTRL_C_HOOK), str(REPO)])}
    command = [str(home / "scripts" / "full_recipe.sh"), str(out), str(data), *NETS]

    # resnet8 is cut after step 2 of its second epoch.
    cut = subprocess.run(command, env={**env, "KRC_TEST_CUT": "resnet8:1:1"},
                         capture_output=True, text=True, timeout=600)
    assert cut.returncode == 1
    assert cut.stderr.strip().splitlines()[-1] == (
        "resnet8 stopped before its last epoch (exit 130): run this again to resume")
    resnet = out / "resnet8-seed0"
    assert [r["epoch"] for r in run_files.read_history(resnet)] == [1]
    assert not (resnet / run_files.METRICS).exists()
    assert not (out / "plain8-seed0").exists()  # the next net waits for this one
    assert _stamps(out) == ["train resnet8", "train resnet8 exit 130"]

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from epoch 1 of 2" in (out / "resnet8.log").read_text()
    assert _stamps(out) == ["train resnet8", "train resnet8 exit 130",
                            "train resnet8", "train resnet8 exit 0", "evaluate resnet8 exit 0",
                            "train plain8", "train plain8 exit 0", "evaluate plain8 exit 0"]
    for net in NETS:
        run = out / f"{net}-seed0"
        assert [r["epoch"] for r in run_files.read_history(run)] == [1, 2]
        for name in (run_files.METRICS, "evaluation.json", "per_class.csv",
                     "confusion_matrix.csv"):
            assert (run / name).is_file(), (net, name)

    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files

    # On a new machine (docs/table1, "Resuming the runs"): a finished net's committed small
    # files, copied back, are not trained again; a net whose folder was lost starts over.
    committed = tmp_path / "committed"
    run_files.copy_small_files(resnet, committed)
    shutil.rmtree(out)
    shutil.copytree(committed, resnet)
    kept = {p: p.stat().st_mtime_ns for p in resnet.rglob("*")}
    new = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert new.returncode == 0, new.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in resnet.rglob("*")} == kept
    assert _stamps(out) == ["train plain8", "train plain8 exit 0", "evaluate plain8 exit 0"]
    assert [r["epoch"] for r in run_files.read_history(out / "plain8-seed0")] == [1, 2]
