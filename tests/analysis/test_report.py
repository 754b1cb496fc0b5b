"""The report from hand-written run directories: table values, verdicts, CSV, report.md."""

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar.analysis.results import build
from keras_resnet_cifar.analysis.results import evidence, figures, findings, markdown, runs, tables
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError

PARAMS = {20: 269_722, 56: 853_018}
REPO = Path(__file__).resolve().parents[2]


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


def test_table1_values_means_and_stds(study):
    levels = (0.5, 0.7)
    rows = tables.table1([runs.run_summary(runs.load_run(r), levels, runs.HISTORY)
                          for r in study], levels)
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
    assert p20["to_70pct_mean"] == 3 and p20["to_70pct_reached"] == 2
    assert p56["to_70pct_reached"] == 0 and p56["to_70pct_mean"] is None
    assert r56["to_50pct_mean"] == 1

    text = tables.table1_markdown(rows, levels, runs.HISTORY)
    assert "best test acc. (%), chosen on test" in text
    assert "epochs to 50% test acc. (per-epoch eval)" in text
    assert "| plain | plain20 | 20 | 269,722 | 2 | 72.00 ± 2.83 | 72.00 ± 2.83 | 20.00 ± 0.00 | 2.00 ± 0.00 | 3.00 ± 0.00 |" in text
    assert "| plain | plain56 | 56 | 853,018 | 1 | 55.00 | 55.00 | 40.00 | 3.00 | not reached |" in text

    parsed = list(csv.DictReader(tables.to_csv(rows).splitlines()))
    assert parsed[0]["model"] == "plain20" and parsed[0]["seeds"] == "0;1"
    assert float(parsed[0]["final_test_accuracy_mean"]) == pytest.approx(0.72)
    assert parsed[1]["final_test_accuracy_std"] == ""


def test_findings_verdicts_and_numbers(study):
    loaded = [runs.load_run(r) for r in study]
    found = findings.derive(loaded)
    by_claim = {f["claim"].split(":")[0].split(" (")[0]: f for f in found}

    # plain56 and resnet56 have one seed each: nothing about them is decided.
    degradation = next(f for f in found if f["claim"].startswith("(a)"))
    assert degradation["verdict"] == "not decided (one seed)"
    assert "training error over the last epoch: plain56 40.00% (one seed) vs plain20 " \
        "20.00% ± 0.00 (std over 2 seeds)" in degradation["evidence"]
    assert "chance" not in degradation["evidence"]

    at20 = by_claim["At depth 20, the residual net is more accurate than the plain one"]
    # Test error 20.5 vs 28.0 (std 0.7 and 2.8 points over 2 seeds): Welch p = 0.16, shown;
    # but a claim about final accuracies is not testable after 3 of 200 epochs, and stays
    # outside the tested family.
    assert at20["verdict"] == "not testable at this budget"
    assert at20["verdict_unadjusted"] == "not decided" and at20["p_adjusted"] is None
    assert at20["p_raw"] == pytest.approx(at20["numbers"]["test"]["p"])
    assert at20["source"] == "Shinde (2025)" and at20["section"].startswith("Table 1")
    assert at20["numbers"]["test"]["difference"] == pytest.approx(-0.075)
    assert "difference -7.50 ±" in at20["evidence"] and "Welch t = " in at20["evidence"]
    at56 = by_claim["At depth 56, the residual net is more accurate than the plain one"]
    assert at56["verdict"] == "not testable at this budget"
    assert at56["verdict_unadjusted"] == "not decided (one seed)"

    growth = next(f for f in found if f["claim"].startswith("(c)"))
    assert growth["numbers"]["seeds"] == [0] and growth["verdict"] == "not testable at this budget"
    assert "1.11 points at 20 layers, 6.54 at 56" in growth["claim"]

    responses = by_claim["At depth 56, residual functions respond more weakly than plain "
                         "layers"]
    assert responses["verdict"] == "not decided (one seed)"
    assert "resnet56 0.400 vs plain56 1.000" in responses["evidence"]
    highway = [f for f in found if "gradient highway" in f["claim"]]
    assert [f["numbers"]["epoch"] for f in highway] == [0, 3]
    assert highway[0]["numbers"]["plain"] == [pytest.approx(1.0)]  # |log10 10|


def test_single_runs_are_not_decided_with_the_binomial_error_as_information(tmp_path):
    dirs = [make_run(tmp_path, "plain20", 0, [0.5, 0.6], [0.5, 0.60]),
            make_run(tmp_path, "resnet20", 0, [0.5, 0.6], [0.5, 0.62])]
    at20 = findings.he_claims([runs.load_run(r) for r in dirs])[0]
    # -2 points on 512 test images each: sqrt(.62 * .38 / 512 + .6 * .4 / 512) = 3.05 points.
    assert at20["verdict"] == "not decided (one seed)"
    assert "difference -2.00 points; no test with one seed (within-run binomial SE of the " \
        "difference 3.05 points on 512 and 512 test images (information only))" in at20["evidence"]


def test_an_unfinished_run_is_reported_from_its_history(tmp_path):
    run = make_run(tmp_path, "resnet56", 0, [0.3, 0.4], [0.25, 0.35])
    (run / "metrics.json").unlink()
    row = runs.run_summary(runs.load_run(run), ())
    assert row["final_test_accuracy"] == 0.35 and row["final_test_images"] == 512
    assert row["final_test_source"].startswith("history.json (unfinished")
    assert row["params"] is None and row["epochs"] == 2


def test_degradation_contradicted_when_the_deep_plain_net_trains_better(tmp_path):
    dirs = [make_run(tmp_path, "plain20", seed, [0.5, 0.6 + seed / 100], [0.5, 0.6])
            for seed in (0, 1, 2)]
    dirs += [make_run(tmp_path, "plain56", seed, [0.5, 0.7 + seed / 100], [0.5, 0.65 - seed / 100])
             for seed in (0, 1, 2)]
    loaded = [runs.load_run(d) for d in dirs]
    found = findings.paper_claims(loaded)
    assert found[0]["verdict"] == "contradicted"
    assert "plain56 29.00% ± 1.00 (std over 3 seeds) vs plain20 39.00% ± 1.00" in found[0]["evidence"]
    stuck = [dataclasses.replace(r, history=[dict(r.history[-1], accuracy=0.11)])
             for r in loaded[3:]]  # 1,280 images: the chance band is 88.3-90%
    assert "plain56's training error is at chance level" in evidence.at_chance(
        stuck, lambda r: 1 - r.history[-1]["accuracy"])
    assert {f["verdict"] for f in found[1:]} == {"not measured"}


def test_write_report_files_and_markdown(study, tmp_path):
    out = tmp_path / "report"
    path = build.write_report(study, out, accuracy_levels=(0.5, 0.7), command="run it")
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
        build.write_report([], tmp_path)
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
    rows = tables.table1([runs.run_summary(r, levels, runs.HISTORY) for r in loaded], levels)
    # 17%: plain20 epoch 2, resnet20 epoch 1; 31%: 3 and 2.
    assert (rows[0]["to_17pct_mean"], rows[2]["to_17pct_mean"]) == (2, 1)
    assert (rows[0]["to_31pct_mean"], rows[2]["to_31pct_mean"]) == (3, 2)
    assert rows[1]["to_17pct_reached"] == 0

    stuck = [runs.load_run(dirs[2])]
    assert runs.choose_levels(stuck)[0] == ()


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


def test_an_empty_report_part_says_why(tmp_path):
    """Without curve points nor per-epoch evaluations in every run, no level is timed,
    and the report says so instead of an empty column."""
    a = make_run(tmp_path, "plain20", 0, [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    b = make_run(tmp_path, "resnet20", 0, [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    history = json.loads((b / "history.json").read_text())
    for row in history["epochs"]:
        del row["val_accuracy"], row["val_loss"]
    (b / "history.json").write_text(json.dumps(history))
    built = build.report([a, b])
    assert built.levels == ()
    assert "not measured: not every run has curve points, nor every run per-epoch " \
        "evaluations (resnet20 seed 0 have neither)" in built.texts["report.md"]


def test_our_numbers_stand_beside_the_published_ones(study):
    rows = tables.table1([runs.run_summary(runs.load_run(r), ()) for r in study], ())
    points = {"resnet56": [{"train_error": 0.2, "train_error_se": 0.01}],
              "plain20": [{"train_error": 0.2}, {"train_error": 0.3}]}
    text = tables.beside_published(rows, points,
                                   markdown.HE_ET_AL_TABLE6, markdown.REPRODUCTION_TABLE1,
                                   ours="3 passes (1,173 iterations)",
                                   theirs=markdown.HE_ET_AL_SCHEDULE,
                                   reproduction_schedule="200 epochs")
    # resnet56: one run, 85% on 512 images: error 15.00, binomial SE sqrt(.85 * .15 / 512).
    assert ("| resnet56 | 15.00 ± 1.58 (one run: binomial, 512 images) | 20.00 ± 1.00 (one "
            "run: SE over its batches) | 6.97 | 6.75 |") in text
    assert "| plain56 | 45.00 ± 2.20 (one run: binomial, 512 images) | n/a | figure only | 13.29 |" in text
    # plain20: two seeds, SE of the mean over seeds (std 2.83 / sqrt 2 = 2.00; 7.07 / sqrt 2).
    assert "| plain20 | 28.00 ± 2.00 (mean of 2 seeds) | 25.00 ± 5.00 (mean of 2 seeds) |" in text
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


def test_adjust_holm_over_the_family_budget_in_the_verdict_scope(study):
    loaded = [runs.load_run(r) for r in study]

    def tested(p, end=False):
        return {"claim": f"p {p}", "source": "x", "verdict": "supported" if p < 0.05
                else "not decided", "evidence": "", "numbers": {}, "end_of_schedule": end,
                "decision": {"p": p, "if_significant": "supported"}}

    found = findings.adjust([tested(0.001), tested(0.03), tested(0.04),
                             tested(0.01, end=True),
                             {"claim": "one seed", "source": "x", "verdict":
                              "not decided (one seed)", "evidence": "", "numbers": {}}], loaded)
    # Family of 3 (the end-of-schedule claim and the one-seed one are outside it):
    # 0.001 * 3 = 0.003 survives; 0.03 * 2 = 0.06 and 0.04 * 1 -> 0.06 fall.
    assert [f["verdict"] for f in found] == [
        "supported at 0.08 passes", "not decided at 0.08 passes", "not decided at 0.08 passes",
        "not testable at this budget", "not decided (one seed)"]
    assert [f["p_adjusted"] for f in found[:3]] == pytest.approx([0.003, 0.06, 0.06])
    assert found[1]["verdict_unadjusted"] == "supported" and found[3]["p_raw"] == 0.01
    assert found[0]["family_size"] == 3 and found[3]["p_adjusted"] is None
    # 3 epochs of 10 steps of 128 images: 0.08 passes over the 50,000
    assert findings.budget(loaded) == "0.08 passes" and not findings.full_schedule(loaded)
