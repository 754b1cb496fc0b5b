"""The run directory: the one module that knows its file names, formats, readers and writers.

A training run writes everything it produces into one directory:

    config.json             the TrainConfig that produced the run
    extensions.json         each time --epochs was raised to continue the run
    history.csv, .json      one row per epoch (:data:`HISTORY_FIELDS`)
    metrics.json            final figures of the run (only once it is finished)
    model.keras             the final model
    curves.png              loss and accuracy per epoch (drawn by the commands)
    checkpoints/            last.keras, best.keras, best.json
    evaluation.json         keras_resnet_cifar.evaluate's results (with per_class.csv,
                            confusion_matrix.csv)
    layer_stats.json        per-layer response std and gradient norms (the study)
    curve.json              intermediate training/test error points (the study)
    backup/state.npz        the resume state
    tensorboard/            TensorBoard logs
    .lock                   held (flock) by the process training in the directory

Other modules name these files through this module's constants and read them
through its readers, never by spelling the names themselves. Every file is
written atomically (:mod:`keras_resnet_cifar.fileio`).

The rules of a run directory live beside this module:

- **The resume state is the truth** (:mod:`~keras_resnet_cifar.training.resume_state`).
  ``backup/state.npz`` holds every variable of the model and the optimiser, the
  completed epochs, their history rows and the best epoch; it is written first
  at the end of every epoch, and everything else is derived from it, so a run
  killed at any instant resumes from its last complete epoch, bit-identical.
- **One recipe, one process** (:mod:`~keras_resnet_cifar.training.lock`). A run
  is resumed only with the flags that started it, except how it executes
  (:data:`EXECUTION_FIELDS`) and ``--epochs``, which may grow; one process at a
  time holds the directory's lock.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

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

# The columns of history.csv. "loss" is what SGD minimises: cross-entropy plus the L2
# weight-decay term. In a deep plain net the kernels' norms grow fast early on (BN
# makes the loss blind to their scale, and every large gradient step lengthens them),
# so that term can dominate "loss"; "cross_entropy" is the data term alone, for curves
# and tables.
HISTORY_FIELDS = ("epoch", "loss", "cross_entropy", "accuracy", "val_loss",
                  "val_cross_entropy", "val_accuracy", "learning_rate", "epoch_time_s",
                  "images_per_sec", "load_average")


def path(workdir: str | os.PathLike, name: str) -> Path:
    """``workdir / name`` for one of this module's file names."""
    return Path(workdir) / name


# The folders of a run; every other name above is a file.
FOLDERS = (CHECKPOINTS, BACKUP, TENSORBOARD)
_FILES = (CONFIG, EXTENSIONS, HISTORY_JSON, HISTORY_CSV, METRICS, MODEL, CURVES, LAST, BEST,
          BEST_JSON, EVALUATION, PER_CLASS, CONFUSION, LAYER_STATS, CURVE, STATE, LOCK)


def check_layout(workdir: str | os.PathLike) -> None:
    """Refuses a run directory where a name of this module is a link or of the wrong kind.

    A symbolic link planted as ``.lock`` or ``checkpoints/`` would send a training
    process's writes (its pid, best.keras) outside the run directory; a FIFO
    would block it. The run directory itself may be a link: the user named it.

    Raises:
        UserError: a link, a special file, a folder where a file belongs or a
            file where a folder belongs (the message names it).
    """
    for name in FOLDERS:
        fileio.check_not_link(path(workdir, name), directory=True)
    for name in _FILES:
        fileio.check_not_link(path(workdir, name))


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

    Raises:
        UserError: one of them is a link, not a regular file, or larger than
            :data:`keras_resnet_cifar.fileio.MAX_JSON_BYTES`.
    """
    written = []
    if Path(workdir).resolve() == Path(dest).resolve():
        return written
    for name in SMALL_FILES:
        source = path(workdir, name)
        if os.path.lexists(source):
            # Never through a link (a system file would land in a folder meant for
            # committing), never from a FIFO or device, never more than a small file.
            with fileio.open_regular(source, max_bytes=fileio.MAX_JSON_BYTES) as f, \
                    fileio.atomic_path(path(dest, name)) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out)
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
                  rows: Sequence[dict[str, Any]]) -> None:
    """history.json and history.csv (columns :data:`HISTORY_FIELDS`) from the per-epoch rows."""
    import csv

    fileio.write_json(path(workdir, HISTORY_JSON), {"eval_set": eval_set, "epochs": list(rows)})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_FIELDS), lineterminator="\n")
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
