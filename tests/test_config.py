"""config: TrainConfig's defaults, checks and JSON round trip, and the learning-rate schedule."""

from __future__ import annotations

import doctest
import json

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.errors import UserError


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
    (dict(epochs=0), "epochs must be positive, got 0"),
    (dict(epochs=-1), "epochs must be positive, got -1"),
    (dict(shortcut="C"), "shortcut must be one of A, B, got .C."),
    (dict(lr_boundaries=(120, 80)), "lr_boundaries must be increasing positive epochs"),
    (dict(lr_boundaries=("a",)), "lr_boundaries must be numbers"),
    (dict(dataset="mnist"), "dataset must be one of cifar10, synthetic, got 'mnist'"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(validation_split=-1), "validation_split must not be negative"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(UserError, match=message) as e:
        config_lib.TrainConfig(**bad)
    assert e.value.argument == next(iter(bad))  # the command shows it as its flag


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="Unknown configuration keys: colour, size"):
        config_lib.TrainConfig.from_dict({"size": 1, "colour": 2, "model": "resnet8"})


@pytest.mark.parametrize("bad,message", [
    (dict(learning_rate=float("inf")), "learning_rate must be a finite number > 0"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number > 0"),
    (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
    (dict(warmup_learning_rate=float("inf")), "warmup_learning_rate must be a finite"),
    (dict(lr_decay=-1.0), r"lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=0.0), r"lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=1.5), r"lr_decay must be in \(0, 1\]"),
    (dict(lr_decay=float("nan")), r"lr_decay must be in \(0, 1\]"),
    (dict(momentum=float("nan")), r"momentum must be in \[0, 1\)"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0"),
    (dict(weight_decay=float("inf")), "weight_decay must be a finite number >= 0"),
    (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0"),
])
def test_values_that_cannot_train_are_refused(bad, message):
    with pytest.raises(UserError, match=message) as e:
        config_lib.TrainConfig(**bad)
    assert e.value.argument == next(iter(bad))  # the command shows it as its flag


def test_edge_values_that_can_train_are_accepted():
    config_lib.TrainConfig(lr_decay=1.0, momentum=0.0, weight_decay=0.0)
    config_lib.TrainConfig(seed=0)
    config_lib.TrainConfig(seed=2**32 - 1, batch_size=2**31, steps_per_epoch=2**20, epochs=4)


@pytest.mark.parametrize("bad,message", [
    (dict(seed=-1), r"seed must be in \[0, 4294967295\], got -1"),
    (dict(seed=10**20), r"seed must be in \[0, 4294967295\]"),
    (dict(batch_size=10**23), r"batch_size must be at most 9223372036854775807"),
    (dict(steps_per_epoch=10**23), r"steps_per_epoch must be at most"),
    (dict(eval_steps=10**23), r"eval_steps must be at most"),
    (dict(synthetic_train_size=10**23), r"synthetic_train_size must be at most"),
    (dict(steps_per_epoch=2**40, batch_size=2**20, epochs=2**10),
     r"epochs x steps_per_epoch x batch_size must be at most"),
])
def test_integers_out_of_range_are_refused(bad, message):
    # Issue 16, item 3: these overflowed later, in NumPy or TensorFlow, as tracebacks.
    with pytest.raises(UserError, match=message) as e:
        config_lib.TrainConfig(**bad)
    assert e.value.argument == next(iter(bad))  # the command shows it as its flag


@pytest.mark.parametrize("kwargs,steps", [
    (dict(steps_per_execution=4), 391),  # 50,000 images in batches of 128
    (dict(steps_per_execution=3, validation_split=5000), 352),
    (dict(steps_per_execution=3, steps_per_epoch=8), 8),
    (dict(steps_per_execution=3, dataset="synthetic", synthetic_train_size=256,
          batch_size=64), 4),
])
def test_steps_per_execution_must_divide_the_epoch(kwargs, steps):
    with pytest.raises(UserError, match=f"does not divide the {steps} steps of an epoch"):
        config_lib.TrainConfig(**kwargs)


def test_a_huge_epoch_that_steps_per_execution_does_not_divide_is_refused_at_once():
    # The message listed the divisors by trying every number up to the epoch's steps.
    with pytest.raises(UserError, match="1099511627776 steps") as e:
        config_lib.TrainConfig(steps_per_epoch=2**40, steps_per_execution=3, epochs=1,
                               batch_size=1)
    assert e.value.argument == ("steps_per_execution", "steps_per_epoch")
    # train spells both as its flags (cli.flag_message)
    from keras_resnet_cifar.cli import flag_message
    assert flag_message(e.value).startswith("--steps_per_execution=3 does not divide")
    assert flag_message(e.value).endswith(", ...), or change --steps_per_epoch.")


def test_an_epoch_is_a_pass_over_what_the_held_out_split_leaves():
    assert config_lib.TrainConfig(validation_split=5000).epoch_steps() == 352
    assert config_lib.TrainConfig(validation_split=49_999).epoch_steps() == 1
    assert config_lib.TrainConfig(dataset="synthetic", synthetic_train_size=640,
                                  validation_split=40, batch_size=100).epoch_steps() == 6


def test_steps_per_execution_that_divides_the_epoch_is_accepted():
    assert config_lib.TrainConfig(steps_per_execution=17).epoch_steps() == 391
    config_lib.TrainConfig(steps_per_execution=4, steps_per_epoch=8)
    config_lib.TrainConfig(steps_per_execution=4, dataset="synthetic",
                           synthetic_train_size=256, batch_size=64)


def test_keras_runs_an_execution_past_the_end_of_an_epoch():
    """Why the rule above: Keras runs every execution whole, so with 3 steps per
    execution an epoch of 8 steps takes 9 (and the next epoch 7). If this ever fails,
    Keras cuts the last execution and the rule can go."""
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=3)
    steps_after_epoch = []
    done = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: steps_after_epoch.append(
        int(model.optimizer.iterations)))
    x = np.zeros((64, 2), np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=2, steps_per_epoch=8, callbacks=[done],
              verbose=0, shuffle=False)
    assert steps_after_epoch[0] == 9


# --- Issue 29: sizes and names bounded before anything is made ---------------------------

@pytest.mark.parametrize("field,value,message", [
    ("synthetic_train_size", 10**8, "synthetic_train_size must be at most 60,000"),
    ("synthetic_test_size", 60_001, "synthetic_test_size must be at most 60,000"),
    ("model", "resnet" + "9" * 20, "Unknown model name"),  # 1e20: never read as a depth
    ("model", "resnet12002", "Depth 12002 in 'resnet12002' is beyond 1202"),
    ("model", "resnet\uff12\uff10", "Unknown model name"),  # full-width digits
    ("model", "resnet20\n", "Unknown model name"),
])
def test_sizes_and_depths_beyond_the_bounds_are_refused(field, value, message):
    # Issue 29: --synthetic_train_size=1e8 took 2.2 GB; a model name of depth 1e20 hung
    # at 2.4 GB; Unicode digits and a trailing newline were tracebacks.
    with pytest.raises(UserError, match=message):
        config_lib.TrainConfig(**{field: value})
    config_lib.TrainConfig(synthetic_train_size=60_000, model="resnet1202")
