"""scripts/run_progress.py: where long runs stand, read from their run folders."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_progress.py"


def _run(tmp_path, name, epochs, times):
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "resnet20", "epochs": epochs}))
    rows = [{"epoch": i + 1, "val_accuracy": acc, "epoch_time_s": t, "images_per_sec": 50000 / t,
             "load_average": 2.0} for i, (acc, t) in enumerate(times)]
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    return run


def _progress(*paths):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_rows_for_a_run_in_progress_and_one_not_started(tmp_path):
    # 3 of 10 epochs at 100, 200, 300 s: median 200 s, 7 left -> 1400 s from now.
    run = _run(tmp_path, "resnet20-seed0", 10, [(0.4, 100), (0.6, 200), (0.5, 300)])
    result = _progress(run, tmp_path / "plain20-seed0")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| resnet20"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:7] == ["3/10", "50.00%", "60.00% (2)", "250", "200", "2.0"]
    assert "| plain20-seed0 | 0/? |" in result.stdout and "not started" in result.stdout


def test_a_finished_run_says_so(tmp_path):
    run = _run(tmp_path, "r", 2, [(0.4, 100), (0.6, 100)])
    (run / "metrics.json").write_text("{}")
    assert _progress(run).stdout.rstrip().endswith("| finished |")


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = _progress(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: not a run folder: {tmp_path}"
