"""The model card of an export (model_card.json): contract, provenance, headline figures,
licence and the sha256 of every other file of the version. TensorFlow loads only when a
card is built."""

from __future__ import annotations

import datetime
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar.deploy import contract
from keras_resnet_cifar.models import arch


def normalisation(keras_model) -> dict | None:
    """The per-channel mean and std of the model's `normalize` layer (None without one)."""
    if keras_model is None:
        return None
    try:
        layer = keras_model.get_layer("normalize")
    except ValueError:
        return None
    mean = np.asarray(layer.mean, np.float64).ravel()
    std = np.sqrt(np.asarray(layer.variance, np.float64).ravel())
    return {"mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std],
            "scale": "pixels on [0, 255]"}


def uses_reference_normalisation(keras_model) -> bool:
    """Whether the model normalises with the reference weights' ImageNet statistics, which
    reference_weights.reference_model puts in and this package's training never does."""
    stats = normalisation(keras_model)
    return bool(stats) and np.allclose(stats["mean"], arch.IMAGENET_MEAN, atol=1e-3) \
        and np.allclose(stats["std"], arch.IMAGENET_STD, atol=1e-3)


def _architecture(model) -> dict[str, Any]:
    keras_model = model.keras_model
    if keras_model is not None:
        from keras_resnet_cifar.models import networks

        return {"architecture": keras_model.name,
                "params_trainable": networks.count_trainable_params(keras_model),
                "params_total": int(keras_model.count_params()),
                "normalisation": normalisation(keras_model)}
    card = model.card or {}
    return {**{k: card.get(k) for k in ("architecture", "params_trainable", "params_total")},
            "normalisation": (card.get("input") or {}).get("normalisation")}


def build(model, provenance: dict, *, licence: str | None, name: str, version: int,
          class_names: Sequence[str], tflite_files: dict, data_description: str,
          parity_report: dict | None, warmup: dict | None = None,
          files: dict[str, str] | None = None) -> dict[str, Any]:
    """The architecture comes from the source's Keras model, or a SavedModel source's card;
    `files` ({relative path: sha256}) lets the tools find a damaged file."""
    import keras
    import tensorflow as tf

    arch = _architecture(model)
    normalisation = arch.pop("normalisation")
    metrics = provenance.get("metrics") or {}
    reference_row = (parity_report or {}).get("variants", {}).get(model.kind, {})
    return {
        "name": name, "version": version, contract.WRITTEN_BY: contract.WRITER,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **arch,  # architecture, params_trainable, params_total
        "class_names": list(class_names),
        "input": {"name": contract.INPUT_KEY, "shape": list(contract.IMAGE_SHAPE),
                  "pixels": "raw RGB, [0, 255]; the model normalises them itself",
                  "normalisation": normalisation},
        "signatures": {
            contract.DEFAULT_SIGNATURE: "image uint8 (None, 32, 32, 3)",
            contract.FLOAT_SIGNATURE: "image float32 (None, 32, 32, 3) on [0, 255]",
            "outputs": "probabilities float32 (None, C), class_id int64 (None,), "
                       "class_name string (None,)"},
        "tflite": tflite_files, "tf_serving_warmup": warmup,
        "calibration_data": data_description if "int8" in tflite_files else None,
        "source": provenance,
        # What the training run measured (and on which set), if it was a run.
        "test_accuracy": metrics.get("test_accuracy"),
        "test_accuracy_eval_set": metrics.get("eval_set", "test" if metrics else None),
        # What the export measured itself on the parity images, with the source model.
        "parity_accuracy": reference_row.get("accuracy"),
        "parity_data": data_description if parity_report else None,
        "licence": licence, "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
        contract.FILES: dict(files or {})}
