"""Test metrics of a model on a labelled split, and their table: accuracy, loss, per-class
precision / recall / support (scikit-learn's), macro averages, the confusion matrix. A
class's accuracy is its recall, so it has no column of its own.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.errors import plural, printable

# The smallest probability the loss takes: one that underflows to 0 would make it infinite.
LOSS_FLOOR = 1e-12


def metrics_from_probabilities(probabilities: np.ndarray, labels: np.ndarray,
                               class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON-ready metrics; confusion matrix rows are true classes, columns predicted."""
    from sklearn import metrics  # a second's import: the commands check their files first

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
    per_class = [{"class": name, "precision": float(precision[i]),
                  "recall": float(recall[i]), "support": int(support[i])}
                 for i, name in enumerate(class_names)]
    return {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "loss": loss,
        # Predictors give probabilities only; a run's metrics.json has Keras' from the logits.
        "loss_definition": "mean cross-entropy -log p(true class) from the predicted "
                           "probabilities, clipped at 1e-12 (equal to the logits' value "
                           "except where a probability underflows)",
        # Each counts -log 1e-12 = 27.6 here, more in train's loss: the two differ by them.
        "loss_clipped_images": int(np.sum(picked < LOSS_FLOOR)),
        "macro_precision": float(np.mean(precision)), "macro_recall": float(np.mean(recall)),
        "per_class": per_class, "class_names": list(class_names),
        "confusion_matrix": confusion.astype(int).tolist()}


def evaluate_split(predict, images: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str], batch_size: int = 256,
                   progress: predictor.Progress | None = None) -> dict[str, Any]:
    """metrics_from_probabilities of `predict` (a Predictor) on a split, with eval_seconds."""
    started = time.perf_counter()
    images = np.asarray(images, np.uint8)
    kwargs = {} if progress is None else {"progress": progress}
    result = metrics_from_probabilities(predict(images, batch_size, **kwargs), labels,
                                        class_names)
    result["eval_seconds"] = time.perf_counter() - started
    return result


def format_table(result: dict[str, Any]) -> str:
    names = [printable(r["class"]) for r in result["per_class"]]  # from a model's card
    width = max(len("class"), *map(len, names))
    rows = [(name, r["precision"], r["recall"], r["support"])
            for name, r in zip(names, result["per_class"])]
    rows.append(("macro", result["macro_precision"], result["macro_recall"], result["images"]))
    lines = [f"{'class':<{width}}  precision  recall  support"] + [
        f"{n:<{width}}  {p:9.4f}  {r:6.4f}  {s:7d}" for n, p, r, s in rows]
    lines.append(f"test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
                 f"(from the probabilities) on {plural(result['images'], 'image')}; a "
                 "class's accuracy is its recall")
    if clipped := result.get("loss_clipped_images", 0):
        lines.append(
            f"({plural(clipped, 'image')} gave their true class a probability below "
            f"{LOSS_FLOOR:g}, counted as {LOSS_FLOOR:g} (loss {-np.log(LOSS_FLOOR):.1f} each): "
            "train's test loss, from the logits, counts them in full and is higher)")
    return "\n".join(lines)
