"""config: TrainConfig's defaults, checks and JSON round trip, and the learning-rate schedule."""

from __future__ import annotations

import doctest
import json

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar.data import datasets


def test_docstring_examples_run():
    result = doctest.testmod(config_lib)
    assert result.attempted > 0 and result.failed == 0, result


def test_default_learning_rate_schedule_drops_after_epochs_80_and_120():
    cfg = config_lib.TrainConfig()
    lrs = [config_lib.learning_rate_at(e, cfg) for e in range(200)]
    assert lrs[0] == lrs[79] == 0.1
    assert lrs[80] == lrs[119] == pytest.approx(0.01)
    assert lrs[120] == lrs[199] == pytest.approx(0.001)
    warm = config_lib.TrainConfig(warmup_epochs=1)
    assert config_lib.learning_rate_at(0, warm) == 0.01
    assert config_lib.learning_rate_at(1, warm) == 0.1


def test_config_defaults_and_round_trip():
    cfg = config_lib.TrainConfig(model="plain56")
    assert (cfg.epochs, cfg.batch_size, cfg.momentum, cfg.weight_decay) == (200, 128, 0.9, 1e-4)
    assert cfg.lr_boundaries == (80, 120)
    again = config_lib.TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_whole_boundaries_are_kept_as_ints_fractions_as_floats():
    boundaries = config_lib.TrainConfig(lr_boundaries=(80.0, 120.5)).lr_boundaries
    assert boundaries == (80, 120.5) and type(boundaries[0]) is int
    assert config_lib.TrainConfig(lr_boundaries=("3",)).lr_boundaries == (3,)


def test_the_data_set_names_are_the_data_rooms():
    """One definition: config checks --dataset against what datasets.load accepts."""
    assert config_lib.DATASETS is datasets.DATASETS


@pytest.mark.parametrize("bad,message", [
    (dict(model="resnet21"), "Invalid depth 21 in 'resnet21'"),
    (dict(epochs=0), "--epochs must be positive, got 0"),
    (dict(epochs=-1), "--epochs must be positive, got -1"),
    (dict(shortcut="C"), "--shortcut must be A or B"),
    (dict(lr_boundaries=(120, 80)), "--lr_boundaries must be increasing positive epochs"),
    (dict(lr_boundaries=("a",)), "--lr_boundaries must be numbers"),
    (dict(dataset="mnist"), "--dataset must be one of cifar10, synthetic, got 'mnist'"),
    (dict(momentum=1.5), r"--momentum must be in \[0, 1\)"),
    (dict(validation_split=-1), "--validation_split must not be negative"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        config_lib.TrainConfig(**bad)


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="Unknown configuration keys: colour, size"):
        config_lib.TrainConfig.from_dict({"size": 1, "colour": 2, "model": "resnet8"})


@pytest.mark.parametrize("bad,message", [
    (dict(learning_rate=float("inf")), "--learning_rate must be a finite number > 0"),
    (dict(learning_rate=float("nan")), "--learning_rate must be a finite number > 0"),
    (dict(learning_rate=0.0), "--learning_rate must be a finite number > 0"),
    (dict(warmup_learning_rate=float("inf")), "--warmup_learning_rate must be a finite"),
    (dict(lr_decay=-1.0), r"--lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=0.0), r"--lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=1.5), r"--lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=float("nan")), r"--lr_decay must be in \(0, 1\]"),
    (dict(momentum=float("nan")), r"--momentum must be in \[0, 1\)"),
    (dict(momentum=1.0), r"--momentum must be in \[0, 1\)"),
    (dict(weight_decay=float("nan")), "--weight_decay must be a finite number >= 0"),
    (dict(weight_decay=float("inf")), "--weight_decay must be a finite number >= 0"),
    (dict(weight_decay=-1e-4), "--weight_decay must be a finite number >= 0"),
])
def test_values_that_cannot_train_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        config_lib.TrainConfig(**bad)


def test_edge_values_that_can_train_are_accepted():
    config_lib.TrainConfig(lr_decay=1.0, momentum=0.0, weight_decay=0.0)
    config_lib.TrainConfig(seed=0)
    config_lib.TrainConfig(seed=2**32 - 1, batch_size=2**31, steps_per_epoch=2**20, epochs=4)


@pytest.mark.parametrize("bad,message", [
    (dict(seed=-1), r"--seed must be in \[0, 4294967295\], got -1"),
    (dict(seed=10**20), r"--seed must be in \[0, 4294967295\]"),
    (dict(batch_size=10**23), r"--batch_size must be at most 9223372036854775807"),
    (dict(steps_per_epoch=10**23), r"--steps_per_epoch must be at most"),
    (dict(eval_steps=10**23), r"--eval_steps must be at most"),
    (dict(synthetic_train_size=10**23), r"--synthetic_train_size must be at most"),
    (dict(steps_per_epoch=2**40, batch_size=2**20, epochs=2**10),
     r"--epochs x --steps_per_epoch x --batch_size must be at most"),
])
def test_integers_out_of_range_are_refused(bad, message):
    # Issue 16, item 3: these overflowed later, in NumPy or TensorFlow, as tracebacks.
    with pytest.raises(ValueError, match=message):
        config_lib.TrainConfig(**bad)
