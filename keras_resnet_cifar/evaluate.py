"""Evaluates a trained model on the CIFAR-10 test set: accuracy, per class, confusion.

    python -m keras_resnet_cifar.evaluate --model_dir=runs/resnet20-seed0 --data_dir=~/cifar10
    python -m keras_resnet_cifar.evaluate --model_dir=exports/resnet20/1   # a SavedModel
    python -m keras_resnet_cifar.evaluate --model_dir=model.keras --out=eval/

``--model_dir`` is a training run directory (its ``model.keras``, or
``checkpoints/{best,last}.keras`` with ``--checkpoint``), a ``.keras`` file, or a
SavedModel written by :mod:`keras_resnet_cifar.export`. The results go into the
run directory (or ``--out``):

    evaluation.json        accuracy, loss, per-class accuracy / precision / recall /
                           support, macro averages, the confusion matrix
    per_class.csv          class, accuracy, precision, recall, support
    confusion_matrix.csv   rows: true class, columns: predicted class (counts)

and a readable table is printed. Per-class accuracy is the recall of that class
(correct / images of the class); precision and recall are scikit-learn's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 32, 32, 3) -> probabilities (N, C)
CHECKPOINTS = {"final": "model.keras", "best": "checkpoints/best.keras",
               "last": "checkpoints/last.keras"}
RESULT_FILES = ("evaluation.json", "per_class.csv", "confusion_matrix.csv")


def _keras_predictor(path: Path) -> Predictor:
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a loadable .keras model ({first}).") from None

    def predict(images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        parts = [np.asarray(model(np.asarray(images[i:i + batch_size], np.float32),
                                  training=False))
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    predict.model = model
    return predict


def resolve_model_path(path: str | os.PathLike, checkpoint: str = "final") -> tuple[Path, str]:
    """(the file or folder to load, its kind: "keras" or "saved_model") for ``path``.

    Raises:
        UserError: nothing loadable at ``path``, or an unknown checkpoint.
    """
    path = Path(path)
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"Unknown --checkpoint {checkpoint!r}: expected one of "
                        f"{', '.join(CHECKPOINTS)}.")
    if path.is_file():
        if path.suffix != ".keras":
            raise UserError(f"{path} is not a .keras file, a SavedModel or a run directory.")
        return path, "keras"
    if not path.is_dir():
        raise UserError(f"No run directory, .keras file or SavedModel at {path}.")
    if (path / "saved_model.pb").is_file():
        return path, "saved_model"
    file = path / CHECKPOINTS[checkpoint]
    if not file.is_file():
        raise UserError(f"{path} has no {CHECKPOINTS[checkpoint]} (not a finished run, a "
                        ".keras file or a SavedModel).")
    return file, "keras"


def load_predictor(path: str | os.PathLike, checkpoint: str = "final") -> Predictor:
    """A function from uint8 images to class probabilities, for any supported ``path``.

    Args:
        path: a run directory, a ``.keras`` file or an exported SavedModel.
        checkpoint: in a run directory: ``"final"``, ``"best"`` or ``"last"``.

    Raises:
        UserError: nothing loadable there.
    """
    file, kind = resolve_model_path(path, checkpoint)
    if kind == "saved_model":
        from keras_resnet_cifar import serving

        return serving.load_classifier(file)
    return _keras_predictor(file)


def metrics_from_probabilities(probabilities: np.ndarray, labels: np.ndarray,
                               class_names: Sequence[str]) -> dict[str, Any]:
    """Test metrics of predicted probabilities against integer labels.

    Returns:
        {"images", "accuracy", "loss" (mean cross-entropy), "macro_precision",
        "macro_recall", "per_class": [{"class", "accuracy", "precision",
        "recall", "support"}], "class_names", "confusion_matrix" (rows true,
        columns predicted, counts)}.
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
    loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))) if len(labels) else float("nan")
    per_class = [{"class": name, "accuracy": float(recall[i]), "precision": float(precision[i]),
                  "recall": float(recall[i]), "support": int(support[i])}
                 for i, name in enumerate(class_names)]
    return {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "loss": loss,
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_class": per_class,
        "class_names": list(class_names),
        "confusion_matrix": confusion.astype(int).tolist(),
    }


def evaluate_split(predict: Predictor, images: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str], batch_size: int = 256) -> dict[str, Any]:
    """Runs ``predict`` over a split and returns :func:`metrics_from_probabilities`."""
    started = time.perf_counter()
    probabilities = predict(np.asarray(images, np.uint8), batch_size)
    result = metrics_from_probabilities(probabilities, labels, class_names)
    result["eval_seconds"] = time.perf_counter() - started
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable per-class table with the overall numbers underneath."""
    width = max(len("class"), *(len(r["class"]) for r in result["per_class"]))
    lines = [f"{'class':<{width}}  accuracy  precision  recall  support"]
    for r in result["per_class"]:
        lines.append(f"{r['class']:<{width}}  {r['accuracy']:8.4f}  {r['precision']:9.4f}  "
                     f"{r['recall']:6.4f}  {r['support']:7d}")
    lines.append(f"{'macro':<{width}}  {'':8}  {result['macro_precision']:9.4f}  "
                 f"{result['macro_recall']:6.4f}  {result['images']:7d}")
    lines.append(f"test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
                 f"on {result['images']} images")
    return "\n".join(lines)


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_results(result: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Writes evaluation.json, per_class.csv and confusion_matrix.csv; returns their paths."""
    out = Path(out_dir)
    names = result["class_names"]
    per_class = [("class", "accuracy", "precision", "recall", "support")] + [
        (r["class"], f"{r['accuracy']:.6f}", f"{r['precision']:.6f}", f"{r['recall']:.6f}",
         r["support"]) for r in result["per_class"]]
    confusion = [("true\\predicted", *names)] + [
        (name, *row) for name, row in zip(names, result["confusion_matrix"])]
    fileio.write_json(out / RESULT_FILES[0], result)
    fileio.write_text(out / RESULT_FILES[1], _csv(per_class))
    fileio.write_text(out / RESULT_FILES[2], _csv(confusion))
    return [out / f for f in RESULT_FILES]


def read_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The evaluation.json of a run directory, or None when it has none."""
    path = Path(run_dir) / RESULT_FILES[0]
    return json.loads(path.read_text()) if path.exists() else None


def is_current(run_dir: str | os.PathLike) -> bool:
    """Whether the run's evaluation.json is newer than its model.keras."""
    run_dir = Path(run_dir)
    result, model = run_dir / RESULT_FILES[0], run_dir / CHECKPOINTS["final"]
    return (result.exists() and model.exists()
            and result.stat().st_mtime >= model.stat().st_mtime)


def define_flags() -> None:
    """The evaluation CLI's flags."""
    from absl import flags

    flags.DEFINE_string("model_dir", None, "A run directory, a .keras file or a SavedModel.")
    flags.DEFINE_enum("checkpoint", "final", list(CHECKPOINTS),
                      "In a run directory: final (model.keras), best or last checkpoint.")
    flags.DEFINE_string("dataset", "cifar10", "cifar10 or synthetic.")
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 copy (see train --helpfull).")
    flags.DEFINE_integer("synthetic_test_size", 1000, "--dataset=synthetic only.")
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.")
    flags.DEFINE_string("out", None, "Where to write the results (default: the run "
                        "directory, or beside a .keras file / SavedModel).")


def main(argv):
    from absl import flags

    from keras_resnet_cifar import datasets

    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required: a run directory, a .keras file or a SavedModel.")
    file, kind = resolve_model_path(FLAGS.model_dir, FLAGS.checkpoint)
    predict = load_predictor(FLAGS.model_dir, FLAGS.checkpoint)
    data = datasets.load(FLAGS.dataset, FLAGS.data_dir,
                         synthetic_sizes=(0, FLAGS.synthetic_test_size))
    result = evaluate_split(predict, data.test.images, data.test.labels, data.class_names,
                            FLAGS.batch_size)
    result.update(model=str(file), model_kind=kind, checkpoint=FLAGS.checkpoint,
                  data_source=data.source)
    out = FLAGS.out or (FLAGS.model_dir if Path(FLAGS.model_dir).is_dir() and kind == "keras"
                        else Path(file).parent)
    paths = write_results(result, out)
    print(format_table(result))
    print(f"wrote {', '.join(str(p) for p in paths)}")


if __name__ == "__main__":
    from absl import app

    from keras_resnet_cifar.errors import run_cli

    define_flags()
    app.run(run_cli(main))
