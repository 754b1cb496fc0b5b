"""Evaluates a trained model on the CIFAR-10 test set: accuracy, per class, confusion.

    python -m keras_resnet_cifar.evaluate --model_path=runs/resnet20-seed0 --data_dir=~/data/cifar10
    python -m keras_resnet_cifar.evaluate --model_path=exports/resnet20/1 --out=runs/eval-r20
    python -m keras_resnet_cifar.evaluate --model_path=model_int8.tflite --max_images=1000

``--model_path`` is anything :mod:`keras_resnet_cifar.predictor` loads: a training
run directory (its ``model.keras``, or ``checkpoints/{best,last}.keras`` with
``--checkpoint``), a ``.keras`` file, an exported SavedModel or a ``.tflite``
file. The results go into the run directory, or into ``--out``:

    evaluation.json        accuracy, loss, per-class accuracy / precision / recall /
                           support, macro averages, the confusion matrix
    per_class.csv          class, accuracy, precision, recall, support
    confusion_matrix.csv   rows: true class, columns: predicted class (counts)

Other models are evaluated without writing anything unless ``--out`` is given
(an export's version folder is what TF Serving polls: nothing is added to it).
A readable table is always printed. Per-class accuracy is the recall of that
class (correct / images of the class); precision and recall are scikit-learn's.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar import fileio, predictor, rundir
from keras_resnet_cifar.errors import UserError

RESULT_FILES = (rundir.EVALUATION, rundir.PER_CLASS, rundir.CONFUSION)


def load_predictor(path: str | os.PathLike, checkpoint: str = "final") -> predictor.Predictor:
    """:func:`keras_resnet_cifar.predictor.load` (kept for callers of this module)."""
    return predictor.load(path, checkpoint=checkpoint)


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
        # Any predictor (a SavedModel, a .tflite file) gives probabilities only, so
        # they are clipped; a run's metrics.json takes Keras' loss from the logits.
        "loss_definition": "mean cross-entropy -log p(true class) from the predicted "
                           "probabilities, clipped at 1e-12 (equal to the logits' value "
                           "except where a probability underflows)",
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_class": per_class,
        "class_names": list(class_names),
        "confusion_matrix": confusion.astype(int).tolist(),
    }


def evaluate_split(predict, images: np.ndarray, labels: np.ndarray,
                   class_names: Sequence[str], batch_size: int = 256,
                   progress: predictor.Progress | None = None) -> dict[str, Any]:
    """Runs ``predict`` (a :class:`~keras_resnet_cifar.predictor.Predictor`) over a split.

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
    return rundir.read_evaluation(run_dir)


def is_current(run_dir: str | os.PathLike) -> bool:
    """Whether the run's evaluation.json is newer than its model.keras."""
    result, model = rundir.path(run_dir, rundir.EVALUATION), rundir.path(run_dir, rundir.MODEL)
    return (result.exists() and model.exists()
            and result.stat().st_mtime >= model.stat().st_mtime)


def define_flags() -> None:
    """The evaluation CLI's flags."""
    from absl import flags

    flags.DEFINE_string("model_path", None, "A run directory, a .keras file, a SavedModel "
                        "folder or a .tflite file.")
    flags.DEFINE_enum("checkpoint", "final", list(predictor.CHECKPOINTS),
                      "In a run directory: final (model.keras), best or last checkpoint.")
    flags.DEFINE_string("dataset", "cifar10", "cifar10 or synthetic.")
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 copy (see train --helpfull).")
    flags.DEFINE_integer("synthetic_test_size", 1000, "--dataset=synthetic only.")
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.")
    flags.DEFINE_integer("max_images", 0, "Evaluate only the first N test images (0: all).")
    flags.DEFINE_integer("num_threads", 1, "CPU threads for a .tflite model.")
    flags.DEFINE_string("out", None, "Where to write the results (default: the run "
                        "directory; other models are only printed without --out).")


def main(argv):
    from absl import flags

    from keras_resnet_cifar import cli, datasets

    FLAGS = flags.FLAGS
    for name, least in (("batch_size", 1), ("max_images", 0), ("synthetic_test_size", 1),
                        ("num_threads", 1)):
        if FLAGS[name].value < least:
            raise UserError(f"--{name} must be >= {least}, got {FLAGS[name].value}.")
    resolved = predictor.resolve(FLAGS.model_path, FLAGS.checkpoint)  # before TF loads
    out = FLAGS.out or resolved.run_dir
    model = predictor.load(resolved, num_threads=FLAGS.num_threads)
    data = datasets.load(FLAGS.dataset, FLAGS.data_dir,
                         synthetic_sizes=(0, FLAGS.synthetic_test_size))
    n = FLAGS.max_images or len(data.test)
    result = evaluate_split(model, data.test.images[:n], data.test.labels[:n],
                            data.class_names, FLAGS.batch_size,
                            progress=cli.Progress("evaluating"))
    result.update(model=model.describe(), data_source=data.source)
    print(format_table(result))
    if out:
        paths = write_results(result, out)
        print(f"wrote {', '.join(str(p) for p in paths)}")
    else:
        print("(not written: give --out=FOLDER to keep the results)")


if __name__ == "__main__":
    from keras_resnet_cifar import cli

    define_flags()
    cli.run(main, required={"model_path": "a run directory, a .keras file, a SavedModel "
                                          "folder or a .tflite file"},
            renamed=[cli.Renamed("model_dir", "model_path")])
