"""recipes: a report pools runs of one training recipe only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keras_resnet_cifar.analysis.results import build, recipes
from keras_resnet_cifar.analysis.results.runs import Run
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError
from tests.analysis.results.fake_runs import curve_run, decay


def _run(name, **config):
    return Run(path=Path(name), config=config, history=[], metrics=None, evaluation=None,
               layer_stats=None)


def test_model_seed_execution_and_trainer_are_not_the_recipe():
    a = _run("a", model="plain20", seed=0, data_dir="/x", epochs=3)
    b = _run("b", model="resnet56", seed=4, data_dir="/y", trainer="pytorch-reference",
             epochs=3)
    assert recipes.recipe_of(a) == recipes.recipe_of(b)
    assert recipes.check_one_recipe([a, b])["epochs"] == 3
    # Fields an older config.json lacks take TrainConfig's defaults.
    assert recipes.recipe_of(a)["batch_size"] == TrainConfig().batch_size
    assert not set(recipes.NOT_RECIPE) & set(recipes.recipe_of(b))


def test_two_recipes_are_refused_in_one_line_naming_a_run_of_each():
    runs = [_run("a", model="plain20", epochs=3), _run("b", model="plain20", epochs=3),
            _run("c", model="plain20", epochs=1, lr_boundaries=[0.5])]
    assert len(recipes.recipes(runs)) == 2
    with pytest.raises(UserError) as e:
        recipes.check_one_recipe(runs, "study's runs")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("The study's runs were trained with 2 different recipes")
    assert "a and c differ in epochs 3 vs 1, lr_boundaries [80, 120] vs [0.5];" in message
    assert json.dumps(recipes.check_one_recipe([])) == "{}"


def test_runs_of_different_recipes_are_refused_in_one_line(tmp_path):
    a = curve_run(tmp_path / "a", "resnet20", 0, decay(0.8, 0.4), decay(0.8, 0.4), 0.4)
    b = curve_run(tmp_path / "b", "resnet20", 1, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 epochs=200, lr_boundaries=(80, 120))
    with pytest.raises(UserError, match="2 different recipes") as e:
        build.report([a, b])
    assert "\n" not in str(e.value) and "epochs 3 vs 200" in str(e.value)
    # How a run executed is not its recipe: another data_dir pools.
    c = curve_run(tmp_path / "c", "resnet20", 2, decay(0.8, 0.4), decay(0.8, 0.4), 0.4,
                 data_dir="/elsewhere", jit_compile=True)
    assert len(build.report([a, c]).texts["runs.csv"].splitlines()) == 3
