"""The few functions of the public API that are not simply a library's own (docs/api.md).

The package's top level (``from keras_resnet_cifar import ...``) offers these and
the libraries' own functions by name, loading each module only when its name is
first used. Importing this module loads neither Keras nor TensorFlow: the modules
that do are imported inside the functions that need them, so that reading a run or
running a ``.tflite`` model works where TensorFlow is not installed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar.deploy import contract, predictor
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import pretrained
from keras_resnet_cifar import run_files


def evaluate(model: predictor.Predictor | str | os.PathLike, images: np.ndarray,
             labels: np.ndarray, *, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, loss, per-class precision and recall and the confusion matrix of a model.

    Args:
        model: a loaded model (:func:`keras_resnet_cifar.deploy.predictor.load`) or
            anything it loads: a run directory, a ``.keras`` file, an exported
            SavedModel, a ``.tflite`` file.
        images: uint8 pixels (N, 32, 32, 3).
        labels: int class ids (N,).
        batch_size: images per call of the model.

    Returns:
        The dict ``evaluate`` writes as evaluation.json
        (:func:`keras_resnet_cifar.deploy.evaluation.metrics_from_probabilities`).
    """
    from keras_resnet_cifar.deploy import evaluation  # scikit-learn

    if not isinstance(model, predictor.Predictor):
        model = predictor.load(model)
    return evaluation.evaluate_split(model, images, labels, model.class_names, batch_size)


def export(model: str | os.PathLike, out: str | os.PathLike = "exports", *,
           data_dir: str | None = None, name: str | None = None, version: int | None = None,
           variants: Sequence[str] = contract.TFLITE_VARIANTS, calibration_images: int = 500,
           parity_images: int = 1000, latency_runs: int = 0):
    """Exports a model for TF Serving and edge devices, as ``keras_resnet_cifar.export`` does.

    Args:
        model: a run directory, a ``.keras`` file or an exported SavedModel.
        out: the folder ``<name>/<version>/`` goes into.
        data_dir: a local CIFAR-10 copy for int8 calibration and the parity report;
            None uses synthetic images (the int8 model's accuracy is then unknown).
        name, version: the model name and version (default: the architecture, the
            next free version).
        variants: the TFLite variants to write (``float32``, ``dynamic_range``,
            ``int8``; an empty tuple writes the SavedModel only).
        calibration_images, parity_images, latency_runs: as the command's flags.

    Returns:
        :class:`keras_resnet_cifar.deploy.exporter.Exported`: the version folder,
        its model card and its parity report.
    """
    from keras_resnet_cifar.deploy import exporter, sources  # TensorFlow

    exporter.check_options(variants=variants, parity_images=parity_images,
                           latency_runs=latency_runs, version=version,
                           calibration_images=calibration_images)
    source = sources.load_source(model)
    data = sources.eval_data("cifar10" if data_dir else "synthetic", data_dir,
                             calibration_images=calibration_images)
    return exporter.export(source, out, data=data, name=name, version=version,
                           variants=tuple(variants), parity_images=parity_images,
                           latency_runs=latency_runs)


def read_run(model_dir: str | os.PathLike) -> dict[str, Any]:
    """What a training run directory holds, as data (no model is loaded).

    Returns:
        {"config": config.json, "history": one dict per epoch (history.csv),
        "metrics": metrics.json or None while the run is unfinished, "best": the
        best epoch (checkpoints/best.json) or None, "evaluation": evaluation.json
        or None}.

    Raises:
        UserError: ``model_dir`` is not a run directory.
    """
    if not run_files.is_run_dir(model_dir):
        raise UserError(f"{model_dir} is not a training run directory (it has no "
                        f"{run_files.CONFIG}).")
    return {"config": run_files.read_config(model_dir), "history": run_files.read_history(model_dir),
            "metrics": run_files.read_metrics(model_dir), "best": run_files.read_best(model_dir),
            "evaluation": run_files.read_evaluation(model_dir)}


def reference_model(weights: str = "resnet20", *, base_url: str = pretrained.BASE_URL):
    """This package's ResNet holding the reference PyTorch implementation's trained weights.

    Args:
        weights: a released model (``resnet20``, ``resnet32``, ``resnet44``,
            ``resnet56``, ``resnet110``, ``resnet1202``: downloaded once, checked
            and cached, see :mod:`keras_resnet_cifar.models.pretrained`), or a
            ``.th`` / ``.npz`` file of them.
        base_url: where released checkpoints are downloaded from.

    Returns:
        A ``keras.Model`` taking raw uint8-range pixels. The weights are BSD
        2-clause, Copyright (c) 2018 Yerlan Idelbayev: keep the licence with
        anything made from them.
    """
    from keras_resnet_cifar.models import reference_weights  # Keras, when building

    return reference_weights.reference_model(pretrained.load_weights(weights,
                                                                     base_url=base_url))
