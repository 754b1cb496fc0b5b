"""tables: Table 1 (mean ± std over seeds), beside the published numbers, the cost, and
provenance: what each run ran on and from, per run, never the first run's for all."""

import csv
import json

import pytest

from keras_resnet_cifar.analysis.results import findings, markdown, runs, tables
from tests.analysis.results.fake_runs import full_recipe_run, make_study


def test_table1_values_means_and_stds(epoch_study):
    levels = (0.5, 0.7)
    rows = tables.table1([runs.run_summary(runs.load_run(r), levels, runs.PER_EPOCH)
                          for r in epoch_study], levels)
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

    text = tables.table1_markdown(rows, levels, runs.PER_EPOCH)
    assert "best test acc. (%), chosen on test" in text
    assert "epochs to 50% test acc. (per-epoch eval)" in text
    assert "| plain | plain20 | 20 | 269,722 | 2 | 72.00 ± 2.83 | 72.00 ± 2.83 | 20.00 ± 0.00 | 2.00 ± 0.00 | 3.00 ± 0.00 |" in text
    assert "| plain | plain56 | 56 | 853,018 | 1 | 55.00 | 55.00 | 40.00 | 3.00 | not reached |" in text

    parsed = list(csv.DictReader(tables.to_csv(rows).splitlines()))
    assert parsed[0]["model"] == "plain20" and parsed[0]["seeds"] == "0;1"
    assert float(parsed[0]["final_test_accuracy_mean"]) == pytest.approx(0.72)
    assert parsed[1]["final_test_accuracy_std"] == ""


def test_our_numbers_stand_beside_the_published_ones(epoch_study):
    rows = tables.table1([runs.run_summary(runs.load_run(r), ()) for r in epoch_study], ())
    points = {"resnet56": [{"train_error": 0.2, "train_error_se": 0.01}],
              "plain20": [{"train_error": 0.2}, {"train_error": 0.3}]}
    text = tables.beside_published(rows, points,
                                   findings.HE_TABLE6, findings.REPRODUCTION,
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


def test_each_run_says_its_own_machine_and_what_it_did_not_record(tmp_path):
    done = full_recipe_run(tmp_path, "resnet20", 3, 0.5, finished=True, cpu="AMD EPYC")
    going = full_recipe_run(tmp_path, "plain20", 2, 0.4)
    loaded = [runs.load_run(done), runs.load_run(going)]
    first, second = [tables.provenance_row(r) for r in loaded]
    assert (first["cpu"], first["git_commit"], first["data_path"]) == \
        ("AMD EPYC", "abc123", "~/data/cifar10")
    assert first["load_average"] == "2.5-2.5 (mean 2.5)"
    # In progress: no metrics.json yet, so only the history's load is known, and the rest
    # is said to come at the end (not "not recorded", which is for runs that never will).
    assert second["cpu"] == second["tensorflow"] == tables.PENDING == "when finished"
    assert second["finished_at"].startswith("in progress")
    assert second["data_path"] == "/data/cifar10 (config.json; as given: when finished)"
    assert tables.machines(loaded) == ("AMD EPYC (1 run), when finished (1 run); cores: 2, "
                                      "when finished; GPUs: none")
    metrics = json.loads((done / "metrics.json").read_text())
    del metrics["git_commit"]
    (done / "metrics.json").write_text(json.dumps(metrics))
    assert tables.provenance_row(runs.load_run(done))["git_commit"] == tables.NOT_RECORDED
    assert "| keras_resnet_cifar | resnet20 | 0 | 3 | AMD EPYC |" in \
        tables.provenance_markdown(loaded)
