"""build: the whole report from run directories, through the library and the command."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar.analysis.results import build, runs
from keras_resnet_cifar.errors import UserError
from tests.analysis.results.fake_runs import STUDY, curve_run, decay, make_reference, make_study

REPO = Path(__file__).resolve().parents[3]


def test_write_report_files_and_markdown(epoch_study, tmp_path):
    out = tmp_path / "report"
    path = build.write_report(epoch_study, out, accuracy_levels=(0.5, 0.7), command="run it")
    text = path.read_text()
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ("curves_20", "curves_56", "confusion_20", "depth_sweep",
                 "layer_response_std", "layer_response_std_sorted", "layer_gradient_norm"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures
        assert f"![{stem}](figures/{stem}.png)" in text
    assert "confusion_56.png" not in figures  # neither 56-layer run was evaluated
    assert "run it" in text and "Test CPU (6 runs); cores: 2" in text
    assert "## Provenance" in text and "| keras_resnet_cifar | plain20 | 0 | 3 | Test CPU |" in text
    assert "--model=plain56 --epochs=3 --lr_boundaries=3 --steps_per_epoch=10" in text
    assert "**NOT DECIDED (ONE SEED)** (no p): (a) plain-56 is below plain-20" in text
    assert "### Every claim of the reproduction paper" in text
    assert "## How verdicts are decided" in text and "Welch's two-sample t-test" in text
    assert "## Study cost" in text
    assert "Reduced schedule" in text
    assert (out / "table1.md").read_text() in text
    assert len(json.loads((out / "findings.json").read_text())) >= 8
    per_run = list(csv.DictReader((out / "runs.csv").open()))
    assert len(per_run) == 6 and per_run[2]["final_test_source"] == "evaluation.json"
    assert len(list(csv.DictReader((out / "cost.csv").open()))) == 6


@pytest.mark.slow
def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=re.escape(str(tmp_path))):
        runs.load_run(tmp_path)
    with pytest.raises(UserError, match="No run directories"):
        build.write_report([], tmp_path)
    r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report", str(tmp_path),
                        f"--out={tmp_path / 'out'}"], capture_output=True, text=True)
    assert r.returncode == 1 and "is not a run directory" in r.stderr.splitlines()[-1]


def test_the_report_command_is_quiet_by_default(epoch_study, tmp_path):
    """No TensorFlow start-up lines (oneDNN, CUDA, cpu_feature_guard) from the report CLI,
    even without TF_CPP_MIN_LOG_LEVEL: the package loads nothing noisy before cli.run."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report",
                           *map(str, epoch_study), f"--out={tmp_path / 'out'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.md").is_file()
    noise = [line for line in done.stderr.splitlines()
             if re.match(r"[IWE]0000 ", line)
             or re.search(r"cpu_feature_guard|oneDNN|cuda", line, re.I)]
    assert not noise, done.stderr


def test_a_reference_run_among_the_study_runs_is_refused(tmp_path):
    a = curve_run(tmp_path, "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 trainer="pytorch-reference")
    with pytest.raises(UserError, match="pytorch-reference") as e:
        build.report([a])
    assert e.value.argument == "reference_runs"


def test_runs_without_val_columns_are_reported_from_their_curves(tmp_path):
    dirs = make_study(tmp_path)  # no val_* columns, as seeds >= 1 are trained
    built = build.report(dirs)
    table = built.texts["table1.md"]
    assert "n/a (no per-epoch evaluation)" in table
    assert "passes to" in table and "curve points, test subset" in table
    assert "not reached" not in table
    assert "none per epoch" in built.texts["report.md"]


@pytest.mark.slow
def test_report_cli_takes_reference_and_variant_runs(tmp_path):
    study = make_study(tmp_path / "runs")
    make_reference(tmp_path / "reference")
    for seed in (0, 1):
        curve_run(tmp_path / "bf16", "resnet56", seed, decay(0.8, 0.4), decay(0.8, 0.45), 0.45,
                  mixed_precision="mixed_bfloat16")
    done = subprocess.run(
        [sys.executable, "-m", "keras_resnet_cifar.report", *map(str, study),
         f"--reference_runs={tmp_path / 'reference' / '*'}", f"--out={tmp_path / 'out'}",
         f"--variant_runs={tmp_path / 'bf16' / '*'}"],
        capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Reference trainer" in text and (tmp_path / "out" / "cost.csv").is_file()
    assert "## Variant: mixed_precision mixed_bfloat16 beside float32" in text
    assert json.loads((tmp_path / "out" / "variant.json").read_text())["models"] == ["resnet56"]
    assert (tmp_path / "out" / "figures" / "reference_curves.png").is_file()


def test_study_passes_reference_runs_to_its_report(tmp_path, monkeypatch):
    """study --reference_dir reaches the report (training and evaluation stubbed out)."""
    from absl import flags

    from keras_resnet_cifar import study
    from keras_resnet_cifar.analysis import depth_study

    dirs = make_study(tmp_path / "runs")
    make_reference(tmp_path / "reference")
    monkeypatch.setattr(depth_study, "train_all", lambda *a, **k: dirs)
    monkeypatch.setattr(depth_study, "evaluate_all", lambda *a, **k: None)
    done = depth_study.run_study(depth_study.StudySpec(), tmp_path, report_dir=tmp_path / "out",
                              reference_dirs=runs.expand_run_paths([tmp_path / "reference"]))
    assert "## Reference trainer" in done.report.read_text()
    fv = flags.FlagValues()
    study.define_flags(fv)
    fv(["study", f"--reference_dir={tmp_path / 'reference'}"])
    assert fv.reference_dir == str(tmp_path / "reference")


def test_a_study_of_one_more_seed_reports_over_every_published_seed(tmp_path, monkeypatch):
    """study --seeds=0, then --seeds=1 into the same report folder: one report, n = 2."""
    from keras_resnet_cifar.analysis import depth_study

    monkeypatch.setattr(depth_study, "evaluate_all", lambda *a, **k: None)
    for seed in (0, 1):
        dirs = make_study(tmp_path / f"train{seed}", seeds=(seed,))
        monkeypatch.setattr(depth_study, "train_all", lambda *a, dirs=dirs, **k: dirs)
        done = depth_study.run_study(depth_study.StudySpec(), tmp_path, report_dir=tmp_path / "out")
    assert {d.name for d in (tmp_path / "out" / "runs").iterdir()} == {
        f"{m}-seed{s}" for m in STUDY for s in (0, 1)}
    assert "| plain | plain20 | 20 | 269,722 | 2 |" in done.report.read_text()
    # This call's runs are reported from where they were trained; earlier ones from the copies.
    assert depth_study.report_runs(dirs, tmp_path / "out")[:4] == dirs
