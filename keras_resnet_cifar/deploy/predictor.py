"""One interface for all that predicts: a run directory, a .keras, SavedModel or .tflite file.

    p = predictor.load("runs/resnet20-seed0", checkpoint="best")   # checkpoints/best.keras
    p = predictor.load("exports/resnet20/1/model_int8.tflite", num_threads=2)
    probabilities = p.predict(pixels)     # uint8 (N, 32, 32, 3) -> float32 (N, C)

`resolve` needs no TensorFlow, so a command checks its arguments first. A .tflite file
needs only LiteRT (edge.py); the other kinds need TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from keras_resnet_cifar import run_files
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES, top_k
from keras_resnet_cifar.deploy import contract, edge  # neither imports TensorFlow
from keras_resnet_cifar.errors import UserError, first_line

# The help of every command's --trust_savedmodel (predict, evaluate, export, benchmark).
TRUST_HELP = ("Load a SavedModel that keras_resnet_cifar.export did not write on this machine "
              "(its model card carries no seal of this user's key, "
              "~/.config/keras-resnet-cifar/export.key). A SavedModel is a program: its graph "
              "runs whatever operations it holds, file writes included. Only for SavedModels "
              "from a source you trust.")
# A .keras file is a zip whose JSON Keras reads whole, and a zip can announce gigabytes in
# a few megabytes; the largest model here (ResNet-1202, optimiser state) is about 160 MB.
MAX_KERAS_BYTES = 1 << 30
MAX_KERAS_JSON_BYTES = 16 << 20
# Keras writes members stored and HDF5 datasets contiguous: one that inflates, or declares
# more than it stores (a fill value), is a bomb. Keras (3.15) refuses those beyond 4 GiB only.
MAX_KERAS_INFLATION = 64
MAX_KERAS_WEIGHT_BYTES = 512 << 20
CHECKPOINTS = tuple(run_files.MODEL_FILES)  # final, last, best
# The most threads a command may ask for: far beyond any machine's cores, well within the
# C int the runtimes take (2**31 was a traceback).
MAX_THREADS = 1024
# How far a probability may stray from [0, 1], and a row's sum from 1: float32 softmax
# rounds by about 1e-6, an int8 model's dequantised outputs by half a step (1/512) each,
# 0.02 over a row of 10; logits stray by whole units.
PROBABILITY_TOLERANCE = 0.05

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a model path names, found without loading it."""

    path: Path                     # as given
    file: Path                     # what loads: a run's checkpoint file for a run
    kind: str                      # "keras", "saved_model" or "tflite"
    run_dir: Path | None = None
    checkpoint: str | None = None  # final, last or best, for a run


def resolve(path: str | os.PathLike | Resolved, checkpoint: str = "final", *,
            trust_savedmodel: bool = False) -> Resolved:
    """Finds what `path` is (`checkpoint` picks a run directory's model) and checks that a
    SavedModel is trusted, also one a Resolved made elsewhere names."""
    resolved = path if isinstance(path, Resolved) else _resolve(path, checkpoint)
    if resolved.kind == "saved_model":
        contract.check_trusted(resolved.file, trust_savedmodel, resolved.path)
    return resolved


def _resolve(path: str | os.PathLike, checkpoint: str) -> Resolved:
    path = Path(path)
    if checkpoint not in run_files.MODEL_FILES:
        raise UserError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got "
                        f"{checkpoint!r}.", argument="checkpoint")
    if not path.exists():
        raise UserError(f"No run directory, .keras file, SavedModel or .tflite file at {path}.")
    if path.is_dir() and not (path / contract.SAVED_MODEL_GRAPH).is_file():
        file = run_files.path(path, run_files.MODEL_FILES[checkpoint])
        if not file.is_file():
            hint = "" if checkpoint != "final" else " (checkpoint=last for an unfinished run)"
            raise UserError(f"{path} has no {run_files.MODEL_FILES[checkpoint]} and no "
                            f"saved_model.pb: not a finished run directory nor a "
                            f"SavedModel{hint}.", argument="checkpoint" if hint else None)
        return Resolved(path, file, "keras", run_dir=path, checkpoint=checkpoint)
    file_kinds = {".keras": "keras", ".tflite": "tflite"}
    kind = "saved_model" if path.is_dir() else file_kinds.get(path.suffix)
    if kind is None:
        raise UserError(f"{path} is not a model: expected a run directory, a .keras file, "
                        "a SavedModel folder or a .tflite file.")
    if kind == "keras" and not zipfile.is_zipfile(path):
        raise UserError(f"{path} exists but is not a .keras model (not a zip archive).")
    if checkpoint != "final":
        raise UserError(f"checkpoint={checkpoint} applies to run directories; {path} is "
                        f"a {kind.replace('_', ' ')} model.", argument="checkpoint")
    return Resolved(path, path, kind)


class Predictor:
    """uint8 pixels -> class probabilities; `keras_model` is None but for a Keras model."""

    def __init__(self, resolved: Resolved, run_batch: Callable[[np.ndarray], np.ndarray],
                 class_names: Sequence[str], keras_model=None, card: dict | None = None):
        self.source = resolved
        self._run_batch = run_batch
        self.class_names = tuple(class_names)
        self.keras_model = keras_model
        self.card = card

    kind = property(lambda self: self.source.kind)
    path = property(lambda self: self.source.file)  # the file or folder loaded

    def predict(self, pixels: np.ndarray, batch_size: int = 256,
                progress: Progress | None = None) -> np.ndarray:
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (32, 32, 3):
            raise ValueError(f"Expected uint8 pixels (N, 32, 32, 3), got {pixels.dtype} "
                             f"{pixels.shape}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        parts = []
        for start in range(0, len(pixels), batch_size):
            batch = pixels[start:start + batch_size]
            parts.append(check_probabilities(np.asarray(self._run_batch(batch), np.float32),
                                             len(batch), len(self.class_names), self.source.path))
            if progress:
                progress(min(start + batch_size, len(pixels)), len(pixels))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)

    __call__ = predict

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.source.path), "model_file": str(self.path),
                "run_dir": str(self.source.run_dir) if self.source.run_dir else None,
                "checkpoint": self.source.checkpoint, "class_names": list(self.class_names)}


def check_probabilities(probabilities: np.ndarray, images: int, classes: int,
                        what: str | os.PathLike) -> np.ndarray:
    """`probabilities`, checked: else a model with NaN weights, logits or another number of
    classes than names would be printed or scored as if right ("airplane 1903164.1%")."""
    if probabilities.shape != (images, classes):
        raise UserError(f"{what} gave outputs of shape {probabilities.shape} for {images} "
                        f"image(s), not ({images}, {classes}): its outputs do not match its "
                        f"{classes} class names.")
    finite = np.isfinite(probabilities).all(axis=1)
    if not finite.all():
        raise UserError(f"{what} gave non-finite outputs (NaN or infinity) for "
                        f"{int((~finite).sum())} of {images} image(s): its weights are "
                        "damaged; nothing was scored or printed.")
    sums = probabilities.sum(axis=1)
    if images and (probabilities.min() < -PROBABILITY_TOLERANCE
                   or probabilities.max() > 1 + PROBABILITY_TOLERANCE
                   or np.abs(sums - 1).max() > PROBABILITY_TOLERANCE):
        raise UserError(f"{what} gave outputs that are not probabilities (values "
                        f"{probabilities.min():.4g} to {probabilities.max():.4g}, rows summing "
                        f"to {sums.min():.4g} to {sums.max():.4g}): a model that ends in "
                        "logits, not a softmax, is not a classifier these tools can score.")
    return probabilities


def load(path: str | os.PathLike | Resolved, *, checkpoint: str = "final",
         num_threads: int = 1, trust_savedmodel: bool = False) -> Predictor:
    """Loads a model path or a Resolved; `num_threads` is a .tflite model's (LiteRT)."""
    resolved = resolve(path, checkpoint, trust_savedmodel=trust_savedmodel)
    try:
        if resolved.kind == "tflite":
            runner = edge.TFLiteClassifier(resolved.file, num_threads=num_threads)
            return Predictor(resolved, lambda x: runner.predict(x, batch_size=len(x)),
                             runner.class_names, card=contract.read_card(resolved.file))
        if resolved.kind == "saved_model":
            from keras_resnet_cifar.deploy import serving  # TensorFlow

            classifier = serving.load_classifier(resolved.file)
            card = contract.read_card(resolved.file)
            return Predictor(resolved, lambda x: classifier.predict(x, batch_size=len(x)),
                             contract.class_names(card) or CIFAR10_CLASSES, card=card)
        return _load_keras(resolved)
    except ImportError as e:  # ModuleNotFoundError where a runtime is not installed
        package = (e.name or "").split(".")[0]
        if package == "ai_edge_litert":
            raise UserError(f"{resolved.path} is a .tflite model, which needs the LiteRT "
                            "runtime: pip install ai-edge-litert.") from None
        if package in ("tensorflow", "keras"):
            kind = "a SavedModel" if resolved.kind == "saved_model" else "a Keras model"
            raise UserError(f"{resolved.path} is {kind}, which needs TensorFlow (not installed "
                            "here); a .tflite model (e.g. model_int8.tflite of an export) "
                            "runs without it.") from None
        raise


def classify(model: Predictor, pixels: np.ndarray, inputs: Sequence[str], k: int = 3) -> list[dict]:
    """One {"input": name, "top": [{"class", "probability"}, ...]} per image of `inputs`."""
    if len(pixels) != len(inputs):
        raise ValueError(f"{len(pixels)} images but {len(inputs)} input names.")
    if not len(pixels):
        return []
    probabilities = model.predict(pixels)
    return [{"input": name, "top": [{"class": c, "probability": p} for c, p in ranked]}
            for name, ranked in zip(inputs, top_k(probabilities, model.class_names, k))]


def score(model: Predictor, pixels: np.ndarray, labels: np.ndarray,
          progress: Progress | None = None) -> dict:
    """Top-1 accuracy with numpy only: a .tflite model scores without TensorFlow."""
    predicted = model.predict(pixels, progress=progress).argmax(axis=1)
    correct = int(np.sum(predicted == np.asarray(labels)))
    return {"images": int(len(labels)), "correct": correct,
            "accuracy": correct / len(labels) if len(labels) else None}


def check_keras_archive(file: str | os.PathLike) -> None:
    """Refuses a zip bomb from the .keras file's central directory (sizes that zipfile
    never reads beyond) and its HDF5 datasets' headers, before Keras reads anything."""
    import h5py

    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise UserError(f"{file} exists but is not a readable .keras model (truncated or "
                        f"corrupt: {first_line(e)}).") from None
    contract.check_size(f"{file} announces uncompressed", sum(m.file_size for m in members),
                        MAX_KERAS_BYTES)
    for m in members:
        if m.filename.endswith(".json"):
            contract.check_size(f"{file}: its {m.filename} announces uncompressed",
                                m.file_size, MAX_KERAS_JSON_BYTES)
        if m.file_size > MAX_KERAS_INFLATION * m.compress_size + (1 << 20):
            raise UserError(f"{file}: its {m.filename} inflates {m.compress_size:,} bytes "
                            f"to {m.file_size:,}: a zip bomb, refused before reading.")
    datasets = []  # (name, bytes declared, bytes stored) of every HDF5 dataset
    try:
        with zipfile.ZipFile(file) as archive:
            for member in [m for m in members if m.filename.endswith(".h5")]:
                with archive.open(member) as f, h5py.File(f, "r") as h5:
                    h5.visititems(lambda name, obj: datasets.append(
                        (name, math.prod(obj.shape or ()) * obj.dtype.itemsize,
                         obj.id.get_storage_size())) if isinstance(obj, h5py.Dataset) else None)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{file} is not a loadable .keras model ({first_line(e)}).") from None
    for name, declared, stored in datasets:
        if declared > MAX_KERAS_INFLATION * stored + (1 << 20):
            raise UserError(f"{file}: its weight {name} declares {declared:,} bytes and "
                            f"stores {stored:,}: a bomb, refused before loading.")
    contract.check_size(f"{file}: its weights declare", sum(d for _, d, _ in datasets),
                        MAX_KERAS_WEIGHT_BYTES)


def _load_keras(resolved: Resolved) -> Predictor:
    import keras

    check_keras_archive(resolved.file)
    try:
        # compile=False: a run's optimiser (optimizer.ReferenceSGD) is not needed to predict.
        model = keras.saving.load_model(resolved.file, compile=False)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{resolved.file} is not a loadable .keras model "
                        f"({first_line(e)}).") from None
    # A .keras file carries no class names: it must be a CIFAR-10 classifier.
    if not (isinstance(model.input_shape, tuple) and isinstance(model.output_shape, tuple)
            and tuple(model.input_shape[1:]) == (32, 32, 3)
            and tuple(model.output_shape[1:]) == (len(CIFAR10_CLASSES),)):
        raise UserError(f"{resolved.file} maps {model.input_shape} to {model.output_shape}: "
                        "not a classifier of 32x32 RGB images into CIFAR-10's 10 classes "
                        "((None, 32, 32, 3) to (None, 10)).")
    return Predictor(resolved, lambda x: model(x.astype(np.float32), training=False),
                     CIFAR10_CLASSES, keras_model=model)
