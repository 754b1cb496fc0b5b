"""What an exported model promises its users: signature names, tensor keys, model card.

The one place these names are spelled. It imports neither TensorFlow nor Keras,
so the serving client and an edge device (``edge.py``) use it as well as the
exporter (``serving.py``, ``exporter.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from keras_resnet_cifar import fileio
from keras_resnet_cifar.deploy import seal
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import reference_weights

# SavedModel signatures (TF Serving's ``signature_name``).
DEFAULT_SIGNATURE = "serving_default"   # image: uint8 (None, 32, 32, 3)
FLOAT_SIGNATURE = "serving_float32"     # image: float32 (None, 32, 32, 3) on [0, 255]
# The input tensor and the outputs of both signatures.
INPUT_KEY = "image"
OUTPUT_KEYS = ("probabilities", "class_id", "class_name")
IMAGE_SHAPE = (None, 32, 32, 3)

# Files beside the models of an export version (exports/<name>/<version>/).
TFLITE_VARIANTS = ("float32", "float16", "dynamic_range", "int8")
MODEL_CARD = "model_card.json"
PARITY = "parity.json"
LICENCE = reference_weights.LICENCE_FILE
# Model-card keys: who wrote the export, and the sha256 of every other file in it
# (relative POSIX path -> hex digest), so that a damaged or replaced file is found.
WRITTEN_BY = "written_by"
WRITER = "keras_resnet_cifar.export"
FILES = "files"
SAVED_MODEL_GRAPH = "saved_model.pb"
# The warm-up requests TF Serving replays when it loads a version (deploy/tf_serving.py).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


def tflite_file(variant: str) -> str:
    """The file name of a TFLite variant inside an export: ``model_<variant>.tflite``."""
    return f"model_{variant}.tflite"


def card_path(model_path: str | os.PathLike) -> Path:
    """The model card that describes ``model_path``: inside a folder, beside a file."""
    model_path = Path(model_path)
    return (model_path if model_path.is_dir() else model_path.parent) / MODEL_CARD


def read_card(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The model card of an exported model (SavedModel folder or ``.tflite``), or None.

    Raises:
        UserError: the card exists but is not readable JSON.
    """
    card = fileio.read_json(card_path(model_path))
    return card if isinstance(card, dict) else None


def class_names(card: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The card's class names when they are a list of strings, else None."""
    names = (card or {}).get("class_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def sha256(path: str | os.PathLike, *, follow_links: bool = False) -> str:
    """The hex sha256 of a regular file, read in blocks.

    Raises:
        UserError: a link (unless ``follow_links``), a FIFO, device or folder
            (:func:`keras_resnet_cifar.fileio.open_regular`).
    """
    digest = hashlib.sha256()
    with fileio.open_regular(path, follow_links=follow_links) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """{relative POSIX path: sha256} of every file under ``folder`` but the model card.

    Raises:
        UserError: something under ``folder`` is a symbolic link or a special
            file (FIFO, device, socket): an export holds regular files only.
    """
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
    """Checks ``folder/name`` against the sha256 its model card records, if it records one.

    Raises:
        UserError: the file differs from what was exported (damaged or replaced).
    """
    expected = _recorded(card).get(name)
    file = Path(folder) / name
    if isinstance(expected, str) and sha256(file, follow_links=True) != expected:
        raise UserError(f"{file} does not match the sha256 its model card records: it was "
                        "damaged or modified after the export. Export the model again, or "
                        "restore the file.")


def saved_model_problem(folder: str | os.PathLike) -> str | None:
    """Why the model card beside a SavedModel does not vouch for it, or None when it does.

    It vouches when this project's exporter wrote it, the SavedModel's graph and
    variables are the files it records (by sha256), and this machine's seal
    (:mod:`keras_resnet_cifar.deploy.seal`) says that this user's export wrote
    exactly the card and the files there now. The sha256 alone prove nothing:
    whoever writes a hostile SavedModel writes a matching card too.

    Raises:
        UserError: the card exists but is not readable JSON; a link or special
            file in the folder; an unusable key file.
    """
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
    # Anyone can write a card whose sha256 match; only this machine's key seals one.
    return seal.problem(card, file_hashes(folder))
