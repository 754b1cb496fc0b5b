"""The study: flags to spec (the CLI), a tiny real study end to end (the library), resuming,
the wrapper."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from keras_resnet_cifar import study
from keras_resnet_cifar.analysis import depth_study
from keras_resnet_cifar import run_files
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def parse(*args):
    fv = flags.FlagValues()
    study.define_flags(fv)
    fv(["study", *args])
    return study.spec_from_flags(fv)


def test_flags_become_a_spec():
    spec = parse("--epochs=30", "--lr_boundaries=10,20.5", "--seeds=0,1",
                 "--layer_stats_epochs=0,15.5,30", "--curve_points_per_epoch=4",
                 "--curve_test_images=500")
    assert spec.models == depth_study.SEED_MODELS and spec.seeds == (0, 1)
    assert spec.base.epochs == 30 and spec.base.lr_boundaries == (10, 20.5)
    assert spec.layer_stats_epochs == (0, 15.5, 30)
    assert (spec.curve_points_per_epoch, spec.curve_test_images) == (4, 500)
    configs = spec.configs()
    assert [(c.model, c.seed) for c in configs][:5] == [
        ("plain20", 0), ("resnet20", 0), ("plain56", 0), ("resnet56", 0), ("plain20", 1)]
    assert depth_study.run_dir("out", configs[1]) == Path("out/runs/resnet20-seed0")


def test_quick_and_depth_sweep():
    quick = parse("--quick", "--epochs=4", "--depth_sweep")
    assert quick.base.epochs == 4  # an explicit flag wins over --quick
    assert quick.base.steps_per_epoch == study.QUICK["steps_per_epoch"]
    assert quick.base.lr_boundaries == study.QUICK["lr_boundaries"]
    assert len(quick.models) == 8 and quick.models[3] == "plain56"
    full = parse()
    assert full.base == TrainConfig(model=full.base.model)  # train's default recipe


def test_the_cpu_flag_file_parses():
    spec = parse(f"--flagfile={REPO / 'flags' / 'study' / 'cpu.cfg'}")
    assert spec.base.steps_per_epoch * spec.base.batch_size * spec.base.epochs == 18_432
    assert spec.base.warmup_epochs == 2 and spec.layer_stats_epochs == (0, 6, 12)


def test_the_three_passes_flag_file_is_three_full_passes_with_drops_at_40_and_60_percent():
    spec = parse(f"--flagfile={REPO / 'flags' / 'study' / 'three_passes.cfg'}")
    base = spec.base
    assert spec.models == ("plain20", "resnet20", "plain56", "resnet56")
    assert base.steps_per_epoch is None and base.epochs >= 3  # full passes, every image
    assert (base.batch_size, base.learning_rate, base.warmup_epochs) == (128, 0.1, 0)
    assert base.dataset == "cifar10" and base.validation_split == 0
    steps = math.ceil(50_000 / base.batch_size)
    total = steps * base.epochs
    rates = [learning_rate_at(e + s / steps, base)
             for e in range(base.epochs) for s in range(steps)]
    # 0.1 until 40% of the steps, 0.01 until 60%, then 0.001: the drops fall inside epochs.
    first, second = rates.index(rates[-1] * 10), rates.index(rates[-1])
    assert (first, second) == (math.ceil(0.4 * total), math.ceil(0.6 * total))
    assert first % steps and second % steps
    assert spec.curve_points_per_epoch * base.epochs >= 10
    assert spec.layer_stats_epochs == (0, base.epochs / 2, base.epochs)


@pytest.mark.parametrize("path", sorted(REPO.glob("flags/study/*.cfg")), ids=lambda p: p.name)
def test_study_flag_files_hold_only_what_differs_from_the_defaults(path):
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    fv = flags.FlagValues()
    study.define_flags(fv)
    fv(["study", f"--flagfile={path}"])
    for line in lines:
        name, _, value = line[2:].partition("=")
        assert fv[name].value != fv[name].default, f"{path.name}: {line} is the default"


def test_every_training_flag_reaches_the_runs():
    # Fields the study once could not set: momentum, weight decay, shortcut, validation
    # split, distribution, precision.
    spec = parse("--momentum=0.8", "--weight_decay=5e-4", "--shortcut=B",
                 "--validation_split=500", "--distribute=none",
                 "--mixed_precision=mixed_bfloat16", "--models=plain20,resnet20", "--seeds=3")
    for config in spec.configs():
        assert (config.momentum, config.weight_decay, config.shortcut,
                config.validation_split, config.distribute, config.mixed_precision) == (
            0.8, 5e-4, "B", 500, "none", "mixed_bfloat16")
    assert [(c.model, c.seed) for c in spec.configs()] == [("plain20", 3), ("resnet20", 3)]
    fv = flags.FlagValues()
    study.define_flags(fv)
    assert "model" not in fv and "seed" not in fv  # --models and --seeds instead


@pytest.mark.parametrize("bad,words", [
    (["--models=plain21"], ("plain21",)), (["--models=plain20,plain21"], ("plain21",)),
    (["--seeds=a"], ("seeds", "a")), (["--models="], ("models", "empty")),
    (["--momentum=2"], ("momentum", "2")), (["--seeds="], ("seeds", "empty")),
    (["--layer_stats_epochs=a"], ("layer_stats_epochs", "a")),
    (["--epochs=3", "--layer_stats_epochs=0,4"], ("layer_stats_epochs", "4", "epochs=3")),
    (["--lr_boundaries=1.8,1.2"], ("lr_boundaries", "1.8, 1.2"))])
def test_bad_flags_are_user_errors(bad, words):
    """The flag (or argument) at fault and its value, however the sentence is worded."""
    with pytest.raises(UserError) as e:
        parse(*bad)
    assert all(word in str(e.value) for word in words), e.value


@pytest.mark.parametrize("bad,named", [
    ("--lr_boundaries=1.8,1.2", "--lr_boundaries"), ("--momentum=2", "--momentum"),
    ("--seeds=4294967296", "4294967296"), ("--seeds=0,4294967296", "4294967296"),
    ("--models=resnet20,resnet21", "resnet21")])
def test_a_refused_value_prints_the_study_flag_in_one_line(bad, named, tmp_path):
    """cli spells the argument as its flag, but --models and --seeds are the study's (not
    train's --model and --seed): those refusals stay prose."""
    r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.study", bad,
                        f"--out={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert not re.search(r"--(model|seed)\b", lines[0]), lines


@pytest.mark.slow
def test_tiny_study_trains_evaluates_reports_and_resumes(tmp_path, monkeypatch):
    from keras_resnet_cifar.data import datasets

    loads = []
    real_load = datasets.load
    monkeypatch.setattr(datasets, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    base = TrainConfig(dataset="synthetic", synthetic_train_size=64, synthetic_test_size=32,
                       epochs=1, batch_size=16, steps_per_epoch=1, eval_steps=1)
    spec = depth_study.StudySpec(models=("plain8", "resnet8"), base=base,
                           layer_stats_epochs=(0, 1), layer_stats_batch=8)
    data = depth_study.DataCache()
    dirs = depth_study.train_all(spec, tmp_path, verbose=0, data=data)
    assert [d.name for d in dirs] == ["plain8-seed0", "resnet8-seed0"]
    depth_study.evaluate_all(dirs, base, batch_size=16, data=data)
    assert len(loads) == 1  # one data set, loaded once for two runs and their evaluations
    for d in dirs:
        assert len(json.loads((d / "history.json").read_text())["epochs"]) == 1
        assert [e["epoch"] for e in json.loads((d / "layer_stats.json").read_text())
                ["epochs"]] == [0, 1]
        assert run_files.read_evaluation(d)["images"] == 32
        assert (d / run_files.CURVES).read_bytes()[:4] == b"\x89PNG"  # the study draws it
    # Resuming: nothing is retrained or re-evaluated.
    stamps = {p: p.stat().st_mtime_ns for d in dirs
              for p in (d / "model.keras", d / "evaluation.json")}
    assert depth_study.train_all(spec, tmp_path, verbose=0) == dirs
    depth_study.evaluate_all(dirs, base, batch_size=16)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    # The whole study again, with its report: still nothing retrained or re-evaluated.
    done = depth_study.run_study(spec, tmp_path, report_dir=tmp_path / "report",
                              command="python -m keras_resnet_cifar.study --tiny", verbose=0)
    assert done.run_dirs == dirs and done.report == tmp_path / "report" / "report.md"
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    md = done.report.read_text()
    assert "| plain | plain8 | 8 | 75,290 | 1 |" in md
    assert "At depth 8, the residual net is more accurate" in md
    assert "python -m keras_resnet_cifar.study --tiny" in md
    assert {p.name for p in (tmp_path / "report" / "runs").iterdir()} == {d.name for d in dirs}
    assert depth_study.run_study(spec, tmp_path, verbose=0).report is None


@pytest.mark.slow
def test_wrapper_script_reports_a_bad_flag_in_one_line():
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run([str(REPO / "scripts" / "run_study.sh"), "--models=plain21"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: Invalid depth 21 in 'plain21'")


def test_wrapper_script_says_what_python_it_needs(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")  # a Python without the dependencies
    fake.chmod(0o755)
    r = subprocess.run([str(REPO / "scripts" / "run_study.sh"), "--help"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHON=str(fake)))
    assert r.returncode == 1
    assert r.stderr.strip().startswith(f"error: {fake} cannot import absl and tensorflow")
    assert "PYTHON=" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# Its folder on PYTHONPATH cuts a run by Ctrl-C where KRC_TEST_CUT says (model:epoch:step).
CTRL_C_HOOK = REPO / "tests" / "fixtures" / "ctrl_c"


@pytest.mark.slow
def test_smoke_study_is_interrupted_resumed_and_reported(tmp_path):
    """flags/study/smoke.cfg (three_passes.cfg's shape) end to end, cut once mid-epoch."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    args = [f"--flagfile={REPO / 'flags' / 'study' / 'smoke.cfg'}", f"--out={tmp_path}",
            f"--report_dir={tmp_path / 'published'}"]
    spec = parse(args[0])
    steps = math.ceil(spec.base.synthetic_train_size / spec.base.batch_size)
    # resnet8 is cut after the 6th of 8 steps of its second epoch: past two curve points
    # and the mid-run layer statistics of that epoch, which must be taken again.
    cut = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.study", *args],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": os.pathsep.join([str(CTRL_C_HOOK), str(REPO)]),
                              "KRC_TEST_CUT": "resnet8:1:5"})
    assert cut.returncode == 130 and cut.stderr.strip().splitlines()[-1] == "stopped (Ctrl-C)"
    plain, residual = tmp_path / "runs" / "plain8-seed0", tmp_path / "runs" / "resnet8-seed0"
    assert run_files.read_metrics(plain) and not run_files.read_metrics(residual)
    cut_steps = [p["step"] for p in run_files.read_curve(residual)["points"]]
    assert cut_steps == [2, 4, 6, 8, 10, 12, 14]  # through step 6 of epoch 2
    assert [e["epoch"] for e in run_files.read_layer_stats(residual)["epochs"]] == [0, 1.5]
    finished = plain / run_files.MODEL
    stamp = finished.stat().st_mtime_ns

    again = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.study", *args],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert finished.stat().st_mtime_ns == stamp  # the finished run was not retrained
    assert "--model_dir" not in again.stderr  # a flag study does not have
    points_per_run = spec.curve_points_per_epoch * spec.base.epochs
    for run in (plain, residual):
        curve = run_files.read_curve(run)
        got = [p["step"] for p in curve["points"]]
        assert got == [steps * (i + 1) // spec.curve_points_per_epoch
                       for i in range(points_per_run)]  # every point once, in order
        assert [p["epoch"] for p in curve["points"]][-1] == spec.base.epochs
        assert all(p["test_images"] == spec.curve_test_images for p in curve["points"])
        assert [e["epoch"] for e in run_files.read_layer_stats(run)["epochs"]] == [0, 1.5, 3]
        assert [r["epoch"] for r in run_files.read_history(run)] == [1, 2, 3]
    # The rate of each point is the schedule's at its last step (drops at 1.2 and 1.8).
    rates = [p["learning_rate"] for p in run_files.read_curve(residual)["points"]]
    assert rates == pytest.approx([learning_rate_at((p - 1) / steps, spec.base)
                                   for p in range(2, 25, 2)], rel=1e-6)

    published = tmp_path / "published"
    text = (published / "report.md").read_text()
    assert "![error_curves](figures/error_curves.png)" in text
    assert "Ours are after 3 passes (24 iterations)" in text
    for run in (plain, residual):
        copied = {p.name for p in (published / "runs" / run.name).iterdir()}
        assert copied == {n for n in run_files.SMALL_FILES if (run / n).exists()}
        assert run_files.MODEL not in copied


def test_the_training_library_names_no_flag_of_train_only():
    """The run-directory messages reach study users too, who have --out, not --model_dir:
    the library says "run directory" (the commands name their own flags)."""
    for path in (REPO / "keras_resnet_cifar" / "training").glob("*.py"):
        assert "--model_dir" not in path.read_text(), path.name
