"""A run directory's rules: one process at a time (an flock: the kernel releases it when
its process dies), one recipe (but run_files.EXECUTION_FIELDS; epochs may grow), trained
work never silently started over. No Keras: train checks this before TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from keras_resnet_cifar import fileio, run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import resume_state


@contextlib.contextmanager
def lock(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds `workdir`'s lock for the block; UserError at once if another process has it."""
    def busy(pid: int | None) -> str:
        return (f"{workdir} is in use by another training process"
                f"{f' (pid {pid})' if pid else ''}; wait for it to end, or choose another "
                "run directory.")

    run_files.check_layout(workdir)  # no planted link sends the run's writes elsewhere
    with fileio.exclusive_lock(run_files.path(workdir, run_files.LOCK), busy):
        run_files.check_layout(workdir)  # and none was planted while the lock was taken
        yield


def _take(workdir: str | os.PathLike, stack: contextlib.ExitStack) -> None:
    try:
        stack.enter_context(lock(workdir))
    except OSError as e:  # only the lock's own: not one from the block that holds it
        raise UserError(f"Cannot write to the run directory {workdir}: {e.strerror}.") from None


def ensure_unlocked(workdir: str | os.PathLike) -> None:
    """Refuses at once when another process holds `workdir`'s lock (before anything slow)."""
    with contextlib.ExitStack() as stack:
        _take(workdir, stack)


def acquire(workdir: Path, config: Any, stack: contextlib.ExitStack) -> "Plan":
    """Locks `workdir` for the rest of `stack` and decides how to continue it (plan())."""
    if not workdir.is_dir():
        raise UserError(f"Cannot write to the run directory {workdir}: not a directory.")
    _take(workdir, stack)
    return plan(workdir, config)


@dataclasses.dataclass(frozen=True)
class Plan:
    state_epoch: int          # epochs the resume state holds (0: start afresh)
    finished: bool            # metrics.json describes config.epochs epochs: nothing to do
    new: bool                 # no config.json yet: a new run
    extended_from: int | None = None  # the run's epochs when the config raises them


def recipe_differences(saved: dict[str, Any], config: Any) -> dict[str, str]:
    """{name: "name=value (the run has value)"} for each recipe field where `config` differs
    from config.json's `saved` (where a field is missing, an older run's: its default)."""
    current, out = json.loads(config.to_json()), {}
    for field in dataclasses.fields(config):
        name, default = field.name, field.default
        before = saved.get(name, list(default) if isinstance(default, tuple) else default)
        if name not in (*run_files.EXECUTION_FIELDS, "epochs") and before != current[name]:
            given = (f"{name}={_value_text(current[name])}" if current[name] is not None
                     else f"no {name}")
            out[name] = f"{given} (the run has {_value_text(before, name)})"
    return out


# How a run's unset optional field reads in a sentence.
_UNSET = {"steps_per_epoch": "no cap", "eval_steps": "no cap", "data_dir": "none"}


def _value_text(value: Any, name: str = "") -> str:
    if value is None:
        return _UNSET.get(name, "it unset")
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def plan(workdir: str | os.PathLike, config: Any) -> Plan:
    """How `config` continues the run in `workdir` (call holding its lock); UserError for
    another recipe, fewer epochs, or trained epochs without a readable resume state."""
    workdir = Path(workdir)
    saved = run_files.read_config(workdir)
    history = run_files.read_history(workdir)
    if saved is None:
        if history or run_files.path(workdir, run_files.STATE).exists():
            raise UserError(f"{workdir} holds training files but no {run_files.CONFIG}; it "
                            "cannot be resumed: choose another run directory.")
        return Plan(state_epoch=0, finished=False, new=True)
    differences = recipe_differences(saved, config)
    if differences:
        try:
            done = resume_state.read_state_epoch(workdir) or 0
        except UserError:
            done = None
        held = ("it has no completed epoch yet" if done == 0 else
                f"it has {done} completed epoch(s)" if done else "its resume state is unreadable")
        raise UserError(
            f"{workdir} holds a run of another recipe: {'; '.join(differences.values())}; "
            f"{held}. To continue it, give the values it was started with (its "
            f"{run_files.CONFIG}); to start over with these values, give another run "
            f"directory, or delete {workdir} first.", argument=tuple(differences))
    epochs = int(saved.get("epochs", config.epochs))
    if config.epochs < epochs:
        raise UserError(f"{workdir} holds a run of {epochs} epochs, not epochs="
                        f"{config.epochs}: give epochs={epochs} to resume it (or more, to "
                        "extend it), or choose another run directory.", argument="epochs")
    metrics = run_files.read_metrics(workdir)
    if metrics and metrics.get("epochs_completed") == config.epochs:
        return Plan(state_epoch=config.epochs, finished=True, new=False)
    state_epoch = resume_state.check_against_run(workdir, epochs, history)
    state = run_files.path(workdir, run_files.STATE)
    if state_epoch is None and history:
        raise UserError(f"{workdir} has {len(history)} trained epoch(s) but no resume state "
                        f"({state}): it cannot be resumed exactly. Choose another run "
                        "directory, or delete this one to start the run over.")
    evidence = trained_epoch_evidence(workdir) if state_epoch is None else []
    if evidence:
        raise UserError(f"{workdir} shows that epochs were trained ({', '.join(evidence)}) but "
                        f"its resume state {state} is missing: restore it from a backup, or "
                        "choose another run directory (or delete this one) to start the run "
                        "over; it is not retrained from epoch 0 over them.")
    return Plan(state_epoch=state_epoch or 0, finished=False, new=False,
                extended_from=epochs if config.epochs > epochs else None)


def trained_epoch_evidence(workdir: str | os.PathLike) -> list[str]:
    """The files of `workdir` that only a completed epoch writes, each after its resume
    state (so a run killed in its first epoch has none). TensorBoard's event files count
    once they hold an epoch's summary: the callback creates them when training starts."""
    found = [name for name in (run_files.LAST, run_files.BEST, run_files.BEST_JSON,
                               run_files.MODEL, run_files.METRICS, run_files.HISTORY_CSV)
             if run_files.path(workdir, name).exists()]
    logs = run_files.path(workdir, run_files.TENSORBOARD)
    if logs.is_dir() and any(_holds(f, b"epoch_loss") for f in logs.rglob("*tfevents*")
                             if f.is_file()):
        found.append(f"{run_files.TENSORBOARD}/ epoch summaries")
    return found


def _holds(file: Path, needle: bytes, block: int = 1 << 20) -> bool:
    tail = b""
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def start(workdir: str | os.PathLike, config: Any, plan_: Plan) -> None:
    """Readies `workdir` for a session (call holding its lock): removes temporaries, writes
    a new run's config.json or records an extension, and removes metrics.json."""
    workdir = Path(workdir)
    for sub in ("", run_files.CHECKPOINTS, run_files.BACKUP):
        fileio.remove_temporaries(workdir / sub)
    if plan_.new:
        run_files.write_config(workdir, config)
    elif plan_.extended_from is not None:
        saved = run_files.read_config(workdir)
        entry = {"epochs": plan_.extended_from, "extended_to": config.epochs,
                 "epochs_completed": plan_.state_epoch, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        fileio.write_json(run_files.path(workdir, run_files.EXTENSIONS),
                          run_files.read_extensions(workdir) + [entry])
        fileio.write_json(run_files.path(workdir, run_files.CONFIG),
                          {**saved, "epochs": config.epochs})
    run_files.path(workdir, run_files.METRICS).unlink(missing_ok=True)
