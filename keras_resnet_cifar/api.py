"""The functions of the public API (docs/api.md) that are not simply a library's own.
TensorFlow, Keras and scikit-learn load inside the functions that need them."""

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
    """What the evaluate command writes as evaluation.json, for a loaded model or anything
    predictor.load loads, on uint8 images (N, 32, 32, 3) and their labels."""
    from keras_resnet_cifar.deploy import evaluation  # scikit-learn

    if not isinstance(model, predictor.Predictor):
        model = predictor.load(model)
    return evaluation.evaluate_split(model, images, labels, model.class_names, batch_size)


def export(model: str | os.PathLike, out: str | os.PathLike = "exports", *,
           data_dir: str | None = None, name: str | None = None, version: int | None = None,
           variants: Sequence[str] = contract.TFLITE_VARIANTS, calibration_images: int = 500,
           parity_images: int = 1000, latency_runs: int = 0):
    """Exports as the export command does; returns exporter.Exported. Without `data_dir`
    calibration and parity use synthetic images. `variants=()`: SavedModel only."""
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
    """A run directory's config, history (one dict per epoch), metrics, best epoch and
    evaluation, as data (None for what a run has not written yet); no model is loaded."""
    if not run_files.is_run_dir(model_dir):
        raise UserError(f"{model_dir} is not a training run directory (it has no "
                        f"{run_files.CONFIG}).")
    return {name: getattr(run_files, f"read_{name}")(model_dir)
            for name in ("config", "history", "metrics", "best", "evaluation")}


def reference_model(weights: str = "resnet20", *, base_url: str = pretrained.BASE_URL):
    """This package's ResNet holding the reference PyTorch trained weights (a released name,
    a .th or .npz file): BSD 2-clause, Copyright (c) 2018 Yerlan Idelbayev; keep the licence."""
    from keras_resnet_cifar.models import reference_weights  # Keras, when building

    return reference_weights.reference_model(pretrained.load_weights(weights, base_url=base_url))
