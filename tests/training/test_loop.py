"""loop: what train_and_evaluate repairs on resume (its crash safety: test_resume.py)."""

from __future__ import annotations

import dataclasses

import keras
import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import loop, resume_state


def test_a_damaged_best_checkpoint_is_rebuilt_or_reported_on_resume(
        tmp_path, monkeypatch, tiny, one_epoch_run):
    # Issue 16, item 2: a truncated checkpoints/best.keras stayed corrupt after a resume.
    run_dir = one_epoch_run  # best epoch 1 = the resume state's epoch
    best = run_dir / run_files.BEST
    best.write_bytes(best.read_bytes()[:1000])
    assert run_files.is_damaged_model(run_dir, run_files.BEST)
    assert not run_files.is_damaged_model(run_dir, run_files.LAST)
    (run_dir / run_files.METRICS).unlink()  # killed after the last epoch's state
    loop.train_and_evaluate(dataclasses.replace(tiny, epochs=1), run_dir, verbose=0)
    assert not run_files.is_damaged_model(run_dir, run_files.BEST)
    keras.saving.load_model(best, compile=False)
    # A best epoch older than the state cannot be rebuilt: said, not hidden.
    best.write_bytes(best.read_bytes()[:1000])
    warnings = []
    monkeypatch.setattr(loop.logging, "warning", lambda *a: warnings.append(a[0] % a[1:]))
    model = keras.saving.load_model(run_dir / run_files.LAST)
    state = resume_state.State(epoch=2, history=run_files.read_history(run_dir),
                         best=run_files.read_best(run_dir))
    loop._repair(run_dir, model, state, tiny, chief=True)
    assert any("best.keras is damaged (truncated or corrupt) and cannot be rebuilt" in w
               for w in warnings)


# Bad values of TrainConfig are test_config's. These are the refusals made only once the
# data are in memory, in process (the command's one line: tests/test_train.py).
@pytest.mark.parametrize("overrides,words", [
    (dict(validation_split=512), ("validation_split", "512")),
    # A synthetic size beyond memory is refused earlier now, by TrainConfig's bound
    # (config.MAX_SYNTHETIC_IMAGES; test_config, issue 29).
    (dict(batch_size=1000000000), ("batch_size", "1000000000", "512")),
])
def test_refusals_once_the_data_are_in_memory(tmp_path, overrides, words):
    smoke = dict(model="resnet8", dataset="synthetic", synthetic_train_size=512,
                 synthetic_test_size=256, epochs=1, batch_size=64, steps_per_epoch=4,
                 eval_steps=2)
    with pytest.raises(UserError) as e:  # the argument and its value, however worded
        loop.train_and_evaluate(config_lib.TrainConfig(**{**smoke, **overrides}),
                                tmp_path / "x", verbose=0)
    assert all(word in str(e.value) for word in words), e.value
    assert e.value.argument == next(iter(overrides))  # the command names it as its flag
    assert not (tmp_path / "x").exists()  # a refused run leaves no run directory
