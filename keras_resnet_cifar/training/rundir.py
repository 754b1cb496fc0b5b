"""The run directory: the one module that knows its file names, formats and rules.

A training run writes everything it produces into one directory:

    config.json             the TrainConfig that produced the run
    extensions.json         each time --epochs was raised to continue the run
    history.csv, .json      one row per epoch
    metrics.json            final figures of the run (only once it is finished)
    model.keras             the final model
    curves.png              loss and accuracy per epoch
    checkpoints/            last.keras, best.keras, best.json
    evaluation.json         keras_resnet_cifar.evaluate's results (with per_class.csv,
                            confusion_matrix.csv)
    layer_stats.json        per-layer response std and gradient norms (the study)
    curve.json              intermediate training/test error points (the study)
    backup/state.npz        the resume state
    tensorboard/            TensorBoard logs
    .lock                   held (flock) by the process training in the directory

Other modules name these files through this module's constants and read them
through its readers, never by spelling the names themselves.

**The resume state is the truth.** ``backup/state.npz`` holds, in one file, every
variable of the model (weights, BatchNormalization statistics) and of the
optimiser (step count, momentum), the number of completed epochs, the history
rows of those epochs and the best epoch so far. It is written first at the end of
every epoch, atomically (temporary file, fsync, rename: the previous state stays
until the new one is complete); history, checkpoints, model and metrics are
derived from it, and a resumed run rewrites whatever of them lags behind. So a
run killed at any instant resumes from its last complete epoch, and with the same
data order (``input_pipeline`` draws each epoch from (seed, epoch)) it ends
bit-identical to a run that was never interrupted.

**One recipe.** A run is resumed only with the flags that started it
(:func:`recipe_differences`), except how it executes (:data:`EXECUTION_FIELDS`)
and ``--epochs``, which may grow (recorded in extensions.json).

**One process.** A training process holds the directory's lock (:func:`lock`); a
second one is refused at once. The lock is an ``flock``, which the kernel releases
when its process dies, so a crash never leaves it stuck.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

CONFIG = "config.json"
EXTENSIONS = "extensions.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
LAST = f"{CHECKPOINTS}/last.keras"
BEST = f"{CHECKPOINTS}/best.keras"
BEST_JSON = f"{CHECKPOINTS}/best.json"
EVALUATION = "evaluation.json"
PER_CLASS = "per_class.csv"
CONFUSION = "confusion_matrix.csv"
LAYER_STATS = "layer_stats.json"
CURVE = "curve.json"
BACKUP = "backup"
STATE = f"{BACKUP}/state.npz"
TENSORBOARD = "tensorboard"
LOCK = ".lock"

# The small files that describe a run (kilobytes): what a report needs and what may be
# committed beside it. Never the models, checkpoints, resume state or TensorBoard logs.
SMALL_FILES = (CONFIG, EXTENSIONS, HISTORY_JSON, HISTORY_CSV, METRICS, EVALUATION, PER_CLASS,
               CONFUSION, LAYER_STATS, CURVE)

# Which saved model of a run a tool means by a short name.
MODEL_FILES = {"final": MODEL, "last": LAST, "best": BEST}

# TrainConfig fields that say how a run executes, not what it computes: a resumed
# run may change them (a moved data copy, another device count). Every other
# field is the recipe, and a resumed run must keep it (--epochs may only grow).
EXECUTION_FIELDS = ("data_dir", "distribute", "jit_compile", "steps_per_execution",
                    "deterministic")

# Test hook: the path of a file to create once the resume state's temporary file
# is complete, after which the save waits (before its rename) to be killed; with
# KRC_TEST_PAUSE_IN_SAVE_EPOCH=n only in the save of epoch n.
PAUSE_IN_SAVE_ENV = "KRC_TEST_PAUSE_IN_SAVE"
PAUSE_EPOCH_ENV = "KRC_TEST_PAUSE_IN_SAVE_EPOCH"
_STATE_FORMAT = 1
# What reading a damaged .npz (a zip) can raise.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def path(workdir: str | os.PathLike, name: str) -> Path:
    """``workdir / name`` for one of this module's file names."""
    return Path(workdir) / name


def is_run_dir(workdir: str | os.PathLike) -> bool:
    """Whether ``workdir`` looks like a training run (it has a config.json)."""
    return path(workdir, CONFIG).is_file()


def _read_object(workdir: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The JSON object in ``workdir/name``, or None when there is no file.

    A run directory's files may be edited or damaged by hand: a file of another
    JSON type (``[]`` for config.json) is named in one line instead of failing
    later with a ``TypeError`` deep inside a tool.

    Raises:
        UserError: the file is not readable JSON, or not a JSON object.
    """
    value = fileio.read_json(path(workdir, name))
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path(workdir, name)} holds a JSON {type(value).__name__}, not "
                        f"the object a run's {Path(name).name} holds: restore it or remove "
                        "the run directory.")
    return value


def read_config(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """config.json as a dict, or None when the run has none.

    Raises:
        UserError: unreadable, not an object, or ``epochs`` is not a positive integer.
    """
    config = _read_object(workdir, CONFIG)
    epochs = (config or {}).get("epochs", 1)
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0):
        raise UserError(f"{path(workdir, CONFIG)} has epochs={epochs!r}, not a positive "
                        "integer: restore it or remove the run directory.")
    return config


def _read_history_file(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """history.json, checked: {"eval_set": ..., "epochs": [row objects]}, or None."""
    history = _read_object(workdir, HISTORY_JSON)
    if history is None:
        return None
    rows = history.get("epochs")
    if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
        raise UserError(f"{path(workdir, HISTORY_JSON)} has no list of epoch rows under "
                        "\"epochs\": restore it or remove the run directory.")
    return history


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of history.json (empty when the run has none yet)."""
    history = _read_history_file(workdir)
    return history["epochs"] if history else []


def read_eval_set(workdir: str | os.PathLike) -> str | None:
    """Which set history.json's val_* columns were measured on, or None without one."""
    history = _read_history_file(workdir)
    return history.get("eval_set", "test") if history else None


def read_metrics(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """metrics.json, or None when the run has not finished."""
    return _read_object(workdir, METRICS)


def read_evaluation(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """evaluation.json, or None when the run has not been evaluated."""
    return _read_object(workdir, EVALUATION)


def read_layer_stats(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """layer_stats.json, or None when the run recorded none."""
    return _read_object(workdir, LAYER_STATS)


def read_curve(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """curve.json, or None when the run recorded no intermediate points."""
    return _read_object(workdir, CURVE)


def copy_small_files(workdir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Copies the run's :data:`SMALL_FILES` that exist into ``dest`` (each atomically).

    ``dest`` becomes a run directory that a report can read, without the models.

    Returns:
        The files written.
    """
    written = []
    if Path(workdir).resolve() == Path(dest).resolve():
        return written
    for name in SMALL_FILES:
        source = path(workdir, name)
        if source.is_file():
            with fileio.atomic_path(path(dest, name)) as tmp:
                shutil.copyfile(source, tmp)
            written.append(path(dest, name))
    return written


def read_best(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """checkpoints/best.json ({"epoch", "metric", "value"}), or None."""
    return _read_object(workdir, BEST_JSON)


def read_extensions(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """extensions.json's entries (empty when --epochs was never raised)."""
    entries = fileio.read_json(path(workdir, EXTENSIONS)) or []
    if not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise UserError(f"{path(workdir, EXTENSIONS)} is not a list of objects: restore it "
                        "or remove the run directory.")
    return entries


# --- Writers ------------------------------------------------------------------------

def write_config(workdir: str | os.PathLike, config: Any) -> None:
    """config.json of a new run (``config`` is a TrainConfig)."""
    fileio.write_text(path(workdir, CONFIG), config.to_json())


def write_history(workdir: str | os.PathLike, eval_set: str,
                  rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """history.json and history.csv (columns ``fields``) from the per-epoch rows."""
    import csv

    fileio.write_json(path(workdir, HISTORY_JSON), {"eval_set": eval_set, "epochs": list(rows)})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(path(workdir, HISTORY_CSV), buf.getvalue())


def write_metrics(workdir: str | os.PathLike, metrics: dict[str, Any]) -> None:
    fileio.write_json(path(workdir, METRICS), metrics)


def write_best(workdir: str | os.PathLike, best: dict[str, Any]) -> None:
    fileio.write_json(path(workdir, BEST_JSON), best)


def save_model(model: Any, workdir: str | os.PathLike, name: str) -> None:
    """Saves the Keras ``model`` as ``workdir/name`` (a ``.keras`` file), atomically."""
    with fileio.atomic_path(path(workdir, name)) as tmp:
        model.save(tmp)


def is_damaged_model(workdir: str | os.PathLike, name: str) -> bool:
    """Whether ``workdir/name`` exists but is not an intact ``.keras`` zip (truncated, corrupt).

    Every member's CRC is checked: a checkpoint is a few megabytes, and a
    truncated or bit-flipped one would otherwise be found only when a tool loads it.
    """
    file = path(workdir, name)
    if not file.exists():
        return False
    try:
        with zipfile.ZipFile(file) as archive:
            return archive.testzip() is not None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError, zlib.error,
            NotImplementedError):  # zlib.error: a damaged deflate stream
        return True


def save_figure(figure: Any, workdir: str | os.PathLike, name: str = CURVES) -> None:
    """Renders a matplotlib ``figure`` as PNG to ``workdir/name``, atomically."""
    with fileio.atomic_path(path(workdir, name)) as tmp:
        figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


# --- The lock -------------------------------------------------------------------------

@contextlib.contextmanager
def lock(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds ``workdir``'s lock for the block; refuses at once if another process has it.

    Raises:
        UserError: another process is training in ``workdir``.
    """
    if fcntl is None:
        yield
        return
    lock_path = path(workdir, LOCK)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise UserError(
                f"{workdir} is in use by another training process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to end, "
                "or choose another --model_dir.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def ensure_unlocked(workdir: str | os.PathLike) -> None:
    """Refuses at once when another process holds ``workdir``'s lock.

    Only a probe, made before anything slow (TensorFlow, the data): the lock is
    taken and released. Training then takes it for good with :func:`lock`.

    Raises:
        UserError: another process is training in ``workdir``, or the lock file
            cannot be opened.
    """
    try:
        with lock(workdir):
            pass
    except OSError as e:
        raise UserError(f"Cannot write to --model_dir {workdir}: {e.strerror}.") from None


# --- The resume policy ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a run directory for a given config."""

    state_epoch: int          # epochs the resume state holds (0: start afresh)
    finished: bool            # metrics.json describes config.epochs epochs: nothing to do
    new: bool                 # no config.json yet: a new run
    extended_from: int | None = None  # the run's --epochs when the flags raise it


def recipe_differences(saved: dict[str, Any], config: Any) -> list[str]:
    """The recipe flags where ``config`` differs from a run's config.json (``saved``).

    ``--epochs`` is not compared (a run may be extended), nor the
    :data:`EXECUTION_FIELDS`. A field that ``saved`` lacks (a run older than the
    field) counts as having the field's default.

    Returns:
        One ``--name=value (the run has value)`` per difference.
    """
    current = json.loads(config.to_json())
    out = []
    for field in dataclasses.fields(config):
        name = field.name
        if name in EXECUTION_FIELDS or name == "epochs":
            continue
        default = field.default
        if isinstance(default, tuple):
            default = list(default)
        before = saved.get(name, default)
        if before != current[name]:
            given = (f"--{name}={_flag_value(current[name])}" if current[name] is not None
                     else f"no --{name}")
            out.append(f"{given} (the run has {_flag_value(before, name)})")
    return out


# How a run's unset optional field reads in a sentence.
_UNSET = {"steps_per_epoch": "no cap", "eval_steps": "no cap", "data_dir": "none"}


def _flag_value(value: Any, name: str = "") -> str:
    if value is None:
        return _UNSET.get(name, "it unset")
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def plan(workdir: str | os.PathLike, config: Any) -> Plan:
    """Decides how ``config`` continues the run in ``workdir`` (call holding its lock).

    Raises:
        UserError: the directory holds a run of another recipe, or asks for fewer
            epochs than the run has, or has trained epochs but no readable resume
            state (it is never silently started over).
    """
    workdir = Path(workdir)
    saved = read_config(workdir)
    history = read_history(workdir)
    if saved is None:
        if history or path(workdir, STATE).exists():
            raise UserError(f"{workdir} holds training files but no {CONFIG}; it cannot be "
                            "resumed: choose another --model_dir.")
        return Plan(state_epoch=0, finished=False, new=True)
    differences = recipe_differences(saved, config)
    if differences:
        try:
            done = read_state_epoch(workdir) or 0
        except UserError:
            done = None
        held = ("it has no completed epoch yet" if done == 0 else
                f"it has {done} completed epoch(s)" if done else "its resume state is unreadable")
        raise UserError(
            f"{workdir} holds a run with other training flags: {'; '.join(differences)}; "
            f"{held}. To continue it, give the flags it was started with (its "
            f"{CONFIG}); to start over with these flags, give another --model_dir, or "
            f"delete {workdir} first.")
    epochs = int(saved.get("epochs", config.epochs))
    if config.epochs < epochs:
        raise UserError(f"{workdir} holds a run of {epochs} epochs, not --epochs="
                        f"{config.epochs}: give --epochs={epochs} to resume it (or more, to "
                        "extend it), or choose another --model_dir.")
    metrics = read_metrics(workdir)
    if metrics and metrics.get("epochs_completed") == config.epochs:
        return Plan(state_epoch=config.epochs, finished=True, new=False)
    state_epoch = read_state_epoch(workdir)
    if state_epoch is None and history:
        raise UserError(
            f"{workdir} has {len(history)} trained epoch(s) but no resume state "
            f"({path(workdir, STATE)}): it cannot be resumed exactly. Choose another "
            "--model_dir, or delete this one to start the run over.")
    if state_epoch is None:
        evidence = trained_epoch_evidence(workdir)
        if evidence:
            raise UserError(
                f"{workdir} shows that epochs were trained ({', '.join(evidence)}) but its "
                f"resume state {path(workdir, STATE)} is missing: restore it from a backup, "
                "or choose another --model_dir (or delete this one) to start the run over; "
                "it is not retrained from epoch 0 over them.")
    return Plan(state_epoch=state_epoch or 0, finished=False, new=False,
                extended_from=epochs if config.epochs > epochs else None)


def trained_epoch_evidence(workdir: str | os.PathLike) -> list[str]:
    """The files of ``workdir`` that only a completed epoch writes (empty for a fresh run).

    Every one of them is written after the resume state of its epoch, so a run
    killed before its first epoch ended has none; with them but without a resume
    state, starting afresh would silently overwrite trained work. TensorBoard's
    event files count once they hold an epoch's summary (``epoch_loss``): the
    callback creates them when training starts.
    """
    found = [name for name in (LAST, BEST, BEST_JSON, MODEL, METRICS, HISTORY_CSV)
             if path(workdir, name).exists()]
    logs = path(workdir, TENSORBOARD)
    if logs.is_dir() and any(_holds(f, b"epoch_loss") for f in logs.rglob("*tfevents*")
                             if f.is_file()):
        found.append(f"{TENSORBOARD}/ epoch summaries")
    return found


def _holds(file: Path, needle: bytes, block: int = 1 << 20) -> bool:
    """Whether ``file`` contains ``needle`` (read in blocks: event files can be large)."""
    tail = b""
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def start(workdir: str | os.PathLike, config: Any, plan_: Plan) -> None:
    """Readies ``workdir`` for a session that trains (call holding its lock).

    Removes temporaries of interrupted writes, writes config.json of a new run,
    records an extension of --epochs, and removes metrics.json (the run is
    unfinished until the session ends, and model.keras is about to change).
    """
    workdir = Path(workdir)
    for sub in ("", CHECKPOINTS, BACKUP):
        fileio.remove_temporaries(workdir / sub)
    if plan_.new:
        write_config(workdir, config)
    elif plan_.extended_from is not None:
        saved = read_config(workdir)
        entry = {"epochs": plan_.extended_from, "extended_to": config.epochs,
                 "epochs_completed": plan_.state_epoch,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        fileio.write_json(path(workdir, EXTENSIONS), read_extensions(workdir) + [entry])
        # The run now trains to the new --epochs; everything else is as it started.
        fileio.write_json(path(workdir, CONFIG), {**saved, "epochs": config.epochs})
    path(workdir, METRICS).unlink(missing_ok=True)


# --- The resume state -----------------------------------------------------------------

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
    target = path(workdir, STATE)
    with fileio.atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        _pause_for_tests(tmp, state.epoch)


def _pause_for_tests(tmp: Path, epoch: int) -> None:
    """With KRC_TEST_PAUSE_IN_SAVE=<file> (tests only): signal, then wait to be killed."""
    ready = os.environ.get(PAUSE_IN_SAVE_ENV)
    if not ready or os.path.exists(ready):
        return
    if os.environ.get(PAUSE_EPOCH_ENV, str(epoch)) != str(epoch):
        return
    fileio._fsync(tmp)
    Path(ready).write_text(str(tmp))
    time.sleep(600)


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
    target = path(workdir, STATE)
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
    target = path(workdir, STATE)
    try:
        return np.load(target, allow_pickle=False)
    except FileNotFoundError:
        return None
    except _READ_ERRORS as e:
        raise _unreadable(target, e) from None


def _meta(state, workdir) -> dict[str, Any]:
    target = path(workdir, STATE)
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
