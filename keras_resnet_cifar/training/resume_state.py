"""backup/state.npz, the truth a run resumes from: the model's and optimiser's variables,
the completed epochs' history rows and the best epoch. Written first (atomically) at each
epoch's end; all else derives from it. So a killed run resumes from its last complete epoch
and, as data.pipeline draws each epoch from (seed, epoch), ends bit-identical. NumPy only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from keras_resnet_cifar import fileio, run_files
from keras_resnet_cifar.errors import UserError

_STATE_FORMAT = 1
# What reading a damaged .npz (a zip) can raise (RecursionError: JSON nested too deep).
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RecursionError)
# The metadata (history rows of every epoch, variable names and shapes) is kilobytes;
# an array member may exceed its variable's bytes by no more than its .npy header.
MAX_META_BYTES = 16 << 20
_NPY_HEADER_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class State:
    epoch: int                      # epochs completed
    history: list[dict[str, Any]]   # their rows
    best: dict[str, Any] | None     # the best epoch so far


def _variables(model: Any) -> list[Any]:
    """Every variable a training step reads or writes, in a fixed order."""
    return list(model.variables) + list(model.optimizer.variables)


def save_state(workdir: str | os.PathLike, model: Any, state: State) -> None:
    """Writes the resume state of `model` (built, with a built optimizer) atomically."""
    variables = _variables(model)
    meta = {"format": _STATE_FORMAT, "epoch": state.epoch, "history": state.history,
            "best": state.best, "variables": [[v.path, list(v.shape)] for v in variables]}
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    with fileio.atomic_path(run_files.path(workdir, run_files.STATE)) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


@contextlib.contextmanager
def _opened(workdir: str | os.PathLike) -> Iterator[tuple[Any, dict[str, Any], Path] | None]:
    """(the open .npz, its checked metadata, its path), or None without a resume state."""
    target = run_files.path(workdir, run_files.STATE)
    try:
        fileio.check_regular(target)  # no link, FIFO or device is read as the state
        state = np.load(target, allow_pickle=False)
    except FileNotFoundError:
        yield None
        return
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None
    with state:
        yield state, _meta(state, target), target


def read_state_epoch(workdir: str | os.PathLike) -> int | None:
    """The epochs the resume state holds, or None without one (UserError: unreadable)."""
    with _opened(workdir) as opened:
        return opened[1]["epoch"] if opened else None


def check_against_run(workdir: str | os.PathLike, epochs: int,
                      history: list[dict[str, Any]]) -> int | None:
    """The epochs the resume state holds (None without one), checked: no more than the run
    trains, and history.json (written after it) may lag it but not differ."""
    with _opened(workdir) as opened:
        if opened is None:
            return None
        _, meta, target = opened
    epoch = meta["epoch"]
    if epoch > epochs:
        raise _lies(target, f"claims {epoch} completed epochs of a run of {epochs}")
    if len(history) > epoch or _canonical(history) != _canonical(meta["history"][:len(history)]):
        raise _lies(target, f"holds {epoch} epoch(s) whose rows differ from the "
                            f"{len(history)} of {run_files.path(workdir, run_files.HISTORY_JSON)}")
    return epoch


def _canonical(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, sort_keys=True)  # NaN == NaN here, unlike between floats


def restore_state(workdir: str | os.PathLike, model: Any) -> State | None:
    """Loads the resume state into `model` and its built optimizer; None without one.
    UserError: unreadable, or of another model or optimiser."""
    with _opened(workdir) as opened:
        if opened is None:
            return None
        state, meta, target = opened
        variables = _variables(model)
        saved = meta["variables"]
        if len(saved) != len(variables) or any(
                _local(p) != _local(v.path) or list(shape) != list(v.shape)
                for (p, shape), v in zip(saved, variables)):
            raise UserError(f"{target} was written by another model or optimiser than "
                            "this run's; choose another run directory, or delete this one to "
                            "start the run over.")
        values = [_array(state, i, v, target) for i, v in enumerate(variables)]
    for variable, value in zip(variables, values):
        variable.assign(value)
    return State(epoch=meta["epoch"], history=meta["history"], best=meta["best"])


def _array(state: Any, i: int, variable: Any, target: Path) -> np.ndarray:
    shape, dtype = tuple(variable.shape), np.dtype(variable.dtype)
    try:
        # The declared size first: a member of gigabytes is refused unread.
        declared = state.zip.getinfo(f"v{i:05d}.npy").file_size
        if declared > int(np.prod(shape)) * dtype.itemsize + _NPY_HEADER_BYTES:
            raise _lies(target, f"declares {declared:,} bytes for {variable.path} "
                                f"{dtype.name} {shape}")
        value = state[f"v{i:05d}"]
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None
    if value.shape != shape or value.dtype != dtype:
        raise _lies(target, f"holds {value.dtype.name} {value.shape} for "
                            f"{variable.path}, which is {dtype.name} {shape}")
    return value


def _local(variable_path: str) -> str:  # Keras numbers optimisers by creation order
    """"sgd_1/x_momentum" -> "x_momentum"."""
    return variable_path.split("/", 1)[-1]


def _meta(state: Any, target: Path) -> dict[str, Any]:
    """The state's metadata, every field's type and range checked (UserError naming it)."""
    try:
        declared = state.zip.getinfo("meta.npy").file_size
        if declared > MAX_META_BYTES:
            raise _lies(target, f"declares {declared:,} bytes of metadata, more than "
                                f"{MAX_META_BYTES:,}")
        raw = state["meta"]
        if raw.dtype.kind != "U" or raw.shape != ():
            raise ValueError(f"metadata of {raw.dtype} {raw.shape}, not one string")
        meta = json.loads(str(raw))
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None
    problem = _meta_problem(meta)
    if problem:
        raise _lies(target, problem)
    return meta


def _is_int(value: Any, types: type | tuple = int) -> bool:
    return isinstance(value, types) and not isinstance(value, bool)


def _meta_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return f"holds a JSON {type(meta).__name__} as metadata, not an object"
    if meta.get("format") != _STATE_FORMAT:
        return f"is of format {meta.get('format')!r}, not {_STATE_FORMAT}"
    epoch, history, best, variables = map(meta.get, ("epoch", "history", "best", "variables"))
    if not (_is_int(epoch) and epoch >= 0):
        return f"has epoch={epoch!r}, not a count of completed epochs"
    if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
        return "has no list of history rows"
    if [r.get("epoch") for r in history] != list(range(1, epoch + 1)):
        return f"claims {epoch} completed epoch(s) but its history rows are not epochs 1-{epoch}"
    for row in history:
        bad = [k for k, v in row.items() if k not in run_files.HISTORY_FIELDS or not
               (v is None or _is_int(v, (int, float)))]
        if bad:
            return f"has a history row of epoch {row['epoch']} with a bad field {bad[0]!r}"
    if best is not None and not (
            isinstance(best, dict) and _is_int(best.get("epoch"))
            and 1 <= best["epoch"] <= epoch and isinstance(best.get("metric"), str)
            and _is_int(best.get("value"), (int, float))):
        return f"has best={best!r:.80}, not an epoch of the run with its value"
    if not (isinstance(variables, list) and all(
            isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
            and isinstance(v[1], list) and all(_is_int(d) and d >= 0 for d in v[1])
            for v in variables)):
        return "has no list of [variable path, shape] pairs"
    return None


_REMEDY = "Restore that file from a backup, or delete the run directory to start the run over."


def _lies(target: Path, problem: str) -> UserError:
    return UserError(f"the resume state {target} {problem}: it is not the state of this run, "
                     f"which cannot continue from it. {_REMEDY}")


def _unreadable(target: Path, error: BaseException) -> UserError:
    return UserError(f"the resume state {target} is unreadable ({type(error).__name__}: "
                     f"{error}); the run cannot continue from it. {_REMEDY}")
