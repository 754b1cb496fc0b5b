"""runs: the per-run numbers read from a run directory's records."""

from keras_resnet_cifar.analysis.results import runs


def test_epochs_to_reach():
    rows = [{"epoch": 1, "val_accuracy": 0.3}, {"epoch": 2, "val_accuracy": 0.55},
            {"epoch": 3, "val_accuracy": 0.5}]
    assert runs.epochs_to_reach(rows, 0.5) == 2
    assert runs.epochs_to_reach(rows, 0.3) == 1
    assert runs.epochs_to_reach(rows, 0.6) is None


def test_train_set_size_follows_the_config():
    assert runs.train_set_size({"dataset": "cifar10"}) == 50_000
    assert runs.train_set_size({"dataset": "cifar10", "validation_split": 5000}) == 45_000
    assert runs.train_set_size({"dataset": "synthetic", "synthetic_train_size": 640}) == 640
