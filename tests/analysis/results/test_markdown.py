"""markdown: report.md's sections and the commands it prints."""

import json
import subprocess
from pathlib import Path

from keras_resnet_cifar.analysis.results import build, markdown, runs
from tests.analysis.results.fake_runs import curve_run, decay, epoch_run, make_study


def test_commands_name_the_real_run_directory(epoch_study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = runs.load_run(epoch_study[4].relative_to(tmp_path))
    command = markdown.train_command(run)
    assert command.endswith("--model_dir=plain56-seed0")
    run = runs.load_run(epoch_study[4])  # an absolute path inside the working folder
    assert markdown.train_command(run).endswith("--model_dir=plain56-seed0")
    assert markdown.portable(tmp_path.parent / "x") == (tmp_path.parent / "x").as_posix() \
        or markdown.portable(tmp_path.parent / "x").startswith("~/")
    monkeypatch.chdir(tmp_path.parent)
    assert markdown.train_command(run).endswith(f"--model_dir={tmp_path.name}/plain56-seed0")
    assert markdown.portable_command(["report", f"--out={tmp_path / 'r'}"]) == \
        f"report --out={tmp_path.name}/r"


def test_a_portable_command_runs_as_printed_with_the_home_folder_expanded(monkeypatch,
                                                                          tmp_path):
    """~/ stays outside the quotes (a quoted ~ is a folder named "~"), so the shell expands
    it in an argument (after --flag= the shell leaves it, and cli expands path flags)."""
    monkeypatch.chdir(tmp_path)
    home = Path.home()
    line = markdown.portable_command(["report", str(home / "runs" / "a b"), str(home / "r"),
                                      f"--out={home / 'o'}", "--note=it's"])
    assert line == "report ~/'runs/a b' ~/r --out=~/o '--note=it'\"'\"'s'"
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {line.removeprefix('report ')}"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert echoed[:2] == [str(home / "runs" / "a b"), str(home / "r")]
    assert echoed[3] == "--note=it's"


def test_boundaries_beyond_the_run_are_never_reached_not_thousands_of_percent(tmp_path):
    run = curve_run(tmp_path, "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                   lr_boundaries=(80, 120))
    text = build.report([run]).texts["report.md"]
    assert "2666.67%" not in text and "4000%" not in text
    assert "learning rate 0.1 throughout (--lr_boundaries 80, 120 lie at or beyond its " \
           "3 epochs: never reached)" in text


def test_models_no_published_table_lists_are_said_so(tmp_path):
    dirs = [curve_run(tmp_path, m, 0, decay(0.8, 0.5), decay(0.8, 0.5), 0.5)
            for m in ("plain8", "resnet8")]
    text = build.report(dirs).texts["report.md"]
    assert "Table 6: ;" not in text and "Table 1: ." not in text
    assert "Table 6: none of this report's models (it gives resnet20, resnet56)" in text
    assert "none of this report's models (plain8, resnet8)." in text
    assert "| resnet8 |" in text and "not published" in text


def test_an_empty_report_part_says_why(tmp_path):
    """Without curve points nor per-epoch evaluations in every run, no level is timed,
    and the report says so instead of an empty column."""
    a = epoch_run(tmp_path, "plain20", 0, [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    b = epoch_run(tmp_path, "resnet20", 0, [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    history = json.loads((b / "history.json").read_text())
    for row in history["epochs"]:
        del row["val_accuracy"], row["val_loss"]
    (b / "history.json").write_text(json.dumps(history))
    built = build.report([a, b])
    assert built.levels == ()
    assert "not measured: not every run has curve points, nor every run per-epoch " \
        "evaluations (resnet20 seed 0 have neither)" in built.texts["report.md"]


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
