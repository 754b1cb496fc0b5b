"""provenance: what each run ran on and from, per run, never the first run's for all."""

import json

from keras_resnet_cifar.analysis.results import provenance, runs
from tests.analysis.results.fake_runs import full_recipe_run


def test_each_run_says_its_own_machine_and_what_it_did_not_record(tmp_path):
    done = full_recipe_run(tmp_path, "resnet20", 3, 0.5, finished=True, cpu="AMD EPYC")
    going = full_recipe_run(tmp_path, "plain20", 2, 0.4)
    loaded = [runs.load_run(done), runs.load_run(going)]
    first, second = provenance.rows(loaded)
    assert (first["cpu"], first["git_commit"], first["data_path"]) == \
        ("AMD EPYC", "abc123", "~/data/cifar10")
    assert first["load_average"] == "2.5-2.5 (mean 2.5)"
    # In progress: no metrics.json, so only the history's load is known.
    assert second["cpu"] == provenance.NOT_RECORDED and second["finished_at"].startswith("in progress")
    assert second["data_path"] == "/data/cifar10 (config.json; as given: not recorded)"
    assert provenance.machines(loaded) == ("AMD EPYC (1 run), not recorded (1 run); cores: 2, "
                                          "not recorded; GPUs: none")
    metrics = json.loads((done / "metrics.json").read_text())
    del metrics["git_commit"]
    (done / "metrics.json").write_text(json.dumps(metrics))
    assert provenance.row(runs.load_run(done))["git_commit"] == provenance.NOT_RECORDED
    assert "| keras_resnet_cifar | resnet20 | 0 | 3 | AMD EPYC |" in provenance.markdown(loaded)
