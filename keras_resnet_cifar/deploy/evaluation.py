"""Evaluates a model on a labelled split: accuracy, loss, per class, confusion (the library).

:func:`evaluate_split` runs any :class:`~keras_resnet_cifar.deploy.predictor.Predictor`
over images and returns :func:`metrics_from_probabilities`: a JSON-ready dict
of the accuracy, the loss, per-class precision / recall / support, macro
averages and the confusion matrix. A class's accuracy (correct / images of the
class) is its recall, so it has no column of its own; precision and recall are
scikit-learn's. :func:`write_results` writes the dict into a folder (a run
directory, see :mod:`keras_resnet_cifar.run_files`, or any other):

    evaluation.json        the dict
    per_class.csv          class, precision, recall, support
    confusion_matrix.csv   rows: true class, columns: predicted class (counts)

The command line is :mod:`keras_resnet_cifar.evaluate`.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.errors import printable
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import plural

RESULT_FILES = (run_files.EVALUATION, run_files.PER_CLASS, run_files.CONFUSION)

# The smallest probability the loss takes: a predictor gives probabilities, not logits,
# and one that underflows to 0 would make the loss infinite.
LOSS_FLOOR = 1e-12


def metrics_from_probabilities(probabilities: np.ndarray, labels: np.ndarray,
                               class_names: Sequence[str]) -> dict[str, Any]:
    """Test metrics of predicted probabilities against integer labels.

    Returns:
        {"images", "accuracy", "loss" (mean cross-entropy), "macro_precision",
        "macro_recall", "per_class": [{"class", "precision", "recall" (the
        class's accuracy), "support"}], "class_names", "confusion_matrix" (rows
        true, columns predicted, counts)}.
    """
    from sklearn import metrics

    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if probabilities.shape != (len(labels), len(class_names)):
        raise ValueError(f"Expected probabilities of shape ({len(labels)}, "
                         f"{len(class_names)}), got {probabilities.shape}.")
    predicted = probabilities.argmax(axis=1)
    ids = list(range(len(class_names)))
    confusion = metrics.confusion_matrix(labels, predicted, labels=ids)
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0)
    picked = probabilities[np.arange(len(labels)), labels]
    loss = (float(-np.mean(np.log(np.clip(picked, LOSS_FLOOR, 1.0)))) if len(labels)
            else float("nan"))
    # A class's accuracy (correct / images of the class) is its recall: not repeated.
    per_class = [{"class": name, "precision": float(precision[i]),
                  "recall": float(recall[i]), "support": int(support[i])}
                 for i, name in enumerate(class_names)]
    return {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "loss": loss,
        # Any predictor (a SavedModel, a .tflite file) gives probabilities only, so
        # they are clipped; a run's metrics.json takes Keras' loss from the logits.
        "loss_definition": "mean cross-entropy -log p(true class) from the predicted "
                           "probabilities, clipped at 1e-12 (equal to the logits' value "
                           "except where a probability underflows)",
        # Images whose true class got less than LOSS_FLOOR: each counts -log 1e-12 = 27.6
        # here, more in a loss from the logits (train's): the two figures differ by them.
        "loss_clipped_images": int(np.sum(picked < LOSS_FLOOR)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_class": per_class,
        "class_names": list(class_names),
        "confusion_matrix": confusion.astype(int).tolist(),
    }


def evaluate_split(predict, images: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str], batch_size: int = 256,
                   progress: predictor.Progress | None = None) -> dict[str, Any]:
    """Runs ``predict`` (a :class:`~keras_resnet_cifar.deploy.predictor.Predictor`) over a split.

    Returns:
        :func:`metrics_from_probabilities`, plus ``eval_seconds``.
    """
    started = time.perf_counter()
    images = np.asarray(images, np.uint8)
    if progress is None:
        probabilities = predict(images, batch_size)
    else:
        probabilities = predict(images, batch_size, progress=progress)
    result = metrics_from_probabilities(probabilities, labels, class_names)
    result["eval_seconds"] = time.perf_counter() - started
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable per-class table with the overall numbers underneath."""
    names = [printable(r["class"]) for r in result["per_class"]]  # from a model's card
    width = max(len("class"), *map(len, names))
    # A class's accuracy (correct / images of the class) is its recall: one column.
    lines = [f"{'class':<{width}}  precision  recall  support"]
    for name, r in zip(names, result["per_class"]):
        lines.append(f"{name:<{width}}  {r['precision']:9.4f}  "
                     f"{r['recall']:6.4f}  {r['support']:7d}")
    lines.append(f"{'macro':<{width}}  {result['macro_precision']:9.4f}  "
                 f"{result['macro_recall']:6.4f}  {result['images']:7d}")
    lines.append(f"test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
                 f"(from the probabilities) on {plural(result['images'], 'image')}; a "
                 "class's accuracy is its recall")
    clipped = result.get("loss_clipped_images", 0)
    if clipped:
        lines.append(
            f"({plural(clipped, 'image')} gave their true class a probability below "
            f"{LOSS_FLOOR:g}, counted as {LOSS_FLOOR:g} (loss {-np.log(LOSS_FLOOR):.1f} each): "
            "train's test loss, from the logits, counts them in full and is higher)")
    return "\n".join(lines)


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def check_destination(out_dir: str | os.PathLike) -> None:
    """Refuses a folder the results could not all be written to, before any is.

    Raises:
        UserError: ``out_dir`` cannot be made, or one of :data:`RESULT_FILES` there is
            a folder, a link or a special file.
    """
    fileio.check_can_make_dir(out_dir)
    for name in RESULT_FILES:
        fileio.check_not_link(Path(out_dir) / name)


def write_results(result: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Writes evaluation.json, per_class.csv and confusion_matrix.csv; returns their paths."""
    out = Path(out_dir)
    check_destination(out)
    fileio.make_dir(out)
    names = result["class_names"]
    per_class = [("class", "precision", "recall", "support")] + [
        (r["class"], f"{r['precision']:.6f}", f"{r['recall']:.6f}", r["support"])
        for r in result["per_class"]]
    confusion = [("true\\predicted", *names)] + [
        (name, *row) for name, row in zip(names, result["confusion_matrix"])]
    fileio.write_json(out / RESULT_FILES[0], result)
    fileio.write_text(out / RESULT_FILES[1], _csv(per_class))
    fileio.write_text(out / RESULT_FILES[2], _csv(confusion))
    return [out / f for f in RESULT_FILES]


def is_current(run_dir: str | os.PathLike) -> bool:
    """Whether the run's evaluation.json is newer than its model.keras."""
    result, model = run_files.path(run_dir, run_files.EVALUATION), run_files.path(run_dir, run_files.MODEL)
    return (result.exists() and model.exists()
            and result.stat().st_mtime >= model.stat().st_mtime)
