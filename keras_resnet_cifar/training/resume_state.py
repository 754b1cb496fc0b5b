"""The resume state of a run, ``backup/state.npz``: the truth a run resumes from.

It holds, in one file, every variable of the model (weights, BatchNormalization
statistics) and of the optimiser (step count, momentum), the number of completed
epochs, the history rows of those epochs and the best epoch so far. It is written
first at the end of every epoch, atomically (temporary file, fsync, rename: the
previous state stays until the new one is complete); history, checkpoints, model
and metrics are derived from it, and a resumed run rewrites whatever of them lags
behind. So a run killed at any instant resumes from its last complete epoch, and
with the same data order (:mod:`keras_resnet_cifar.data.pipeline` draws each epoch
from (seed, epoch)) it ends bit-identical to a run that was never interrupted.

NumPy only (no Keras): the model and optimiser are passed in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import rundir

_STATE_FORMAT = 1
# What reading a damaged .npz (a zip) can raise.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


@dataclasses.dataclass(frozen=True)
class State:
    """The non-variable part of the resume state."""

    epoch: int                      # epochs completed
    history: list[dict[str, Any]]   # their rows
    best: dict[str, Any] | None     # the best epoch so far


def _variables(model: Any) -> list[Any]:
    """Every variable a training step reads or writes, in a fixed order."""
    return list(model.variables) + list(model.optimizer.variables)


def save_state(workdir: str | os.PathLike, model: Any, state: State) -> None:
    """Writes the resume state of ``model`` (built, with a built optimizer) atomically."""
    variables = _variables(model)
    meta = {"format": _STATE_FORMAT, "epoch": state.epoch, "history": state.history,
            "best": state.best,
            "variables": [[v.path, list(v.shape)] for v in variables]}
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    target = rundir.path(workdir, rundir.STATE)
    with fileio.atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def read_state_epoch(workdir: str | os.PathLike) -> int | None:
    """The epochs the resume state holds, or None without one.

    Raises:
        UserError: the file is not a readable resume state.
    """
    state = _open_state(workdir)
    if state is None:
        return None
    with state:
        return _meta(state, workdir)["epoch"]


def restore_state(workdir: str | os.PathLike, model: Any) -> State | None:
    """Loads the resume state into ``model`` and its (built) optimizer.

    Returns:
        The state's epoch, history and best, or None when there is none.

    Raises:
        UserError: unreadable, or written by another model or optimiser.
    """
    state = _open_state(workdir)
    if state is None:
        return None
    target = rundir.path(workdir, rundir.STATE)
    with state:
        meta = _meta(state, workdir)
        variables = _variables(model)
        saved = meta["variables"]
        mismatch = len(saved) != len(variables) or any(
            _local(p) != _local(v.path) or list(shape) != list(v.shape)
            for (p, shape), v in zip(saved, variables))
        if mismatch:
            raise UserError(f"{target} was written by another model or optimiser than "
                            "this run's; choose another --model_dir, or delete this one to "
                            "start the run over.")
        try:
            values = [state[f"v{i:05d}"] for i in range(len(variables))]
        except _READ_ERRORS as e:
            raise _unreadable(target, e) from None
    for variable, value in zip(variables, values):
        variable.assign(value)
    return State(epoch=meta["epoch"], history=meta["history"], best=meta["best"])


def _local(variable_path: str) -> str:
    """A variable's path below its owner ("sgd_1/x_momentum" -> "x_momentum").

    Keras numbers optimisers (and unnamed models) by creation order in a process.
    """
    return variable_path.split("/", 1)[-1]


def _open_state(workdir):
    target = rundir.path(workdir, rundir.STATE)
    try:
        fileio.check_regular(target)  # no link, FIFO or device is read as the state
        return np.load(target, allow_pickle=False)
    except FileNotFoundError:
        return None
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None


def _meta(state, workdir) -> dict[str, Any]:
    target = rundir.path(workdir, rundir.STATE)
    try:
        meta = json.loads(str(state["meta"]))
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"format {meta.get('format')}")
        return meta
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None


def _unreadable(target: Path, error: BaseException) -> UserError:
    return UserError(f"the resume state {target} is unreadable ({type(error).__name__}: "
                     f"{error}); the run cannot continue from it. Restore that file from a "
                     "backup, or delete the run directory to start the run over.")
