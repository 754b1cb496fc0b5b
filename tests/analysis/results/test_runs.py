"""runs: loading run directories, the per-run numbers, the accuracy levels."""

import pytest

from keras_resnet_cifar.analysis.results import runs, tables
from keras_resnet_cifar.errors import UserError
from tests.analysis.results.fake_runs import epoch_run, make_reference


def test_an_unfinished_run_is_reported_from_its_history(tmp_path):
    run = epoch_run(tmp_path, "resnet56", 0, [0.3, 0.4], [0.25, 0.35])
    (run / "metrics.json").unlink()
    row = runs.run_summary(runs.load_run(run), ())
    assert row["final_test_accuracy"] == 0.35 and row["final_test_images"] == 512
    assert row["final_test_source"].startswith("history.json (unfinished")
    assert row["params"] is None and row["epochs"] == 2


def test_levels_are_chosen_from_the_runs_so_short_studies_are_measured(tmp_path):
    # A short epoch_study: nothing reaches 50%, let alone the paper-scale 80/90%.
    dirs = [epoch_run(tmp_path, "plain20", 0, [0.15, 0.2, 0.25], [0.14, 0.22, 0.31]),
            epoch_run(tmp_path, "resnet20", 0, [0.2, 0.3, 0.4], [0.25, 0.34, 0.40]),
            epoch_run(tmp_path, "plain56", 0, [0.1, 0.1, 0.1], [0.10, 0.11, 0.12])]
    loaded = [runs.load_run(d) for d in dirs]
    levels, note = runs.choose_levels(loaded)
    # plain56 never left chance; the lowest best of the others is plain20's 31%:
    # chance + (31 - 10) * k / 3 = 17, 24, 31%.
    assert levels == (0.17, 0.24, 0.31)
    assert "31.0%" in note
    rows = tables.table1([runs.run_summary(r, levels, runs.PER_EPOCH) for r in loaded], levels)
    # 17%: plain20 epoch 2, resnet20 epoch 1; 31%: 3 and 2.
    assert (rows[0]["to_17pct_mean"], rows[2]["to_17pct_mean"]) == (2, 1)
    assert (rows[0]["to_31pct_mean"], rows[2]["to_31pct_mean"]) == (3, 2)
    assert rows[1]["to_17pct_reached"] == 0

    stuck = [runs.load_run(dirs[2])]
    assert runs.choose_levels(stuck)[0] == ()


def test_expand_run_paths_takes_folders_runs_and_patterns(tmp_path):
    refs = make_reference(tmp_path / "reference")
    assert runs.expand_run_paths([tmp_path / "reference"]) == refs
    assert runs.expand_run_paths([str(tmp_path / "reference" / "*")]) == refs
    assert runs.expand_run_paths([refs[1]]) == [refs[1]]
    with pytest.raises(UserError, match="nothing"):
        runs.expand_run_paths([tmp_path / "nothing*"])


def test_train_set_size_follows_the_config():
    assert runs.train_set_size({"dataset": "cifar10"}) == 50_000
    assert runs.train_set_size({"dataset": "cifar10", "validation_split": 5000}) == 45_000
    assert runs.train_set_size({"dataset": "synthetic", "synthetic_train_size": 640}) == 640


def test_accuracy_levels_are_fractions_and_errors_name_the_argument():
    assert runs.parse_levels([]) is None
    assert runs.parse_levels(["0.5", "0.8"]) == (0.5, 0.8)
    for values in (["x"], ["0.5", "2"]):
        with pytest.raises(UserError, match=",".join(values)) as e:
            runs.parse_levels(values)
        assert e.value.argument == "accuracy_levels" and "--" not in str(e.value)
