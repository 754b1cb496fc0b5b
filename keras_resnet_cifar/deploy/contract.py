"""What an exported model promises its users: signature names, tensor keys, file names, the
model card and its checks. No TensorFlow: the clients and edge devices import it too."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from keras_resnet_cifar import fileio
from keras_resnet_cifar.deploy import seal
from keras_resnet_cifar.errors import UserError

DEFAULT_SIGNATURE = "serving_default"   # image: uint8 (None, 32, 32, 3)
FLOAT_SIGNATURE = "serving_float32"     # image: float32 (None, 32, 32, 3) on [0, 255]
INPUT_KEY = "image"
OUTPUT_KEYS = ("probabilities", "class_id", "class_name")
IMAGE_SHAPE = (None, 32, 32, 3)

# Files beside the models of an export version (exports/<name>/<version>/).
TFLITE_VARIANTS = ("float32", "float16", "dynamic_range", "int8")
MODEL_CARD = "model_card.json"
PARITY = "parity.json"
# Model-card keys: who wrote the export, and {relative POSIX path: sha256} of its other files.
WRITTEN_BY = "written_by"
WRITER = "keras_resnet_cifar.export"
FILES = "files"
SAVED_MODEL_GRAPH = "saved_model.pb"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # TF Serving replays it on loading


def tflite_file(variant: str) -> str:
    return f"model_{variant}.tflite"


def check_size(subject: str, size: int, limit: int) -> None:
    """Refuses a declared size before anything is allocated or parsed: a few kilobytes can
    declare gigabytes (issue 29). `subject` ends in its verb: "m.tflite declares tensors of"."""
    if size > limit:
        raise UserError(f"{subject} {size:,} bytes, more than the {limit:,} of any model "
                        "of this project: refused before loading.")


def read_card(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The model card of a model: inside its folder, beside a file."""
    model_path = Path(model_path)
    card = fileio.read_json((model_path if model_path.is_dir() else model_path.parent)
                            / MODEL_CARD)
    return card if isinstance(card, dict) else None


def class_names(card: dict[str, Any] | None) -> tuple[str, ...] | None:
    names = (card or {}).get("class_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def sha256(path: str | os.PathLike, *, follow_links: bool = False) -> str:
    """The hex sha256 of a regular file (a link, FIFO or device is refused)."""
    digest = hashlib.sha256()
    with fileio.open_regular(path, follow_links=follow_links) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """{relative POSIX path: sha256} of every file under `folder` but the model card; a link
    or special file is refused (an export holds regular files only)."""
    folder = Path(folder)
    hashes = {}
    for root, dirs, files in os.walk(folder):  # never descends into a linked folder
        for name in sorted(dirs + files):
            entry = Path(root) / name
            if name in dirs and not entry.is_symlink():
                continue
            relative = entry.relative_to(folder).as_posix()
            if relative != MODEL_CARD:
                fileio.check_not_link(entry)
                hashes[relative] = sha256(entry)
    return dict(sorted(hashes.items()))


def _recorded(card: dict[str, Any] | None) -> dict[str, str]:
    files = (card or {}).get(FILES)
    return files if isinstance(files, dict) else {}


def check_file(card: dict[str, Any] | None, folder: str | os.PathLike, name: str) -> None:
    expected = _recorded(card).get(name)
    file = Path(folder) / name
    if isinstance(expected, str) and sha256(file, follow_links=True) != expected:
        raise UserError(f"{file} does not match the sha256 its model card records: it was "
                        "damaged or modified after the export. Export the model again, or "
                        "restore the file.")


def saved_model_problem(folder: str | os.PathLike) -> str | None:
    """Why the model card beside a SavedModel does not vouch for it, or None: written by this
    exporter, graph and variables match, and this machine's seal covers every file now."""
    card = read_card(folder)
    if card is None:
        return f"has no {MODEL_CARD} of keras_resnet_cifar.export"
    recorded = _recorded(card)
    if card.get(WRITTEN_BY) != WRITER or SAVED_MODEL_GRAPH not in recorded:
        return (f"has a {MODEL_CARD} that records no sha256 of {SAVED_MODEL_GRAPH} (not "
                "written by this version of keras_resnet_cifar.export)")
    for name, expected in recorded.items():
        if name == SAVED_MODEL_GRAPH or name.startswith("variables/"):
            file = Path(folder) / name
            if not file.is_file() or sha256(file) != expected:
                return (f"has a {name} that differs from the sha256 its {MODEL_CARD} records "
                        "(modified after the export)")
    # Whoever writes a hostile SavedModel writes matching sha256; only this machine seals.
    return seal.problem(card, file_hashes(folder))


def check_trusted(folder: str | os.PathLike, trust_savedmodel: bool,
                  shown_as: str | os.PathLike | None = None) -> None:
    """Refuses a SavedModel its card and seal do not vouch for, unless `trust_savedmodel`:
    loading one runs whatever operations its graph holds, tf.io.write_file included."""
    if not trust_savedmodel and (problem := saved_model_problem(folder)):
        raise UserError(f"{shown_as or folder} {problem}. A SavedModel is a program (its "
                        "graph runs whatever operations it holds, file writes included): load "
                        "it only if you trust where it came from, with trust_savedmodel.",
                        argument="trust_savedmodel")
