"""The report over several seeds and beside the reference trainer, from fixture runs.

Fixture runs look like the study's (3 full passes, 4 curve points per pass) and
the reference trainer's (scripts/train_reference_pytorch.py); no training, no
TensorFlow, no PyTorch.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_resnet_cifar.analysis import plots
from keras_resnet_cifar.analysis.results import build
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.analysis.results import figures, findings, reference, runs, stats, tables

REPO = Path(__file__).resolve().parents[2]
STEPS = 391          # one full pass of 50,000 images in batches of 128
MARKS = (97, 195, 293, 391)
RECIPE = dict(epochs=3, lr_boundaries=(1.2, 1.8))


def curve(train_errors, test_errors):
    """curve.json with 4 points per pass; errors one per point (12 for 3 passes)."""
    points = []
    for i, (tr, te) in enumerate(zip(train_errors, test_errors)):
        step = (i // 4) * STEPS + MARKS[i % 4]
        points.append({"step": step, "epoch": round(step / STEPS, 6), "learning_rate": 0.1,
                       "train_images": 12_416, "train_batches": 97, "train_error": tr,
                       "train_error_se": 0.004, "train_cross_entropy": 1.5,
                       "test_error": te, "test_cross_entropy": 1.4, "test_images": 2000})
    return {"points_per_epoch": 4, "steps_per_epoch": STEPS,
            "test_subset": {"images": 2000, "seed": 0}, "points": points}


def decay(start, end, n=12):
    """n errors falling geometrically from ``start`` to ``end``."""
    return list(np.geomspace(start, end, n))


def make_run(root, model, seed, train_errors, test_errors, final_error, *,
             val_columns=False, trainer=None, load=None, evaluated=True, **recipe):
    """A study run (or, with ``trainer``, a reference run) of 3 passes."""
    run = Path(root) / f"{model}-seed{seed}"
    run.mkdir(parents=True)
    config = json.loads(TrainConfig(model=model, seed=seed,
                                    **{**RECIPE, **recipe}).to_json())
    if trainer:
        config["trainer"] = trainer
    (run / "config.json").write_text(json.dumps(config))
    rows = []
    for epoch in (1, 2, 3):
        row = {"epoch": epoch, "cross_entropy": 1.5, "accuracy": 1 - train_errors[4 * epoch - 1],
               "learning_rate": 0.1, "epoch_time_s": 100.0 + seed}
        if val_columns or trainer:
            row.update(val_accuracy=1 - test_errors[4 * epoch - 1], val_cross_entropy=1.4)
        if load is not None:
            row["load_average"] = load + epoch
        if trainer:
            row.update(bn_recalibrated_val_accuracy=1 - test_errors[4 * epoch - 1] + 0.01,
                       bn_lag_mean=0.1 / epoch, bn_lag_log_variance=0.2 / epoch)
        rows.append(row)
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    metrics = {"model": model, "test_accuracy": 1 - final_error, "test_images": 10_000,
               "params_trainable": 269_722 if model.endswith("20") else 853_018,
               "best": ({"epoch": 3, "metric": "val_accuracy", "value": 1 - test_errors[-1],
                         "chosen_on": "test"} if val_columns else None),
               "wall_time_s": 300.0, "train_images_per_sec": 400.0, "data_source": "fake",
               "cpu": "Test CPU", "cpu_cores": 2, "gpus": []}
    if trainer:
        metrics.update(trainer=trainer, bn_recalibrated_test_accuracy=1 - final_error + 0.01,
                       load_average_1min_at_end=3.5)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "curve.json").write_text(json.dumps(curve(train_errors, test_errors)))
    if evaluated and not trainer:
        right = round((1 - final_error) * 10_000)
        (run / "evaluation.json").write_text(json.dumps({
            "images": 10_000, "accuracy": right / 10_000, "loss": 1.0,
            "class_names": ["a", "b"],
            "confusion_matrix": [[right // 2, 5000 - right // 2],
                                 [5000 - (right - right // 2), right - right // 2]]}))
    return run


# Per network: (final training error, final test error) around which seeds scatter.
STUDY = {"plain20": (0.43, 0.41), "resnet20": (0.40, 0.39),
         "plain56": (0.80, 0.79), "resnet56": (0.45, 0.44)}


def make_study(root, seeds=(0, 1, 2), spread=0.01, **kwargs):
    """The four networks, one run per seed; plain56 degraded, resnet56 fine."""
    rng = np.random.default_rng(0)
    dirs = []
    for model, (train, test) in STUDY.items():
        for seed in seeds:
            jitter = spread * rng.standard_normal()
            dirs.append(make_run(root, model, seed, decay(0.85, train + jitter),
                                 decay(0.8, test + jitter), test + jitter, **kwargs))
    return dirs


def by_claim(found, prefix):
    return next(f for f in found if f["claim"].startswith(prefix))


# --- verdicts over seeds (the rule itself: test_stats) -------------------------------

def test_one_seed_gives_not_decided_however_large_the_difference(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path, seeds=(0,))]
    found = findings.derive(loaded)
    # Nothing is decided: claims a short run can test rest on one seed; the others are
    # about the end of the full schedule; counts and spreads are described, not tested.
    assert {f["verdict"] for f in found} <= {"not decided (one seed)",
                                             "not testable at this budget",
                                             "no verdict (described, not tested)"}
    a = by_claim(found, "(a)")
    assert a["verdict"] == "not decided (one seed)" and a["p_adjusted"] is None
    # The within-run binomial SE is shown, as information only.
    assert "within-run binomial SE" in a["evidence"] and "information only" in a["evidence"]


def test_three_seeds_decide_the_papers_claims(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path)]
    found = findings.paper_claims(loaded)
    a, b, c, d = (by_claim(found, f"({x})") for x in "abcd")
    assert a["verdict"] == "supported"  # plain56 ~80% vs plain20 ~43%, std 1 point
    assert a["numbers"]["test_error"]["test"]["n"] == [3, 3] or \
        tuple(a["numbers"]["test_error"]["test"]["n"]) == (3, 3)
    assert "Welch t = " in a["evidence"] and "p = " in a["evidence"]
    # resnet56 (44%) is *worse* than resnet20 (39%): the claim's opposite is significant.
    assert b["verdict"] == "contradicted"
    # Advantage 2 points at 20 layers, 35 at 56: growth significant over 3 paired seeds.
    assert c["verdict"] == "supported" and len(c["numbers"]["growth"]) == 3
    assert "paired by seed" in c["evidence"] and "one-sample" in c["evidence"]
    assert d["numbers"]["ratios"] and d["verdict"] in stats.VERDICTS


def test_an_unclear_difference_is_not_decided(tmp_path):
    # plain20 and resnet20 scatter by 5 points around values 2 points apart.
    loaded = [runs.load_run(d) for d in make_study(tmp_path, spread=0.05)]
    at20 = by_claim(findings.he_claims(loaded), "At depth 20, the residual net")
    assert at20["verdict"] == "not decided"


def test_convergence_ratio_per_seed(tmp_path):
    """ResNet-20 reaches the level in a third of plain-20's passes: supported."""
    dirs = []
    for seed in (0, 1, 2):
        slow = [0.85, 0.82, 0.79, 0.76, 0.72, 0.68, 0.64, 0.6, 0.55, 0.5, 0.45, 0.4 + seed / 100]
        fast = [0.75, 0.6, 0.5, 0.45, 0.43, 0.42, 0.41, 0.41, 0.4, 0.4, 0.4, 0.39 + seed / 200]
        fast[0] += seed / 100  # seeds differ a little
        dirs += [make_run(tmp_path, "plain20", seed, slow, slow, 0.4),
                 make_run(tmp_path, "resnet20", seed, fast, fast, 0.39)]
    loaded = [runs.load_run(d) for d in dirs]
    level = findings.convergence_level([loaded[0::2], loaded[1::2]])
    assert level == pytest.approx(0.9 - (0.9 - 0.42) / 2)
    d = by_claim(findings.paper_claims(loaded), "(d)")
    assert all(r > 2 for r in d["numbers"]["ratios"])
    assert d["verdict"] == "supported"
    assert "geometric mean" in d["evidence"]
    # Interpolated crossing: half-way from (97/391 passes, 85%) to (195/391, 82%).
    run = loaded[0]
    assert runs.passes_to_train_error(run, 0.835) == pytest.approx((97 + 195) / 2 / STEPS,
                                                                   abs=1e-5)
    assert runs.passes_to_train_error(run, 0.01) is None


# --- recipes -----------------------------------------------------------------------

def test_runs_of_different_recipes_are_refused_in_one_line(tmp_path):
    a = make_run(tmp_path / "a", "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4)
    b = make_run(tmp_path / "b", "resnet20", 1, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 epochs=200, lr_boundaries=(80, 120))
    with pytest.raises(UserError, match="2 different recipes") as e:
        build.report([a, b])
    assert "\n" not in str(e.value) and "epochs 3 vs 200" in str(e.value)
    # How a run executed is not its recipe: another data_dir pools.
    c = make_run(tmp_path / "c", "resnet20", 2, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 data_dir="/elsewhere", jit_compile=True)
    assert len(build.report([a, c]).texts["runs.csv"].splitlines()) == 3


def test_a_reference_run_among_the_study_runs_is_refused(tmp_path):
    a = make_run(tmp_path, "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 trainer="pytorch-reference")
    with pytest.raises(UserError, match="--reference_runs"):
        build.report([a])


def test_boundaries_beyond_the_run_are_never_reached_not_thousands_of_percent(tmp_path):
    run = make_run(tmp_path, "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                   lr_boundaries=(80, 120))
    text = build.report([run]).texts["report.md"]
    assert "2666.67%" not in text and "4000%" not in text
    assert "learning rate 0.1 throughout (--lr_boundaries 80, 120 lie at or beyond its " \
           "3 epochs: never reached)" in text


# --- runs without per-epoch evaluation ----------------------------------------------

def test_runs_without_val_columns_are_reported_from_their_curves(tmp_path):
    dirs = make_study(tmp_path)  # no val_* columns, as seeds >= 1 are trained
    built = build.report(dirs)
    table = built.texts["table1.md"]
    assert "n/a (no per-epoch evaluation)" in table
    assert "passes to" in table and "curve points, test subset" in table
    assert "not reached" not in table
    assert "none per epoch" in built.texts["report.md"]


def test_a_mix_of_evaluated_and_unevaluated_runs_times_levels_on_the_curves(tmp_path):
    dirs = (make_study(tmp_path / "a", seeds=(0,), val_columns=True)
            + make_study(tmp_path / "b", seeds=(1,)))
    built = build.report(dirs)
    text = built.texts["report.md"]
    assert "for plain20 seed 0; plain56 seed 0; resnet20 seed 0; resnet56 seed 0" in text
    assert "Nothing in this report mixes the two" in text
    assert "passes to" in built.texts["table1.md"]
    assert "(4 of 8 runs)" not in built.texts["table1.md"]  # rows are per model
    assert "(1 of 2 runs)" in built.texts["table1.md"]  # "best" exists for seed 0 only
    # Without curves, a mix has no common source: the levels say why they are missing.
    for d in dirs:
        (d / "curve.json").unlink()
    text = build.report(dirs).texts["report.md"]
    assert "not measured: not every run has curve points" in text


# --- figures -------------------------------------------------------------------------

def _seed_lines(ax):
    return [line for line in ax.lines if line.get_gid() == "seed"]


def test_figures_draw_every_seed_faintly_under_the_mean(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path)]
    figs = figures.figures(loaded)
    plain, residual = figs["error_curves"].axes[:2]
    # 2 networks x (training, test) x 3 seeds, faint; 4 mean curves bold.
    assert len(_seed_lines(plain)) == 12
    assert all(line.get_alpha() == plots.SEED_ALPHA for line in _seed_lines(plain))
    means = [line for line in plain.lines if line.get_gid() == "mean"]
    assert len(means) == 4
    assert "plain20 test (mean ± std, n=3)" in [line.get_label() for line in means]
    assert len(plain.collections) >= 4  # the ± std bands
    seeds = np.array([r.curve_points[-1]["test_error"] for r in loaded
                      if r.model == "plain20"])
    test_mean = next(line for line in means if line.get_label().startswith("plain20 test"))
    assert test_mean.get_ydata()[-1] == pytest.approx(100 * seeds.mean())
    assert {"curves_20", "curves_56", "confusion_20"} <= set(figs)
    assert "depth_sweep" not in figs  # error_curves is that figure, over every seed


def test_one_seed_figures_have_no_faint_copies(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path, seeds=(0,))]
    ax = figures.figures(loaded)["error_curves"].axes[0]
    assert not _seed_lines(ax) and [line.get_label() for line in ax.lines][:2] == \
        ["plain20 training", "plain20 test"]


# --- the reference trainer -------------------------------------------------------------

def make_reference(root, seeds=(0, 1, 2), final=0.39, **recipe):
    return [make_run(root, "resnet20", s, decay(0.8, 0.40 + s / 200),
                     decay(0.78, final + s / 200), final + s / 200,
                     trainer="pytorch-reference", **recipe) for s in seeds]


def test_reference_section_compares_means_within_two_combined_standard_errors(tmp_path):
    study = make_study(tmp_path / "runs")
    refs = make_reference(tmp_path / "reference")
    built = build.report(study, reference_dirs=refs)
    text = built.texts["report.md"]
    assert "## Reference trainer" in text
    assert "![reference_curves](figures/reference_curves.png)" in text
    result = json.loads(built.texts["reference.json"])
    rows = {r["key"]: r for r in result["rows"]}
    test = rows["final_test_error"]
    ours = [runs.load_run(d).final_test_error for d in study if "resnet20" in d.name]
    theirs = [0.39, 0.395, 0.40]
    assert test["project"][0] == pytest.approx(np.mean(ours), abs=1e-4)
    assert test["reference"][0] == pytest.approx(np.mean(theirs))
    se = math.hypot(np.std(ours, ddof=1) / math.sqrt(3), np.std(theirs, ddof=1) / math.sqrt(3))
    assert test["combined_se"] == pytest.approx(se, rel=1e-3)
    assert test["within_2se"] == (abs(test["difference"]) <= 2 * se)
    assert test["test"]["p"] == pytest.approx(
        scipy_stats.ttest_ind(ours, theirs, equal_var=False).pvalue, rel=1e-3)
    assert "last_segment_train_error" in rows
    # The BatchNorm lag columns of the reference history, per pass.
    assert "| 3 | " in text and "lag of the log variance" in text
    # The reference runs' cost is listed with the study's.
    assert "| pytorch-reference | resnet20 | 2 |" in text
    ax = built.figures["reference_curves"].axes[0]
    assert len(_seed_lines(ax)) == 12  # 2 trainers x (training, test) x 3 seeds
    assert any("mean ± se, n=3" in line.get_label() for line in ax.lines)


def test_a_reference_far_off_is_not_within_two_standard_errors(tmp_path):
    study = make_study(tmp_path / "runs")
    refs = make_reference(tmp_path / "reference", final=0.30)
    result = reference.compare([runs.load_run(d) for d in study],
                               [runs.load_run(d) for d in refs])
    test = next(r for r in result["rows"] if r["key"] == "final_test_error")
    assert test["within_2se"] is False and test["difference"] > 0.05
    lines = "\n".join(reference.markdown(result, [], None))
    assert "**no**" in lines


def test_a_reference_of_another_recipe_is_not_compared(tmp_path):
    study = make_study(tmp_path / "runs", seeds=(0,))
    refs = make_reference(tmp_path / "reference", seeds=(0,), epochs=1, lr_boundaries=(80,))
    text = build.report(study, reference_dirs=refs).texts["report.md"]
    assert "Not compared: the reference run" in text and "epochs 3 vs 1" in text


def test_one_reference_seed_is_not_decided(tmp_path):
    study = make_study(tmp_path / "runs", seeds=(0,))
    refs = make_reference(tmp_path / "reference", seeds=(0,))
    text = build.report(study, reference_dirs=refs).texts["report.md"]
    assert "not decided (one seed)" in text.split("## Reference trainer")[1]


# --- cost, command line --------------------------------------------------------------

def test_cost_table_per_network_and_seed(tmp_path):
    dirs = make_study(tmp_path, load=2.0)
    summaries = [runs.run_summary(runs.load_run(d), ()) for d in dirs]
    rows = tables.cost_rows(summaries)
    assert len(rows) == 12
    first = rows[0]
    assert (first["model"], first["seed"]) == ("plain20", 0)
    assert first["train_time_s"] == pytest.approx(300.0)   # 3 epochs of 100 s
    assert first["load_average_mean"] == pytest.approx(4.0)  # 3, 4, 5
    text = tables.cost_markdown(rows)
    assert "| keras_resnet_cifar | plain20 | 0 | 5.0 | 4.0 | 400 |" in text


def test_expand_run_paths_takes_folders_runs_and_patterns(tmp_path):
    refs = make_reference(tmp_path / "reference")
    assert runs.expand_run_paths([tmp_path / "reference"]) == refs
    assert runs.expand_run_paths([str(tmp_path / "reference" / "*")]) == refs
    assert runs.expand_run_paths([refs[1]]) == [refs[1]]
    with pytest.raises(UserError, match="no run directory there"):
        runs.expand_run_paths([tmp_path / "nothing*"])


@pytest.mark.slow
def test_report_cli_takes_reference_runs(tmp_path):
    study = make_study(tmp_path / "runs")
    make_reference(tmp_path / "reference")
    done = subprocess.run(
        [sys.executable, "-m", "keras_resnet_cifar.report", *map(str, study),
         f"--reference_runs={tmp_path / 'reference' / '*'}", f"--out={tmp_path / 'out'}"],
        capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Reference trainer" in text and (tmp_path / "out" / "cost.csv").is_file()
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


def test_curve_finding_point_by_point_over_seeds(tmp_path):
    dirs = []
    for seed in (0, 1, 2):
        jitter = seed / 200
        dirs.append(make_run(tmp_path, "plain20", seed, decay(0.8 + jitter, 0.4 + jitter),
                             decay(0.8, 0.4), 0.4))
        dirs.append(make_run(tmp_path, "plain56", seed, decay(0.88 + jitter, 0.7 + jitter),
                             decay(0.8, 0.7), 0.7))
    loaded = [runs.load_run(d) for d in dirs]
    plain = findings.curve_finding(loaded[0::2], loaded[1::2], residual=False)
    assert plain["verdict"] == "supported" and "above at 12 of 12" in plain["evidence"]
    # The same nets named the other way round: the deeper one trains better, significantly.
    swapped = findings.curve_finding(loaded[1::2], loaded[0::2], residual=False)
    assert swapped["verdict"] == "contradicted"
    residual = findings.curve_finding(loaded[1::2], loaded[0::2], residual=True)
    assert residual["verdict"] == "supported"  # "deep" ends significantly below "shallow"


def test_per_layer_figures_draw_each_seed():
    fig = plots.per_layer({"after epoch 3": {"plain20": [[1, 2, 3], [1.2, 2.2, 3.2]],
                                             "resnet20": [[1, 1, 1]]}}, ylabel="std")
    ax = fig.axes[0]
    assert len(_seed_lines(ax)) == 2
    mean = next(line for line in ax.lines if line.get_gid() == "mean")
    np.testing.assert_allclose(mean.get_ydata(), [1.1, 2.1, 3.1])
    assert "plain20 (mean ± std, n=2)" in [line.get_label() for line in ax.lines]


def test_models_no_published_table_lists_are_said_so(tmp_path):
    dirs = [make_run(tmp_path, m, 0, decay(0.8, 0.5), decay(0.8, 0.5), 0.5)
            for m in ("plain8", "resnet8")]
    text = build.report(dirs).texts["report.md"]
    assert "Table 6: ;" not in text and "Table 1: ." not in text
    assert "Table 6: none of this report's models (it gives resnet20, resnet56)" in text
    assert "none of this report's models (plain8, resnet8)." in text
    assert "| resnet8 |" in text and "not published" in text


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
