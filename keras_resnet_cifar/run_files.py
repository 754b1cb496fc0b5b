"""The run directory's file names, readers and writers (every file written atomically).
Its rules: training.resume_state (backup/state.npz, the truth a run resumes from) and
training.lock (one process, one recipe).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

CONFIG = "config.json"                  # the TrainConfig of the run
EXTENSIONS = "extensions.json"          # each time epochs was raised to continue the run
HISTORY_JSON = "history.json"           # one row per epoch (HISTORY_FIELDS)
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"                # final figures (only once the run is finished)
MODEL = "model.keras"                   # the final model
CURVES = "curves.png"                   # loss and accuracy per epoch (drawn by the commands)
CHECKPOINTS = "checkpoints"
LAST = f"{CHECKPOINTS}/last.keras"
BEST = f"{CHECKPOINTS}/best.keras"      # best val_accuracy on the eval set
BEST_JSON = f"{CHECKPOINTS}/best.json"
EVALUATION = "evaluation.json"          # the evaluate command's results, with the two CSVs
PER_CLASS = "per_class.csv"
CONFUSION = "confusion_matrix.csv"
LAYER_STATS = "layer_stats.json"        # per-layer response std, gradient norms (the study)
CURVE = "curve.json"                    # training/test error points inside epochs (the study)
BACKUP = "backup"
STATE = f"{BACKUP}/state.npz"           # the resume state
TENSORBOARD = "tensorboard"
LOCK = ".lock"                          # flock'ed by the process training in the directory

# The small files that describe a run (kilobytes): what a report needs and what may be
# committed beside it. Never the models, checkpoints, resume state or TensorBoard logs.
SMALL_FILES = (CONFIG, EXTENSIONS, HISTORY_JSON, HISTORY_CSV, METRICS, EVALUATION, PER_CLASS,
               CONFUSION, LAYER_STATS, CURVE)

# Which saved model of a run a tool means by a short name.
MODEL_FILES = {"final": MODEL, "last": LAST, "best": BEST}

# TrainConfig fields of how a run executes, which a resumed run may change (a moved data
# copy, another device count); the others are the recipe it keeps (epochs may only grow).
EXECUTION_FIELDS = ("data_dir", "distribute", "jit_compile", "steps_per_execution", "deterministic")

# history.csv's columns: epoch (1-based); training loss, cross_entropy, accuracy (running
# means over the epoch's augmented batches); val_* on the eval set; rate, seconds, images/s,
# load. "loss" adds the L2 term, which can dominate early in a deep plain net (BN makes the
# loss blind to the kernels' growing norms): curves and tables use "cross_entropy".
HISTORY_FIELDS = ("epoch", "loss", "cross_entropy", "accuracy", "val_loss",
                  "val_cross_entropy", "val_accuracy", "learning_rate", "epoch_time_s",
                  "images_per_sec", "load_average")


def path(workdir: str | os.PathLike, name: str) -> Path:
    return Path(workdir) / name


# The folders of a run; every other name above is a file.
FOLDERS = (CHECKPOINTS, BACKUP, TENSORBOARD)
_FILES = (*SMALL_FILES, MODEL, CURVES, LAST, BEST, BEST_JSON, STATE, LOCK)


def check_layout(workdir: str | os.PathLike) -> None:
    """Refuses (UserError) a name of this module that is a link or of the wrong kind (a planted
    .lock or checkpoints/ link would redirect a run's writes, a FIFO block it); the run
    directory itself may be a link: the user named it."""
    for name in FOLDERS:
        fileio.check_not_link(path(workdir, name), directory=True)
    for name in _FILES:
        fileio.check_not_link(path(workdir, name))


def is_run_dir(workdir: str | os.PathLike) -> bool:
    return path(workdir, CONFIG).is_file()


def _read_object(workdir: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The JSON object in `workdir/name`, or None; another JSON type is a UserError here."""
    value = fileio.read_json(path(workdir, name))
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path(workdir, name)} holds a JSON {type(value).__name__}, not "
                        f"the object a run's {Path(name).name} holds: restore it or remove "
                        "the run directory.")
    return value


def read_config(workdir: str | os.PathLike) -> dict[str, Any] | None:
    config = _read_object(workdir, CONFIG)
    epochs = (config or {}).get("epochs", 1)
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0):
        raise UserError(f"{path(workdir, CONFIG)} has epochs={epochs!r}, not a positive "
                        "integer: restore it or remove the run directory.")
    return config


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """history.json's per-epoch rows (empty when the run has none yet)."""
    history = _read_object(workdir, HISTORY_JSON)
    rows = (history or {}).get("epochs", [])
    if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)) or (
            history is not None and "epochs" not in history):
        raise UserError(f"{path(workdir, HISTORY_JSON)} has no list of epoch rows under "
                        "\"epochs\": restore it or remove the run directory.")
    return rows


# The JSON objects of a run, or None when it has not written them (yet).
read_metrics = functools.partial(_read_object, name=METRICS)
read_evaluation = functools.partial(_read_object, name=EVALUATION)
read_layer_stats = functools.partial(_read_object, name=LAYER_STATS)
read_curve = functools.partial(_read_object, name=CURVE)
read_best = functools.partial(_read_object, name=BEST_JSON)


def copy_small_files(workdir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Makes `dest`'s small files those of `workdir`: copies each one it has and removes
    from `dest` each one it has not (a copy of a run in progress loses a metrics.json of an
    earlier, finished run of the same name). Returns the files written."""
    written = []
    if Path(workdir).resolve() == Path(dest).resolve():
        return written
    for name in SMALL_FILES:
        source, copy = path(workdir, name), path(dest, name)
        if not os.path.lexists(source):
            if os.path.lexists(copy):
                fileio.check_not_link(copy)  # a file, not a folder or a link, is removed
                os.unlink(copy)
            continue
        # Never through a link (a system file would land in a folder meant for
        # committing), never from a FIFO or device, never more than a small file.
        with fileio.open_regular(source, max_bytes=fileio.MAX_JSON_BYTES) as f, \
                fileio.atomic_path(copy) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(f, out)
        written.append(copy)
    return written


def publish_runs(dirs: Sequence[str | os.PathLike], report_dir: str | os.PathLike) -> list[Path]:
    """Copies each run's small files into `<report_dir>/runs/<its folder's name>/` (the folder
    itself, links and "." resolved), names that must differ from run to run; returns the
    copies. Every name is checked before anything is copied."""
    sources = [Path(d).resolve() for d in dirs]
    for source in sources:
        if sources.count(source) > 1:
            raise UserError(f"{source} is given twice: give each run once.")
    names = [source.name for source in sources]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"Each run is copied to {Path(report_dir) / 'runs'}/<its folder "
                            f"name>, and {name} names more than one of the runs given: rename "
                            "one.")
    copies = [fileio.make_dir(Path(report_dir) / "runs" / name) for name in names]
    for source, copy in zip(sources, copies):
        copy_small_files(source, copy)
    return copies


def read_extensions(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    entries = fileio.read_json(path(workdir, EXTENSIONS)) or []
    if not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise UserError(f"{path(workdir, EXTENSIONS)} is not a list of objects: restore it "
                        "or remove the run directory.")
    return entries


def write_config(workdir: str | os.PathLike, config: Any) -> None:
    fileio.write_text(path(workdir, CONFIG), config.to_json())


def write_history(workdir: str | os.PathLike, eval_set: str,
                  rows: Sequence[dict[str, Any]]) -> None:
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
    with fileio.atomic_path(path(workdir, name)) as tmp:
        model.save(tmp)


def is_damaged_model(workdir: str | os.PathLike, name: str) -> bool:
    """Whether `workdir/name` exists but is not an intact .keras zip: every member's CRC
    is checked, or a bit-flipped checkpoint is found only when a tool loads it."""
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
    with fileio.atomic_path(path(workdir, name)) as tmp:
        figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
