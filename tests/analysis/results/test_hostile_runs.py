"""Issue 29: run folders whose files hold what a report cannot publish are one line.

A report reads the small files of each run; a malformed value (a string where a
number belongs, NaN, an accuracy outside [0, 1], a missing key) was a traceback
or, worse, a figure in report.md. Now the file and the value are named instead.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from keras_resnet_cifar.analysis.results import runs
from keras_resnet_cifar.errors import UserError
from tests.analysis.results.fake_runs import epoch_run as make_run, evaluation

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
NAN = float("nan")


def _edit(run, name, change):
    content = json.loads((run / name).read_text()) if (run / name).exists() else {}
    change(content)
    (run / name).write_text(json.dumps(content))  # NaN is written as NaN, as json allows


def _row(index, **values):
    return lambda h: h["epochs"][index].update(values)


POINT = {"step": 10, "epoch": 1.0, "test_error": 0.3, "train_error": 0.4}


@pytest.mark.parametrize("name,change,message", [
    ("history.json", lambda h: h["epochs"][2].pop("epoch"), r"epochs\[2\]\.epoch is missing"),
    ("history.json", _row(2, epoch="three"), r"epochs\[2\]\.epoch is 'three', not an integer"),
    ("history.json", _row(1, accuracy="high"), r"epochs\[1\]\.accuracy is 'high', not a finite"),
    ("history.json", _row(1, val_accuracy=1.5), r"epochs\[1\]\.val_accuracy is 1\.5, not a "
                                                r"finite number in \[0, 1\]"),
    ("history.json", _row(0, val_accuracy=-0.5), r"epochs\[0\]\.val_accuracy is -0\.5"),
    ("history.json", _row(2, val_accuracy=NAN), r"epochs\[2\]\.val_accuracy is nan"),
    ("history.json", _row(2, epoch_time_s="x"), r"epochs\[2\]\.epoch_time_s is 'x'"),
    ("history.json", _row(2, epoch=5), r"its epochs are not 1, 2, \.\.\. in order \(got \[1, 2, 5\]\)"),
    ("metrics.json", lambda m: m.update(test_accuracy=NAN), "test_accuracy is nan"),
    ("metrics.json", lambda m: m.update(best="x"), "best is not an object"),
    ("metrics.json", lambda m: m["best"].update(value=float("inf")), "best.value is inf"),
    ("metrics.json", lambda m: m.update(params_trainable="x"), "params_trainable is 'x'"),
    ("config.json", lambda c: c.pop("batch_size"), "batch_size is missing"),
    ("config.json", lambda c: c.update(seed="x"), "seed is 'x'"),
    ("config.json", lambda c: c.update(validation_split=50_000), "validation_split leaves no training image"),
    ("evaluation.json", lambda e: e.update(accuracy=3.0), "accuracy is 3.0"),
    ("evaluation.json", lambda e: e.pop("accuracy"), "accuracy is missing"),
    ("curve.json", lambda c: c.update(points_per_epoch=2, steps_per_epoch=10,
                                      points=[POINT, {**POINT, "test_error": NAN}]),
     r"points\[1\]\.test_error is nan"),
    ("curve.json", lambda c: c.update(points_per_epoch=2, steps_per_epoch=10, points=[1]),
     r"points\[0\] is not an object"),
    ("layer_stats.json", lambda s: s.update(epochs="x"), "response_layers is missing"),
])
def test_a_malformed_run_file_is_named_with_its_value(tmp_path, name, change, message):
    run = make_run(tmp_path, "resnet20", 0, [0.6, 0.8, 0.9], [0.55, 0.7, 0.8],
                   evaluation=evaluation(0.81))
    runs.load_run(run)  # intact
    _edit(run, name, change)
    with pytest.raises(UserError, match=rf"^{re.escape(str(run / name))}: {message}"):
        runs.load_run(run)


def _report(*args):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report", *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=120)


def test_the_report_command_publishes_no_nan_and_refuses_an_out_that_is_a_file(tmp_path):
    run = make_run(tmp_path, "resnet20", 0, [0.6, 0.8, 0.9], [0.55, 0.7, 0.8])
    _edit(run, "history.json", _row(2, val_accuracy=NAN))
    done = _report(run, f"--out={tmp_path / 'out'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {run / 'history.json'}: epochs[2].val_accuracy is nan, not a finite number "
        "in [0, 1]: a report never publishes it; restore the file or leave the run out."]
    assert not (tmp_path / "out").exists()

    _edit(run, "history.json", _row(2, val_accuracy=0.8))
    (tmp_path / "file").write_text("x")
    done = _report(run, f"--out={tmp_path / 'file'}")
    assert done.returncode == 1 and done.stderr.splitlines() == [
        f"error: Cannot create --out {tmp_path / 'file'}: {tmp_path / 'file'} is not a folder."]
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("case", ["report_dir_is_a_file", "reference_run", "published_run"])
def test_study_refuses_what_its_report_could_not_use_before_training(tmp_path, case):
    # Found after the training (hours) before: a traceback, or NaN in the report.
    args = [f"--out={tmp_path / 'study'}", f"--report_dir={tmp_path / 'report'}"]
    if case == "report_dir_is_a_file":
        (tmp_path / "report").write_text("x")
        message = (f"Cannot create --report_dir {tmp_path / 'report'}: {tmp_path / 'report'} "
                   "is not a folder.")
    else:
        folder = tmp_path / ("reference" if case == "reference_run" else "report/runs")
        run = make_run(folder, "resnet20", 0, [0.6, 0.8, 0.9], [0.55, 0.7, 0.8])
        _edit(run, "history.json", _row(1, accuracy="x"))
        args += [f"--reference_dir={folder}"] if case == "reference_run" else []
        message = (f"{run / 'history.json'}: epochs[1].accuracy is 'x', not a finite number in "
                   "[0, 1]: a report never publishes it; restore the file or leave the run out.")
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.study", "--models=resnet8",
                           *args], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.splitlines() == [f"error: {message}"], \
        done.stderr
    assert sorted(tmp_path.rglob("*")) == before
