"""callbacks: a diverging run stops with one clear error.

ProgressLine and the epoch lines are tested through the command, in tests/test_train.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import loop, resume_state


def test_a_loss_that_becomes_nan_stops_the_run_with_a_clear_error(tmp_path, monkeypatch, tiny):
    run_dir = tmp_path / "run"
    # A rate that diverges at once is beyond the flag's bound (issue 29): lifted here.
    monkeypatch.setattr(config_lib, "MAX_LEARNING_RATE", float("inf"))
    diverging = dataclasses.replace(tiny, learning_rate=1e30, lr_boundaries=(100,))
    with pytest.raises(UserError, match=r"the training loss became (nan|inf) in epoch 1 "
                                        r"\(learning rate 1e\+30\)"):
        loop.train_and_evaluate(diverging, run_dir, verbose=0)
    assert not (run_dir / run_files.METRICS).exists()
    assert not (run_dir / run_files.BEST).exists() and not (run_dir / run_files.BEST_JSON).exists()
    assert resume_state.read_state_epoch(run_dir) is None
