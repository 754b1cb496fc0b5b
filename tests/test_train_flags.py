"""The training flags shared by train, study and benchmark: derived from TrainConfig."""

import dataclasses
from pathlib import Path

import pytest
from absl import flags

from keras_resnet_cifar import train_flags
from keras_resnet_cifar.config import TrainConfig, changed_flags
from keras_resnet_cifar.errors import UserError

REPO = Path(__file__).resolve().parents[1]

# Every field (of those known when this was written) away from its default: a flag
# that does not reach the config breaks the round trip below.
CHANGED = TrainConfig(
    model="plain32", shortcut="B", dataset="synthetic", data_dir="some/where",
    validation_split=100, synthetic_train_size=640, synthetic_test_size=320, epochs=7,
    batch_size=64, learning_rate=0.05, lr_boundaries=(2, 5.5), lr_decay=0.2, momentum=0.8,
    weight_decay=5e-4, weight_decay_scope="kernels", warmup_epochs=1,
    warmup_learning_rate=0.001, steps_per_epoch=4,
    eval_steps=2, seed=4, deterministic=True, distribute="none",
    mixed_precision="mixed_bfloat16", jit_compile=True, steps_per_execution=2)


def parse(*args, **define):
    fv = flags.FlagValues()
    train_flags.define_config_flags(fv, **define)
    fv(["prog", *args])
    return fv


def test_every_field_is_a_flag_with_its_default_and_help():
    fv = parse()
    for field in dataclasses.fields(TrainConfig):
        assert field.name in fv, field.name
        assert field.name in train_flags.HELP, f"add a help line for {field.name}"
    assert train_flags.config_from_flags(fv) == TrainConfig()


def test_changed_flags_round_trip_every_field():
    args = changed_flags(CHANGED)
    assert "--lr_boundaries=2,5.5" in args and "--deterministic=true" in args
    assert train_flags.config_from_flags(parse(*args)) == CHANGED


def test_a_tool_changes_defaults_and_sets_excluded_fields_itself():
    fv = parse("--batch_size=32", defaults=TrainConfig(dataset="synthetic"),
               exclude=("model", "seed"))
    assert "model" not in fv and "seed" not in fv
    config = train_flags.config_from_flags(fv, model="plain20", seed=3)
    assert (config.model, config.seed, config.dataset, config.batch_size) == (
        "plain20", 3, "synthetic", 32)
    assert changed_flags(config, exclude=("model", "seed")) == [
        "--dataset=synthetic", "--batch_size=32"]


@pytest.mark.parametrize("args,message", [
    (["--lr_boundaries=a,b"], "lr_boundaries must be numbers"),
    (["--model=plain21"], "21"),
    (["--momentum=1.5"], "momentum.*1.5"),
])
def test_bad_values_raise_one_sentence(args, message):
    with pytest.raises(UserError, match=message):
        train_flags.config_from_flags(parse(*args))


def _flag_lines(path):
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path", sorted(REPO.glob("flags/*.cfg")), ids=lambda p: p.name)
def test_recipe_files_hold_only_what_differs_from_the_defaults(path):
    lines = _flag_lines(path)
    config = train_flags.config_from_flags(parse(f"--flagfile={path}"))
    # Every line but the model's (each file names its model, even the default one)
    # changes the config, and the config has nothing the file does not say.
    assert f"--model={config.model}" in lines
    assert sorted(changed_flags(config, exclude=("model",))) == sorted(
        line for line in lines if not line.startswith("--model=")), path.name


def test_paths_expand_the_home_folder_and_variables(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("DATA", "/data")
    assert train_flags.config_from_flags(parse("--data_dir=~/data/cifar10")).data_dir == \
        "/home/someone/data/cifar10"
    assert train_flags.config_from_flags(parse("--data_dir=$DATA/c")).data_dir == "/data/c"
