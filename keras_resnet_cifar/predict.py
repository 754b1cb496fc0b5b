"""Classifies images with an exported model: a SavedModel folder or a ``.tflite`` file.

    python -m keras_resnet_cifar.predict --model=exports/resnet20/1 cat.png batch.npy
    python -m keras_resnet_cifar.predict --model=exports/resnet20/1/model_int8.tflite \
        --num_threads=2 --json photo.jpg
    python -m keras_resnet_cifar.predict --model=... --dataset=cifar10 --data_dir=~/cifar10

Prints the top classes of every image (a table, or JSON with ``--json``), or the
accuracy on the test split with ``--dataset``. Inputs are PNG/JPEG files and
``.npy`` batches (see ``images.py``: grayscale/RGBA converted, other sizes
resized with a warning, refused with ``--strict``). A file that cannot be read is
reported in one line and the others are still classified; the exit status is 1
if any failed.

A ``.tflite`` model runs on the LiteRT runtime alone (XNNPACK, ``--num_threads``):
this path imports neither TensorFlow nor Keras, so it runs on an edge device with
numpy, Pillow, absl-py and ai-edge-litert. A SavedModel needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np
from absl import app, flags

from keras_resnet_cifar import images as images_lib
from keras_resnet_cifar.errors import UserError, run_cli
from keras_resnet_cifar.labels import CIFAR10_CLASSES, top_k

MODEL_CARD = "model_card.json"


@dataclasses.dataclass(frozen=True)
class Classifier:
    """An exported model as a function: uint8 pixels (N, 32, 32, 3) -> probabilities."""

    predict: Callable[[np.ndarray], np.ndarray]
    class_names: tuple[str, ...]
    kind: str  # "tflite" or "saved_model"
    path: str


def _card_names(folder: str) -> tuple[str, ...] | None:
    try:
        with open(os.path.join(folder, MODEL_CARD)) as f:
            names = json.load(f).get("class_names")
    except (OSError, ValueError, AttributeError):
        return None
    return tuple(names) if isinstance(names, list) else None


def load_classifier(path: str | os.PathLike, *, num_threads: int = 1) -> Classifier:
    """Opens a ``.tflite`` file (LiteRT only) or a SavedModel folder (TensorFlow).

    Raises:
        UserError: ``path`` is missing, or is neither a SavedModel folder nor a
            TFLite model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"No model at {path}.")
    if os.path.isfile(path):
        if not path.endswith(".tflite"):
            raise UserError(f"{path} is neither a SavedModel folder nor a .tflite file.")
        from keras_resnet_cifar import edge

        runner = edge.TFLiteClassifier(path, num_threads=num_threads)
        return Classifier(runner.predict, runner.class_names, "tflite", path)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UserError(f"{path} is neither a SavedModel folder (no saved_model.pb) nor a "
                        ".tflite file.")
    from keras_resnet_cifar import serving  # TensorFlow: only for SavedModels

    return Classifier(serving.load_classifier(path), _card_names(path) or CIFAR10_CLASSES,
                      "saved_model", path)


def classify(classifier: Classifier, loaded: Sequence[images_lib.Loaded],
             k: int = 3) -> list[dict]:
    """The top-``k`` classes of every image read, in input order.

    Returns:
        One {"input": name, "top": [{"class": str, "probability": float}, ...]}
        per image.
    """
    if not loaded:
        return []
    pixels = np.concatenate([item.pixels for item in loaded])
    names = [name for item in loaded for name in item.names]
    probabilities = classifier.predict(pixels)
    return [{"input": name, "top": [{"class": c, "probability": p} for c, p in ranked]}
            for name, ranked in zip(names, top_k(probabilities, classifier.class_names, k))]


def score(classifier: Classifier, pixels: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 accuracy of the classifier on labelled images."""
    predicted = classifier.predict(pixels).argmax(axis=1)
    return {"images": int(len(labels)), "correct": int(np.sum(predicted == labels)),
            "accuracy": float(np.mean(predicted == labels)) if len(labels) else None}


def format_table(predictions: Sequence[dict]) -> str:
    """One line per image: its name, then the top classes with probabilities."""
    width = max((len(p["input"]) for p in predictions), default=0)
    return "\n".join(
        f"{p['input']:<{width}}  " + "  ".join(f"{t['class']} {100 * t['probability']:5.1f}%"
                                               for t in p["top"])
        for p in predictions)


# --- Command line -----------------------------------------------------------------

def define_flags() -> None:
    flags.DEFINE_string("model", None, "SavedModel folder or .tflite file.", required=True)
    flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
    flags.DEFINE_integer("top_k", 3, "How many classes to show per image.")
    flags.DEFINE_boolean("strict", False, "Refuse images that are not 32x32 instead of "
                         "resizing them.")
    flags.DEFINE_integer("num_threads", 1, "CPU threads for a TFLite model.")
    flags.DEFINE_string("dataset", None, "Score the test split of this data set "
                        "(cifar10 or synthetic) instead of, or as well as, images.")
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 copy for --dataset=cifar10.")
    flags.DEFINE_integer("max_images", 0, "With --dataset: score only the first N test "
                         "images (0: all).")


def main(argv):
    FLAGS = flags.FLAGS
    paths = argv[1:]
    if not paths and not FLAGS.dataset:
        raise UserError("Nothing to classify: give image/.npy files or --dataset.")
    if FLAGS.top_k < 1:
        raise UserError(f"--top_k must be >= 1; got {FLAGS.top_k}.")
    classifier = load_classifier(FLAGS.model, num_threads=FLAGS.num_threads)
    loaded, errors = images_lib.load_files(paths, strict=FLAGS.strict)
    for item in loaded:
        for warning in item.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    predictions = classify(classifier, loaded, FLAGS.top_k)
    scored = None
    if FLAGS.dataset:
        from keras_resnet_cifar import datasets

        # Only the test split is scored: do not generate a synthetic training split.
        test = datasets.load(FLAGS.dataset, FLAGS.data_dir, synthetic_sizes=(0, 10000)).test
        n = FLAGS.max_images or len(test)
        scored = {"dataset": FLAGS.dataset, "split": "test",
                  **score(classifier, test.images[:n], test.labels[:n])}
    if FLAGS.json:
        print(json.dumps({"model": classifier.path, "predictions": predictions,
                          "errors": [str(e) for e in errors], "score": scored}, indent=2))
    else:
        if predictions:
            print(format_table(predictions))
        if scored:
            print(f"{scored['dataset']} {scored['split']}: accuracy "
                  f"{100 * scored['accuracy']:.2f}% ({scored['correct']}/{scored['images']})")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
