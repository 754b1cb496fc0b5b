"""The run directory: the one module that knows its file names and formats.

A training run writes everything it produces into one directory:

    config.json             the resolved TrainConfig
    history.csv, .json      one row per epoch
    metrics.json            final figures of the run
    model.keras             the final model
    checkpoints/            last.keras, best.keras, best.json
    evaluation.json         keras_resnet_cifar.evaluate's results (with per_class.csv,
                            confusion_matrix.csv)
    layer_stats.json        per-layer response std and gradient norms (the study)
    curve.json              intermediate training/test error points (the study)
    backup/                 resume state
    tensorboard/            TensorBoard logs

Other modules name these files through this module's constants and read them
through its readers, never by spelling the names themselves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from keras_resnet_cifar import fileio

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
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
TENSORBOARD = "tensorboard"

# The small files that describe a run (kilobytes): what a report needs and what may be
# committed beside it. Never the models, checkpoints, resume state or TensorBoard logs.
SMALL_FILES = (CONFIG, HISTORY_JSON, HISTORY_CSV, METRICS, EVALUATION, PER_CLASS, CONFUSION,
               LAYER_STATS, CURVE)

# Which saved model of a run a tool means by a short name.
MODEL_FILES = {"final": MODEL, "last": LAST, "best": BEST}


def path(workdir: str | os.PathLike, name: str) -> Path:
    """``workdir / name`` for one of this module's file names."""
    return Path(workdir) / name


def is_run_dir(workdir: str | os.PathLike) -> bool:
    """Whether ``workdir`` looks like a training run (it has a config.json)."""
    return path(workdir, CONFIG).is_file()


def read_config(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """config.json as a dict, or None when the run has none."""
    return fileio.read_json(path(workdir, CONFIG))


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of history.json (empty when the run has none yet)."""
    history = fileio.read_json(path(workdir, HISTORY_JSON))
    return history["epochs"] if history else []


def read_metrics(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """metrics.json, or None when the run has not finished."""
    return fileio.read_json(path(workdir, METRICS))


def read_evaluation(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """evaluation.json, or None when the run has not been evaluated."""
    return fileio.read_json(path(workdir, EVALUATION))


def read_layer_stats(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """layer_stats.json, or None when the run recorded none."""
    return fileio.read_json(path(workdir, LAYER_STATS))


def read_curve(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """curve.json, or None when the run recorded no intermediate points."""
    return fileio.read_json(path(workdir, CURVE))


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
