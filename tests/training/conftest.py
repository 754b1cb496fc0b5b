"""The tiny synthetic run of the training tests: 3 epochs of 3 steps, deterministic."""

import dataclasses

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar.training import loop

TINY = config_lib.TrainConfig(model="resnet8", dataset="synthetic", synthetic_train_size=512,
                              synthetic_test_size=256, epochs=3, batch_size=64,
                              steps_per_epoch=3, eval_steps=2, lr_boundaries=(1,),
                              deterministic=True, seed=3)


@pytest.fixture
def tiny() -> config_lib.TrainConfig:
    return TINY


@pytest.fixture
def one_epoch_run(tmp_path):
    """A finished 1-epoch run of TINY, trained in this process."""
    run_dir = tmp_path / "run"
    loop.train_and_evaluate(dataclasses.replace(TINY, epochs=1), run_dir, verbose=0)
    return run_dir
