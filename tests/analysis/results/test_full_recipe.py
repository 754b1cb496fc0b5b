"""full_recipe: one seed per network at the default 200-epoch recipe, finished or in
progress, beside the published figures (issue 23)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar import run_files

from keras_resnet_cifar.analysis.results import build, full_recipe, runs, stats
from keras_resnet_cifar.errors import UserError
from tests.analysis.results.fake_runs import full_recipe_run


@pytest.fixture
def finished(tmp_path):
    return [full_recipe_run(tmp_path, "plain20", 200, 0.9080, finished=True),
            full_recipe_run(tmp_path, "resnet20", 200, 0.9170, finished=True,
                          cpu="AMD EPYC", per_class=(0.95, 0.85)),
            full_recipe_run(tmp_path, "plain56", 200, 0.8700, finished=True),
            full_recipe_run(tmp_path, "resnet56", 200, 0.9330, finished=True)]


def test_auto_mode_picks_full_recipe_and_sets_ours_beside_the_published(finished, tmp_path):
    out = tmp_path / "out"
    build.write_report(finished, out, command="python -m keras_resnet_cifar.report x")
    text = (out / "report.md").read_text()
    assert text.startswith("# Table 1 at the full recipe")
    assert "In progress" not in text
    # ours, Shinde's, He et al.'s and the reference's figures, with each difference in
    # units of the sd of a difference of two runs: sqrt(2) x He et al.'s 0.16 points.
    assert "| resnet20 | 200 | 91.70 (final, 10,000 images) | 91.95 | -0.25 (-1.1 sd) | 91.25 | " \
           "+0.45 (+2.0 sd) | 91.73 | -0.03 (-0.1 sd) |" in text
    assert "| plain56 | 200 | 87.00 (final, 10,000 images) | 86.71 | +0.29 (+1.3 sd) | " \
           "- (figures only) |  | - |  |" in text
    assert "6.43 (6.61±0.16)" in text and "sqrt(2) x 0.16 = 0.23 points" in text
    # the paper's comparisons between nets, beside the sd, never decided from one seed
    assert "ResNet-56 above ResNet-20 (Shinde's Table 1: +1.30 points): here +1.60 points, " \
           "7.1 times the spread of a difference between two runs" in text
    # per class and provenance per run (not the first run's CPU for all)
    assert "| airplane | 90.00 | 95.00 | 90.00 | 90.00 |" in text
    assert "(seed 0)" in text and "at 56 (one seed)" in text and "means over" not in text
    assert "AMD EPYC" in text and "Test CPU" in text and "~/data/cifar10" in text
    assert (out / "figures" / "table1_curves.png").exists()
    assert "He et al.'s, 0-20%: errors above 20% (the first epochs) run off its top" in text
    found = json.loads((out / "findings.json").read_text())
    assert found and all(not f["verdict"].startswith(("supported", "contradicted"))
                         for f in found)
    assert any(f["verdict"] == stats.ONE_SEED for f in found)
    # (a) rests on training and test error: both are shown, not the first only
    assert "not decided (one seed); training error over the last epoch: plain56 10.00% (one " \
           "seed) vs plain20 10.00% (one seed); final test error: plain56 13.00% (one seed) " \
           "vs plain20 9.20% (one seed)." in text
    rows = (out / "table1.csv").read_text()
    assert rows.splitlines()[0].startswith("model,seed,epochs_done,test_accuracy")
    # "better across all classes", counted per class from the evaluations of one seed each
    assert "- At depth 20, the residual net is better across all classes [Shinde (2025), " \
           "section not recorded]: no verdict (described, not tested); resnet20 above plain20 " \
           "on 2 of 2 classes (per-class test accuracy, one seed each): airplane +5.0, " \
           "automobile +5.0 points." in text
    # (d) times the early descent on the study's curve points: `train` runs have none, and
    # the report says so rather than asking for runs that left chance
    assert "(d) ResNet-20 converges 2x faster than plain-20 (passes to a training-error " \
           "level) [Shinde (2025), section not recorded]: not measured; needs curve points " \
           "in every run (several a pass, as `study --curve_points_per_epoch` records them): " \
           "a training error once an epoch is too coarse" in text


def test_partial_runs_say_where_they_stand(tmp_path):
    dirs = [full_recipe_run(tmp_path, "resnet20", 40, 0.85),
            full_recipe_run(tmp_path, "plain20", 12, 0.70)]
    out = tmp_path / "out"
    build.write_report(dirs, out)
    text = (out / "report.md").read_text()
    assert "**In progress.**" in text
    # 40 of 200 epochs done; 160 left at 90 s each = 4.0 h
    assert "| resnet20 | 0 | 40 of 200 | 85.00 (per-epoch evaluation after epoch 40) | 555 " \
           "| 1.00 | 4.0 |" in text
    assert "| plain20 | 0 | 12 of 200 |" in text
    # not set against end-of-schedule figures, nor against each other, while in progress
    assert "| resnet20 | 40 | 85.00 (per-epoch evaluation after epoch 40) | 91.95 | in " \
           "progress | 91.25 | in progress | 91.73 | in progress |" in text
    assert "| plain20 | 12 | 70.00 (per-epoch evaluation after epoch 12) | 90.84 | in " \
           "progress | - (figures only) |  | - |  |" in text
    assert "- (needs at least two of the four networks, finished)" in text
    assert "ResNet-20 above plain-20" not in text
    assert ",0.9195,,0.9125,,0.9173,\n" in (out / "table1.csv").read_text()
    # no claim counts an unfinished run: each says which finished runs it still needs
    assert "Not finished: plain20 (epoch 12 of 200), resnet20 (epoch 40 of 200)." in text
    found = json.loads((out / "findings.json").read_text())
    assert found and all(f["verdict"] == stats.NOT_MEASURED for f in found)
    assert "- (b) ResNet-56 is above ResNet-20: lower test error [Shinde (2025), Table 1]: " \
           "not measured; needs resnet20 and resnet56 runs." in text
    assert "in progress (no metrics.json)" in text and "not recorded" in text


def test_a_run_in_its_first_epoch_is_listed_not_refused(tmp_path):
    """The trainer writes config.json at its start and history.json after the first epoch:
    the documented `report ~/table1/runs/*-seed0 --copy_runs` runs in between too."""
    done = full_recipe_run(tmp_path / "runs", "resnet20", 200, 0.9132, finished=True)
    started = full_recipe_run(tmp_path / "runs", "plain20", 0, 0.0)
    (started / "history.json").unlink()
    out = tmp_path / "docs"
    result = _report(done, started, "--copy_runs", f"--out={out}")
    assert result.returncode == 0, result.stderr
    text = (out / "report.md").read_text()
    assert "| plain20 | 0 | 0 of 200 | n/a (no evaluation yet) |" in text
    assert "Not finished: plain20 (epoch 0 of 200)." in text
    assert "| resnet20 | 200 | 91.32 (final, 10,000 images) |" in text
    assert [p.name for p in (out / "runs" / started.name).iterdir()] == ["config.json"]
    # a folder without config.json is still not a run
    (tmp_path / "empty").mkdir()
    result = _report(done, tmp_path / "empty", f"--out={out}")
    assert result.returncode == 1 and "is not a run directory" in result.stderr


def test_a_finished_run_is_never_set_against_one_in_progress(tmp_path):
    """ResNet-20 done, plain-20 at epoch 3: its early figure enters no claim."""
    dirs = [full_recipe_run(tmp_path, "resnet20", 200, 0.9170, finished=True),
            full_recipe_run(tmp_path, "plain20", 3, 0.50)]
    out = tmp_path / "out"
    build.write_report(dirs, out)
    text = (out / "report.md").read_text()
    assert "Not finished: plain20 (epoch 3 of 200)." in text
    assert "Not started: plain56, resnet56." in text
    assert "| resnet20 | 200 | 91.70 (final, 10,000 images) | 91.95 | -0.25" in text
    assert "ResNet-20 above plain-20" not in text and "plain20 (one seed)" not in text
    assert "not testable at this budget" not in text  # the budget is the paper's
    found = json.loads((out / "findings.json").read_text())
    assert all(f["verdict"] == stats.NOT_MEASURED for f in found), found
    assert "better across all classes [Shinde (2025), section not recorded]: not measured; " \
           "needs evaluated plain20 and resnet20 runs" in text


def test_a_finished_run_without_evaluation_is_named_not_dropped(finished, tmp_path):
    (finished[0] / "evaluation.json").unlink()  # plain20's `evaluate` failed
    text = build.report(finished).texts["report.md"]
    assert "| class | resnet20 | plain56 | resnet56 |" in text
    assert "Not here: plain20, finished but not evaluated (no evaluation.json" in text
    assert "- At depth 20, the residual net is better across all classes [Shinde (2025), " \
           "section not recorded]: not measured; needs evaluated plain20 and resnet20 runs" in text
    assert "Not started" not in text


def test_full_recipe_mode_forced_on_a_short_recipe_says_so(tmp_path):
    dirs = [full_recipe_run(tmp_path, m, 2, a, finished=True)
            for m, a in (("resnet20", 0.30), ("plain20", 0.25))]
    for run in dirs:  # a 2-epoch recipe, finished
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "epochs": 2}))
    text = build.report(dirs, mode="full_recipe").texts["report.md"]
    assert "ResNet-20 above plain-20 (Shinde's Table 1: +1.11 points): here +5.00 points" in text
    assert "(runs of a recipe shorter than 200 epochs: not the end-of-schedule figure)." in text
    assert "unfinished" not in text


def test_study_mode_is_kept_for_short_recipes_and_modes_are_checked(finished, tmp_path):
    run = runs.load_run(finished[0])
    assert full_recipe.is_full_recipe([run])
    config = dict(run.config, epochs=3)
    assert not full_recipe.is_full_recipe([runs.Run(**{**run.__dict__, "config": config})])
    with pytest.raises(UserError, match="'table'") as e:
        build.report(finished, mode="table")
    assert e.value.argument == "mode"
    study = build.report(finished, mode="study")
    assert study.texts["report.md"].startswith("# Plain vs residual")


def test_curves_span_the_schedule_in_figure_6s_error_range_with_the_lr_drops(tmp_path):
    fig = full_recipe.figures([runs.load_run(full_recipe_run(tmp_path, "resnet20", 40, 0.85))])
    plain, residual = fig["table1_curves"].axes
    for ax in (plain, residual):
        assert ax.get_xlim() == (0, 200) and ax.get_ylim() == (0, 20)
        assert sorted(line.get_xdata()[0] for line in ax.lines
                      if line.get_linestyle() == ":") == [80, 120]
    assert [t.get_text() for t in plain.texts] == ["no run yet"] and not residual.texts
    assert len(residual.lines) == 4  # two drops, resnet20's training and test error


def _report(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.report", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_copy_runs_reports_from_copies_that_rebuild_the_same_report(tmp_path):
    run = full_recipe_run(tmp_path / "elsewhere", "resnet20", 40, 0.85)
    (run / "model.keras").write_bytes(b"not small")
    out = tmp_path / "docs"
    done = _report(run, "--copy_runs", f"--out={out}")
    assert done.returncode == 0, done.stderr
    copy = out / "runs" / run.name
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        p.name for p in run.iterdir() if p.name in run_files.SMALL_FILES)
    first = (out / "report.md").read_text()
    assert "| resnet20 | 0 | 40 of 200 |" in first
    # the committed folder rebuilds itself, with the training machine's folders gone
    shutil.rmtree(tmp_path / "elsewhere")
    done = _report(copy, "--copy_runs", f"--out={out}")
    assert done.returncode == 0, done.stderr
    def sections(text):  # but the one giving the commands, with their paths
        return [s for s in text.split("\n## ") if not s.startswith("Commands")]
    assert sections((out / "report.md").read_text()) == sections(first)


def test_copy_runs_names_each_copy_by_its_folder_resolved(tmp_path):
    run = full_recipe_run(tmp_path / "a", "resnet20", 40, 0.85)
    (tmp_path / "latest").symlink_to(run)
    out = tmp_path / "docs"
    done = _report(".", "--copy_runs", f"--out={out}", cwd=run)
    assert done.returncode == 0, done.stderr
    done = _report(tmp_path / "latest", "--copy_runs", f"--out={out}")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (out / "runs").iterdir()] == ["resnet20-seed0"]
    assert not (out / "config.json").exists() and not (out / "runs" / "config.json").exists()


def test_copy_runs_refuses_before_copying_anything(tmp_path):
    good = full_recipe_run(tmp_path / "a", "resnet20", 40, 0.85)
    twin = full_recipe_run(tmp_path / "b", "resnet20", 12, 0.70)
    out = tmp_path / "docs"
    (tmp_path / "c").mkdir()
    (tmp_path / "l1").mkdir()
    (tmp_path / "l2").mkdir()
    (tmp_path / "l1" / "latest").symlink_to(good)
    (tmp_path / "l2" / "latest").symlink_to(twin)
    for args, said in [((good, twin), "resnet20-seed0 names more than one of the runs"),
                       ((good, f"{good}/"), f"{good} is given twice"),
                       ((good, tmp_path / "c"), "is not a run directory"),
                       # refused by the report itself, which used to come after the copy
                       ((good, "--accuracy_levels=0.5"), "takes no --accuracy_levels"),
                       ((good, "--accuracy_levels=abc"), "abc")]:
        done = _report(*args, "--copy_runs", f"--out={out}")
        assert done.returncode != 0 and said in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
        assert not (out / "runs").exists()
    # links are resolved: two links named alike are two runs of one name (plain20 is not
    # silently dropped for resnet20)
    done = _report(tmp_path / "l1" / "latest", tmp_path / "l2" / "latest", "--copy_runs",
                   f"--out={out}")
    assert done.returncode != 0 and "resnet20-seed0 names more than one" in done.stderr


def test_a_run_is_finished_once_its_metrics_are_written(tmp_path):
    """200 epochs in history.json but no metrics.json (stopped before its last act): still in
    progress in every table, as the provenance's "when finished" says."""
    run = full_recipe_run(tmp_path, "resnet20", 200, 0.917)
    out = tmp_path / "out"
    build.write_report([run], out)
    text = (out / "report.md").read_text()
    assert "**In progress.**" in text
    assert "| resnet20 | 200 | 91.70 (per-epoch evaluation after epoch 200) | 91.95 | in " \
           "progress |" in text


def test_full_recipe_refuses_what_it_would_ignore(finished, tmp_path):
    with pytest.raises(UserError, match="takes no reference_runs, variant_runs:") as e:
        build.report(finished, reference_dirs=finished[:1], variant_dirs=finished[:1])
    assert e.value.argument == ("reference_runs", "variant_runs")
    with pytest.raises(UserError, match="takes no accuracy_levels:"):
        build.report(finished, accuracy_levels=[0.5], mode="full_recipe")
    done = _report(*finished, f"--reference_runs={finished[0]}", f"--out={tmp_path / 'out'}")
    assert done.returncode != 0 and not (tmp_path / "out").exists()
    assert done.stderr.strip().splitlines() == [
        "error: The full-recipe report (Table 1 beside the published figures) takes no "
        "--reference_runs: those belong to the study's report (--mode=study)."]


TABLE1 = Path(__file__).resolve().parents[3] / "docs" / "table1"


@pytest.mark.skipif(not (TABLE1 / "runs").is_dir(), reason="docs/table1 has no runs yet")
def test_the_committed_table1_report_is_what_its_committed_runs_give():
    """docs/table1 is the report machinery's output over docs/table1/runs, never edited by
    hand: rebuilt from those files, every table, the findings and the text are the same."""
    made = build.report(sorted((TABLE1 / "runs").glob("*-seed0")), command="report")
    for name in ("table1.csv", "status.csv", "provenance.csv", "findings.json"):
        assert made.texts[name] == (TABLE1 / name).read_text(), name

    def sections(text):  # but the one giving the commands, with their paths
        return [s for s in text.split("\n## ") if not s.startswith("Commands")]
    assert sections(made.texts["report.md"]) == sections((TABLE1 / "report.md").read_text())


def _restart_table():
    """docs/table1/README.md's table of the restart against the first attempt."""
    rows = [line.strip("|").split("|") for line in
            (TABLE1 / "README.md").read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    return [tuple(cell.strip() for cell in row) for row in rows]


@pytest.mark.skipif(not (TABLE1 / "runs").is_dir(), reason="docs/table1 has no runs yet")
def test_the_restart_table_is_what_the_committed_history_and_commits_hold():
    """Every figure of the table comes from its source: the restart's from its committed
    history.json; the first attempt's from the commit named (when this clone has it) or,
    for its progress notes' two-decimal figures, equal to the restart's as rounded. A row
    "not yet" is for an epoch the committed history has not reached."""
    history = json.loads((TABLE1 / "runs" / "resnet20-seed0" / "history.json").read_text())
    epochs = {r["epoch"]: r for r in history["epochs"]}
    table = _restart_table()
    assert len([row for row in table if row[-1] != "not yet"]) >= 12
    full = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], capture_output=True,
                          text=True, cwd=TABLE1)
    has_history = full.returncode == 0 and full.stdout.strip() == "false"
    for epoch, lr, first, source, restart in table:
        if source != "progress note" and has_history:  # the first attempt's, from its commit
            shown = subprocess.run(["git", "show", f"{source}:docs/table1/status.csv"],
                                   capture_output=True, text=True, cwd=TABLE1)
            assert shown.returncode == 0, (epoch, source, shown.stderr)
            row = dict(zip(*(line.split(",") for line in shown.stdout.splitlines()[:2])))
            assert (row["epochs_done"], row["test_accuracy"]) == (epoch, first), epoch
        if restart == "not yet":  # still ahead of the committed history, or the table is stale
            assert int(epoch) not in epochs, epoch
            continue
        record = epochs[int(epoch)]
        assert float(lr) == pytest.approx(record["learning_rate"]), epoch
        if restart.endswith("%"):
            assert restart == f"{100 * record['val_accuracy']:.2f}%", epoch
        else:
            assert restart == repr(record["val_accuracy"]), epoch
        assert first == restart, epoch  # the table's claim: equal, to the last bit shown


_NAMES = {"plain-20": "plain20", "ResNet-20": "resnet20", "plain-56": "plain56",
          "ResNet-56": "resnet56"}


@pytest.mark.skipif(not (TABLE1 / "runs").is_dir(), reason="docs/table1 has no runs yet")
def test_where_the_runs_stand_is_what_the_committed_runs_say():
    """The hand-written status lines (docs/table1's "Now", the README's progress line) give
    the epoch and test accuracy of the last committed progress update; once a run has
    finished, the README's "Results at a glance" leads with Table 1 (issue 23)."""
    readme = (TABLE1.parents[1] / "README.md").read_text()
    now = (TABLE1 / "README.md").read_text().split("**Now**", 1)[1].split("\n\n", 1)[0]
    glance = readme.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    line = glance.split("says where they stand", 1)[1].split("\n\n", 1)[0]
    finished = []
    for folder in sorted((TABLE1 / "runs").glob("*-seed0")):
        model = folder.name.removesuffix("-seed0")
        name = next(n for n, m in _NAMES.items() if m == model)
        if (folder / "metrics.json").exists():
            finished.append(name)
            continue
        epochs = run_files.read_history(folder)
        said = (f"{name} at epoch {epochs[-1]['epoch']} of 200, "
                f"{100 * epochs[-1]['val_accuracy']:.2f}%" if epochs else f"{name} started")
        for text in (now, line):
            assert said in " ".join(text.split()), (said, text)
    if finished:  # the report's Table 1, as committed, before the 3-pass study
        report = (TABLE1 / "report.md").read_text().split("\n## Table 1\n", 1)[1]
        table = "\n".join(l for l in report.split("\n## ", 1)[0].splitlines()
                          if l.startswith("|"))
        assert table and table in glance.split("**The degradation problem", 1)[0], \
            f"{', '.join(finished)} finished: Results at a glance leads with Table 1"


def test_the_export_table_of_table1_is_what_the_committed_parity_report_says():
    """docs/table1's export table gives the committed parity.json's agreement, disagreements
    (near ties), accuracy and size for every variant it names."""
    parity = json.loads((TABLE1 / "export" / "resnet20-parity.json").read_text())["variants"]
    text = (TABLE1 / "README.md").read_text()
    rows = text.split("| variant | top-1 agreement with Keras |", 1)[1].split("\n\n", 1)[0]
    names = {"SavedModel": "saved_model", "TFLite float32": "tflite_float32",
             "TFLite float16": "tflite_float16", "TFLite dynamic range": "tflite_dynamic_range",
             "TFLite int8": "tflite_int8"}
    seen = []
    for line in rows.splitlines()[2:]:
        name, agreement, disagree, accuracy, size = [
            c.strip() for c in line.strip("|").split("|")]
        v = parity[names[name]]
        assert (agreement, disagree, accuracy, size) == (
            f"{100 * v['top1_agreement']:.2f}%",
            f"{v['disagreements']} ({v['close_disagreements']})", f"{100 * v['accuracy']:.2f}%",
            f"{v['size_bytes'] / 1e6:.2f} MB"), name
        seen.append(names[name])
    assert sorted(seen) == sorted(set(parity) - {"keras"})
