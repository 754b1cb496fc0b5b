"""The study runner: flags to spec, a tiny real study end to end, resuming, the wrapper."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from keras_resnet_cifar import rundir, study
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def parse(*args):
    fv = flags.FlagValues()
    study.define_flags(fv)
    fv(["study", *args])
    return study.spec_from_flags(fv)


def test_flags_become_a_spec():
    spec = parse("--epochs=30", "--lr_boundaries=10,20", "--seeds=0,1",
                 "--layer_stats_epochs=0,30")
    assert spec.models == study.SEED_MODELS and spec.seeds == (0, 1)
    assert spec.base.epochs == 30 and spec.base.lr_boundaries == (10, 20)
    assert spec.layer_stats_epochs == (0, 30)
    configs = spec.configs()
    assert [(c.model, c.seed) for c in configs][:5] == [
        ("plain20", 0), ("resnet20", 0), ("plain56", 0), ("resnet56", 0), ("plain20", 1)]
    assert study.run_dir("out", configs[1]) == Path("out/runs/resnet20-seed0")


def test_quick_and_depth_sweep():
    quick = parse("--quick", "--epochs=4", "--depth_sweep")
    assert quick.base.epochs == 4  # an explicit flag wins over --quick
    assert quick.base.steps_per_epoch == study.QUICK["steps_per_epoch"]
    assert quick.base.lr_boundaries == study.QUICK["lr_boundaries"]
    assert len(quick.models) == 8 and quick.models[3] == "plain56"
    full = parse()
    assert full.base == TrainConfig(model=full.base.model)  # the paper's recipe


def test_the_cpu_flag_file_parses():
    spec = parse(f"--flagfile={REPO / 'flags' / 'study' / 'cpu.cfg'}")
    assert spec.base.steps_per_epoch * spec.base.batch_size * spec.base.epochs == 18_432
    assert spec.base.warmup_epochs == 2 and spec.layer_stats_epochs == (0, 6, 12)


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


@pytest.mark.parametrize("bad,message", [
    (["--models=plain21"], "21"), (["--seeds=a"], "--seeds must be integers"),
    (["--models="], "--models is empty"), (["--momentum=2"], "--momentum"),
    (["--seeds="], "--seeds is empty")])
def test_bad_flags_are_user_errors(bad, message):
    with pytest.raises(UserError, match=message):
        parse(*bad)


@pytest.mark.slow
def test_tiny_study_trains_evaluates_reports_and_resumes(tmp_path, monkeypatch):
    from keras_resnet_cifar import datasets

    loads = []
    real_load = datasets.load
    monkeypatch.setattr(datasets, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    base = TrainConfig(dataset="synthetic", synthetic_train_size=64, synthetic_test_size=32,
                       epochs=1, batch_size=16, steps_per_epoch=1, eval_steps=1)
    spec = study.StudySpec(models=("plain8", "resnet8"), base=base,
                           layer_stats_epochs=(0, 1), layer_stats_batch=8)
    data = study.DataCache()
    dirs = study.train_all(spec, tmp_path, verbose=0, data=data)
    assert [d.name for d in dirs] == ["plain8-seed0", "resnet8-seed0"]
    study.evaluate_all(dirs, base, batch_size=16, data=data)
    assert len(loads) == 1  # one data set, loaded once for two runs and their evaluations
    for d in dirs:
        assert len(json.loads((d / "history.json").read_text())["epochs"]) == 1
        assert [e["epoch"] for e in json.loads((d / "layer_stats.json").read_text())
                ["epochs"]] == [0, 1]
        assert rundir.read_evaluation(d)["images"] == 32
    # Resuming: nothing is retrained or re-evaluated.
    stamps = {p: p.stat().st_mtime_ns for d in dirs
              for p in (d / "model.keras", d / "evaluation.json")}
    assert study.train_all(spec, tmp_path, verbose=0) == dirs
    study.evaluate_all(dirs, base, batch_size=16)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    from keras_resnet_cifar import report

    md = report.write_report(dirs, tmp_path / "report").read_text()
    assert "| plain | plain8 | 8 | 75,290 | 1 |" in md
    assert "At depth 8, the residual net is more accurate" in md


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
