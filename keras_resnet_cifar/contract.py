"""What an exported model promises its users: signature names, tensor keys, model card.

The one place these names are spelled. It imports neither TensorFlow nor Keras,
so the serving client and an edge device (``edge.py``) use it as well as the
exporter (``serving.py``, ``exporting.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from keras_resnet_cifar import fileio

# SavedModel signatures (TF Serving's ``signature_name``).
DEFAULT_SIGNATURE = "serving_default"   # image: uint8 (None, 32, 32, 3)
FLOAT_SIGNATURE = "serving_float32"     # image: float32 (None, 32, 32, 3) on [0, 255]
# The input tensor and the outputs of both signatures.
INPUT_KEY = "image"
OUTPUT_KEYS = ("probabilities", "class_id", "class_name")
IMAGE_SHAPE = (None, 32, 32, 3)

# Files beside the models of an export version (exports/<name>/<version>/).
TFLITE_VARIANTS = ("float32", "dynamic_range", "int8")
MODEL_CARD = "model_card.json"
PARITY = "parity.json"
LICENCE = "LICENSE.weights"


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
