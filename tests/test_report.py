"""The report from hand-written run directories: table values, verdicts, CSV, report.md."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar import report
from keras_resnet_cifar.report import figures, findings, markdown, runs, tables
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError

PARAMS = {20: 269_722, 56: 853_018}
REPO = Path(__file__).resolve().parents[1]


def make_run(root, model, seed, train_acc, test_acc, *, best=None, final=None,
             evaluation=None, stats=None):
    """A run directory as training writes it; accuracies are per-epoch lists."""
    run = root / f"{model}-seed{seed}"
    run.mkdir(parents=True)
    config = TrainConfig(model=model, seed=seed, epochs=len(train_acc), steps_per_epoch=10,
                         eval_steps=4, lr_boundaries=(3,))
    (run / "config.json").write_text(config.to_json())
    rows = [{"epoch": i + 1, "loss": 2 - a, "accuracy": a, "val_loss": 2.2 - t,
             "val_accuracy": t, "learning_rate": 0.1, "epoch_time_s": 10.0,
             "images_per_sec": 128.0} for i, (a, t) in enumerate(zip(train_acc, test_acc))]
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    top = max(range(len(test_acc)), key=test_acc.__getitem__)
    depth = int(model.lstrip("plainresnet"))
    metrics = {"model": model, "test_accuracy": test_acc[-1] if final is None else final,
               "test_images": 512, "params_trainable": PARAMS[depth],
               "best": best or {"epoch": top + 1, "metric": "val_accuracy",
                                "value": test_acc[top], "chosen_on": "test"},
               "wall_time_s": 10.0 * len(rows), "train_images_per_sec": 128.0,
               "data_source": "fake", "cpu": "Test CPU", "cpu_cores": 2, "gpus": [],
               "tensorflow": "2.21.0", "keras": "3.15.1", "python": "3.11"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if evaluation is not None:
        (run / "evaluation.json").write_text(json.dumps(evaluation))
    if stats is not None:
        (run / "layer_stats.json").write_text(json.dumps(stats))
    return run


def stats(depth, std, grads_early, grads_late):
    n = depth - 1
    conv = [f"c{i}" for i in range(n)]
    third = n // 3
    norms = [grads_early] * third + [1.0] * (n - 2 * third) + [grads_late] * third
    return {"batch_size": 8, "response_layers": conv, "gradient_layers": conv + ["logits"],
            "epochs": [{"epoch": e, "loss": 2.0, "response_std": [std] * n,
                        "gradient_norm": norms + [5.0]} for e in (0, 3)]}


def evaluation(accuracy, images=100):
    right = round(accuracy * images)
    return {"images": images, "accuracy": accuracy, "loss": 1.0,
            "class_names": ["a", "b"], "confusion_matrix": [[right // 2, 50 - right // 2],
                                                            [images - 50 - (right - right // 2),
                                                             right - right // 2]]}


@pytest.fixture
def study(tmp_path):
    """plain20/resnet20 with two seeds each, plain56/resnet56 with one.

    Degradation is built in: plain56 ends with 40% training error, plain20 with 20%.
    """
    return [
        make_run(tmp_path, "plain20", 0, [0.5, 0.7, 0.8], [0.45, 0.6, 0.70]),
        make_run(tmp_path, "plain20", 1, [0.5, 0.7, 0.8], [0.45, 0.6, 0.74]),
        make_run(tmp_path, "resnet20", 0, [0.6, 0.8, 0.9], [0.55, 0.7, 0.80],
                 evaluation=evaluation(0.81)),
        make_run(tmp_path, "resnet20", 1, [0.6, 0.8, 0.9], [0.55, 0.7, 0.78]),
        make_run(tmp_path, "plain56", 0, [0.3, 0.5, 0.6], [0.3, 0.45, 0.55],
                 stats=stats(56, 1.0, 10.0, 1.0)),
        make_run(tmp_path, "resnet56", 0, [0.6, 0.85, 0.95], [0.6, 0.75, 0.85],
                 stats=stats(56, 0.4, 1.5, 1.0)),
    ]


def test_epochs_to_reach():
    rows = [{"epoch": 1, "val_accuracy": 0.3}, {"epoch": 2, "val_accuracy": 0.55},
            {"epoch": 3, "val_accuracy": 0.5}]
    assert runs.epochs_to_reach(rows, 0.5) == 2
    assert runs.epochs_to_reach(rows, 0.3) == 1
    assert runs.epochs_to_reach(rows, 0.6) is None


def test_table1_values_means_and_stds(study):
    levels = (0.5, 0.7)
    rows = tables.table1([runs.run_summary(runs.load_run(r), levels) for r in study], levels)
    assert [r["model"] for r in rows] == ["plain20", "plain56", "resnet20", "resnet56"]
    p20, p56, r20, r56 = rows
    assert (p20["n"], p20["layers"], p20["params"], p20["seeds"]) == (2, 20, 269_722, [0, 1])
    assert p20["final_test_accuracy_mean"] == pytest.approx(0.72)
    assert p20["final_test_accuracy_std"] == pytest.approx(0.0282843, rel=1e-5)  # ddof=1
    assert p20["final_train_error_mean"] == pytest.approx(0.2)
    assert p56["final_train_error_mean"] == pytest.approx(0.4) and p56["n"] == 1
    assert p56["final_test_accuracy_std"] is None
    # resnet20 seed 0 was evaluated on the full test set (0.81), seed 1 was not (0.78).
    assert r20["final_test_accuracy_mean"] == pytest.approx(0.795)
    assert r20["best_chosen_on"] == "test" and r20["best_test_accuracy_mean"] == pytest.approx(0.79)
    assert p20["epochs_to_70pct_mean"] == 3 and p20["epochs_to_70pct_reached"] == 2
    assert p56["epochs_to_70pct_reached"] == 0 and p56["epochs_to_70pct_mean"] is None
    assert r56["epochs_to_50pct_mean"] == 1

    text = tables.table1_markdown(rows, levels)
    assert "best test acc. (%), chosen on test" in text
    assert "| plain | plain20 | 20 | 269,722 | 2 | 72.00 ± 2.83 | 72.00 ± 2.83 | 20.00 ± 0.00 | 2.0 ± 0.0 | 3.0 ± 0.0 |" in text
    assert "| plain | plain56 | 56 | 853,018 | 1 | 55.00 | 55.00 | 40.00 | 3 | not reached |" in text

    parsed = list(csv.DictReader(tables.to_csv(rows).splitlines()))
    assert parsed[0]["model"] == "plain20" and parsed[0]["seeds"] == "0;1"
    assert float(parsed[0]["final_test_accuracy_mean"]) == pytest.approx(0.72)
    assert parsed[1]["final_test_accuracy_std"] == ""


def test_findings_verdicts_and_numbers(study):
    levels = (0.5, 0.7)
    loaded = [runs.load_run(r) for r in study]
    rows = tables.table1([runs.run_summary(r, levels) for r in loaded], levels)
    found = findings.derive(rows, {r.model: r.layer_stats for r in loaded if r.layer_stats},
                            levels)
    by_claim = {f["claim"]: f for f in found}

    degradation = by_claim["Degradation: plain56 has a higher training error over the last epoch than plain20"]
    assert degradation["verdict"] == "supported"
    assert "40.00% vs plain20 20.00 ± 0.00%" in degradation["evidence"]
    assert "chance" not in degradation["evidence"]

    at20 = by_claim["At depth 20, the residual net is more accurate than the plain one"]
    # 79.5 vs 72.0 points, seed spread sqrt(0.0071^2 + 0.0283^2) = 2.9 points: supported.
    assert at20["verdict"] == "supported"
    assert at20["numbers"]["test_accuracy_gap"] == pytest.approx(0.075)
    assert "+7.50 points" in at20["evidence"]
    at56 = by_claim["At depth 56, the residual net is more accurate than the plain one"]
    assert at56["numbers"]["test_accuracy_gap"] == pytest.approx(0.30)

    gap = by_claim["The residual-minus-plain gap grows with depth"]
    assert gap["verdict"] == "supported" and "+30.00 at depth 56" in gap["evidence"]

    speed20 = by_claim["At depth 20, the residual net converges at least 2x faster "
                       "(epochs to reach each test accuracy level)"]
    # 50%: resnet 1 epoch, plain 2; 70%: resnet 2, plain 3 -> median ratio 1.75.
    assert speed20["verdict"] == "not supported"
    assert speed20["numbers"]["ratios"] == pytest.approx([2.0, 1.5])
    assert "measured on 512 images" in speed20["evidence"]

    responses = by_claim["At depth 56, residual functions respond more weakly than plain "
                         "layers (He et al., Figure 7)"]
    assert responses["verdict"] == "supported" and "resnet56 0.400 vs plain56 1.000" in \
        responses["evidence"]
    highway = [f for f in found if "gradient highway" in f["claim"]]
    assert [f["numbers"]["epoch"] for f in highway] == [0, 3]
    assert highway[0]["verdict"] == "supported"  # ratio 1.5 is closer to 1 than 10
    assert highway[0]["numbers"]["plain_ratio"] == pytest.approx(10.0)


def test_small_single_run_differences_are_inconclusive(tmp_path):
    dirs = [make_run(tmp_path, "plain20", 0, [0.5, 0.6], [0.5, 0.60]),
            make_run(tmp_path, "resnet20", 0, [0.5, 0.6], [0.5, 0.62])]
    rows = tables.table1([runs.run_summary(runs.load_run(r), ()) for r in dirs], ())
    at20 = findings.derive(rows)[1]
    # +2 points on 512 test images each: sqrt(.62 * .38 / 512 + .6 * .4 / 512) = 3.05 points.
    assert at20["verdict"] == "inconclusive"
    assert "difference +2.00 points, one run each: binomial standard error 3.05 points on " \
        "512 and 512 images" in at20["evidence"]
    assert findings.verdict(0.07, 0.03) == "supported"
    assert findings.verdict(-0.01, 0.03) == "not supported"


def test_an_unfinished_run_is_reported_from_its_history(tmp_path):
    run = make_run(tmp_path, "resnet56", 0, [0.3, 0.4], [0.25, 0.35])
    (run / "metrics.json").unlink()
    row = runs.run_summary(runs.load_run(run), ())
    assert row["final_test_accuracy"] == 0.35 and row["final_test_images"] == 512
    assert row["final_test_source"].startswith("history.json (unfinished")
    assert row["params"] is None and row["epochs"] == 2


def test_degradation_not_supported_when_the_deep_plain_net_trains_better(tmp_path):
    dirs = [make_run(tmp_path, "plain20", 0, [0.5, 0.6], [0.5, 0.6]),
            make_run(tmp_path, "plain56", 0, [0.5, 0.7], [0.5, 0.6])]
    rows = tables.table1([runs.run_summary(runs.load_run(r), ()) for r in dirs], ())
    found = findings.derive(rows)
    assert found[0]["verdict"] == "not supported"
    stuck = dict(rows[1], final_train_error_mean=0.89)  # 1,280 images: chance band 88.3-90%
    assert "plain56's training error is at chance level" in findings.at_chance(stuck)
    assert "30.00% vs plain20 40.00%" in found[0]["evidence"]
    assert {f["verdict"] for f in found[1:]} == {"not measured"}


def test_write_report_files_and_markdown(study, tmp_path):
    out = tmp_path / "report"
    path = report.write_report(study, out, accuracy_levels=(0.5, 0.7), command="run it")
    text = path.read_text()
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ("curves_20", "curves_56", "confusion_20", "depth_sweep",
                 "layer_response_std", "layer_response_std_sorted", "layer_gradient_norm"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures
        assert f"![{stem}](figures/{stem}.png)" in text
    assert "confusion_56.png" not in figures  # neither 56-layer run was evaluated
    assert "run it" in text and "Test CPU, 2 cores" in text
    assert "--model=plain56 --epochs=3 --lr_boundaries=3 --steps_per_epoch=10" in text
    assert "**SUPPORTED**: Degradation" in text
    assert "Reduced schedule" in text
    assert (out / "table1.md").read_text() in text
    assert len(json.loads((out / "findings.json").read_text())) >= 8
    per_run = list(csv.DictReader((out / "runs.csv").open()))
    assert len(per_run) == 6 and per_run[2]["final_test_source"] == "evaluation.json"


def test_figures_hold_the_runs_data(study):
    figs = figures.figures([runs.load_run(r) for r in study])
    acc = figs["curves_56"].axes[0]
    assert [l.get_label() for l in acc.lines] == ["plain56 training", "plain56 test",
                                                  "resnet56 training", "resnet56 test"]
    assert acc.get_xlabel() == "epoch (1,280 training images each)"
    sweep = figs["depth_sweep"].axes
    assert [l.get_label() for l in sweep[0].lines if "test" in l.get_label()] == \
        ["plain20 test", "plain56 test"]
    std = figs["layer_response_std"]
    assert [a.get_title() for a in std.axes] == ["after epoch 3"]  # BN is the identity at 0
    grads = figs["layer_gradient_norm"]
    assert [a.get_title() for a in grads.axes] == ["at initialisation", "after epoch 3"]
    assert [l.get_label() for l in grads.axes[0].lines] == ["plain56", "resnet56"]
    assert grads.axes[0].get_yscale() == "log"


@pytest.mark.slow
def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        runs.load_run(tmp_path)
    with pytest.raises(UserError, match="No run directories"):
        report.write_report([], tmp_path)
    r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report", str(tmp_path),
                        f"--out={tmp_path / 'out'}"], capture_output=True, text=True)
    assert r.returncode == 1 and "is not a run directory" in r.stderr.splitlines()[-1]


def test_levels_are_chosen_from_the_runs_so_short_studies_are_measured(tmp_path):
    # A short study: nothing reaches 50%, let alone the paper-scale 80/90%.
    dirs = [make_run(tmp_path, "plain20", 0, [0.15, 0.2, 0.25], [0.14, 0.22, 0.31]),
            make_run(tmp_path, "resnet20", 0, [0.2, 0.3, 0.4], [0.25, 0.34, 0.40]),
            make_run(tmp_path, "plain56", 0, [0.1, 0.1, 0.1], [0.10, 0.11, 0.12])]
    loaded = [runs.load_run(d) for d in dirs]
    levels, note = runs.choose_levels(loaded)
    # plain56 never left chance; the lowest best of the others is plain20's 31%:
    # chance + (31 - 10) * k / 3 = 17, 24, 31%.
    assert levels == (0.17, 0.24, 0.31)
    assert "31.0%" in note
    rows = tables.table1([runs.run_summary(r, levels) for r in loaded], levels)
    speed = [f for f in findings.derive(rows, levels=levels) if "converges" in f["claim"]]
    # 17%: resnet epoch 1, plain 2; 24%: 1 and 3; 31%: 2 and 3 -> median ratio 2.
    assert speed[0]["numbers"]["ratios"] == pytest.approx([2.0, 3.0, 1.5])
    assert speed[0]["verdict"] == "supported"  # measured, not "not measured"

    stuck = [runs.load_run(dirs[2])]
    assert runs.choose_levels(stuck)[0] == ()
    rows = tables.table1([runs.run_summary(r, ()) for r in loaded], ())
    speed = [f for f in findings.derive(rows, levels=(), levels_note="no run learned.")
             if "converges" in f["claim"]]
    assert speed[0]["verdict"] == "not measured" and "no run learned." in speed[0]["evidence"]


def test_train_set_size_follows_the_config():
    assert runs.train_set_size({"dataset": "cifar10"}) == 50_000
    assert runs.train_set_size({"dataset": "cifar10", "validation_split": 5000}) == 45_000
    assert runs.train_set_size({"dataset": "synthetic", "synthetic_train_size": 640}) == 640


def test_commands_name_the_real_run_directory(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = runs.load_run(study[4].relative_to(tmp_path))
    command = markdown.train_command(run)
    assert command.endswith("--model_dir=plain56-seed0")
    run = runs.load_run(study[4])  # an absolute path inside the working folder
    assert markdown.train_command(run).endswith("--model_dir=plain56-seed0")
    assert markdown.portable(tmp_path.parent / "x") == (tmp_path.parent / "x").as_posix() \
        or markdown.portable(tmp_path.parent / "x").startswith("~/")
    monkeypatch.chdir(tmp_path.parent)
    assert markdown.train_command(run).endswith(f"--model_dir={tmp_path.name}/plain56-seed0")
    assert markdown.portable_command(["report", f"--out={tmp_path / 'r'}"]) == \
        f"report --out={tmp_path.name}/r"


def _points(errors, se=0.01):
    return [{"step": 100 * (i + 1), "epoch": 0.25 * (i + 1), "train_error": e,
             "train_error_se": se, "train_images": 12_800} for i, e in enumerate(errors)]


def test_curve_findings_answer_degradation_through_the_run_with_standard_errors():
    curves = {"plain20": _points([0.80, 0.60, 0.40]), "plain56": _points([0.85, 0.70, 0.55]),
              "resnet20": _points([0.75, 0.55, 0.35]), "resnet56": _points([0.76, 0.50, 0.30])}
    plain, residual = findings.curve_findings(curves)
    # plain56 above plain20 by 5, 10, 15 points; the SE of each difference is 1.41 points.
    assert plain["verdict"] == "supported" and plain["numbers"]["above_2se"] == 3
    assert "+15.00 ± 1.41 points" in plain["evidence"]
    # resnet56 is 1 point above at the first point (within 2 SE), below at the end.
    assert residual["verdict"] == "supported" and residual["numbers"]["above"] == 1
    curves["plain56"] = _points([0.85, 0.60, 0.30])  # below plain20 at the end: no degradation
    curves["resnet56"] = _points([0.76, 0.60, 0.40])  # 5 points above at the end
    plain, residual = findings.curve_findings(curves)
    assert plain["verdict"] == "not supported" and residual["verdict"] == "not supported"
    curves["plain56"] = _points([0.81, 0.61, 0.41])  # above everywhere, but within noise
    assert findings.curve_findings(curves)[0]["verdict"] == "inconclusive"
    assert findings.curve_findings({"plain20": _points([0.5])})[0]["verdict"] == "not measured"


def test_our_numbers_stand_beside_the_published_ones(study):
    rows = tables.table1([runs.run_summary(runs.load_run(r), ()) for r in study], ())
    text = tables.beside_published(rows, {"resnet56": {"train_error": 0.2, "train_error_se": 0.01}},
                                   markdown.HE_ET_AL_TABLE6, markdown.REPRODUCTION_TABLE1,
                                   ours="3 passes (1,173 iterations)",
                                   theirs=markdown.HE_ET_AL_SCHEDULE,
                                   reproduction_schedule="200 epochs")
    # resnet56: one run, 85% on 512 images: error 15.00, binomial SE sqrt(.85 * .15 / 512).
    assert "| resnet56 | 15.00 ± 1.58 (512 images) | 20.00 ± 1.00 | 6.97 | 6.75 |" in text
    assert "| plain56 | 45.00 ± 2.20 (512 images) | n/a | figure only | 13.29 |" in text
    assert "after 3 passes (1,173 iterations)" in text.splitlines()[0]


def test_the_report_command_is_quiet_by_default(study, tmp_path):
    """No TensorFlow start-up lines (oneDNN, CUDA, cpu_feature_guard) from the report CLI,
    even without TF_CPP_MIN_LOG_LEVEL: the package loads nothing noisy before cli.run."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report",
                           *map(str, study), f"--out={tmp_path / 'out'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.md").is_file()
    noise = [line for line in done.stderr.splitlines()
             if re.match(r"[IWE]0000 ", line)
             or re.search(r"cpu_feature_guard|oneDNN|cuda", line, re.I)]
    assert not noise, done.stderr


def test_runs_of_different_recipes_are_never_pooled(tmp_path):
    """Two resnet20 runs of different recipes are two rows (n = 1 each), not n = 2."""
    a = make_run(tmp_path / "a", "resnet20", 0, [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    b = make_run(tmp_path / "b", "resnet20", 1, [0.5], [0.4])  # 1 epoch: another recipe
    config = json.loads((b / "config.json").read_text())
    config["lr_boundaries"] = [80, 120]
    (b / "config.json").write_text(json.dumps(config))
    built = report.build([a, b])
    table = built.texts["table1.md"]
    assert "| recipe |" in table
    rows = [line for line in table.splitlines() if line.startswith("| residual")]
    assert [line.split(" | ")[2:5] for line in rows] == [["1", "20", "269,722"],
                                                        ["2", "20", "269,722"]]
    assert all(line.split(" | ")[5] == "1" for line in rows)  # n: nothing pooled
    assert [f["verdict"] for f in built.findings] == ["not measured"]
    text = built.texts["report.md"]
    assert "**2 different recipes**" in text and "- Recipe 2 (resnet20 seed 1): 1 epoch," in text
    # A recipe whose boundaries lie beyond its epochs: no "2666.67% of the steps".
    assert ("learning rate 0.1 throughout (--lr_boundaries 80, 120 lie at or beyond its "
            "1 epoch: never reached)") in text
    assert "4000%" not in text


def test_empty_comparisons_say_why(tmp_path):
    """Models that no published table lists: the report says so instead of blanks."""
    runs_ = [make_run(tmp_path, "plain20", 0, [0.5, 0.6], [0.5, 0.6]),
             make_run(tmp_path, "resnet20", 0, [0.5, 0.7], [0.5, 0.7])]
    for run in runs_:
        config = json.loads((run / "config.json").read_text())
        config["model"] = config["model"].replace("20", "8")
        (run / "config.json").write_text(json.dumps(config))
    text = report.build(runs_).texts["report.md"]
    assert "Table 6: ;" not in text and "Table 1: ." not in text
    assert "Table 6: none of this report's models (it gives resnet20, resnet56)" in text
    assert ("The published columns are empty because the published tables give plain20, "
            "plain56, resnet20, resnet56, none of this report's models (plain8, resnet8).") in text
