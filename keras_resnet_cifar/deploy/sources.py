"""What an export is made from: the model (Source: a run directory, .keras file, SavedModel
or the reference PyTorch weights) and the images that calibrate and check it (EvalData).
No TensorFlow on import, so the export command's checks answer at once.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from absl import logging

from keras_resnet_cifar import run_files
from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES
from keras_resnet_cifar.deploy import contract, model_card, predictor, rest_client
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import reference_weights


@dataclasses.dataclass(frozen=True)
class Source:
    model: predictor.Predictor
    provenance: dict                 # for the model card: kind, path, sha256; a run's config
    licence_note: str | None = None  # a notice that must travel with the export
    licence_file: str | None = None  # copied into the export

    @property
    def keras_model(self):
        return self.model.keras_model


@dataclasses.dataclass(frozen=True)
class EvalData:
    calibration: np.ndarray       # uint8 (N, 32, 32, 3), from the training split
    test_images: np.ndarray       # uint8 (M, 32, 32, 3)
    test_labels: np.ndarray       # int (M,)
    description: str              # where they came from, for the model card
    real: bool                    # False for the synthetic fallback


def load_source(path: str | os.PathLike, *, checkpoint: str = "final",
                trust_savedmodel: bool = False) -> Source:
    """A run directory's model, a .keras file or a SavedModel of this exporter."""
    resolved = predictor.resolve(path, checkpoint, trust_savedmodel=trust_savedmodel)
    if resolved.kind == "tflite":
        raise UserError(f"{path} is a .tflite model, already an export: export its run "
                        "directory, .keras file or SavedModel instead.")
    model = predictor.load(resolved, trust_savedmodel=trust_savedmodel)
    model, trained_in = _float32_compute(model)
    if resolved.kind == "saved_model":
        from keras_resnet_cifar.deploy import serving

        # TFLite converts from serving_float32: said now, not as a KeyError after the copy.
        missing = [name for name in (contract.DEFAULT_SIGNATURE, contract.FLOAT_SIGNATURE)
                   if name not in serving.signature_names(resolved.file)]
        if missing:
            raise UserError(f"{path} has no {' and no '.join(missing)} signature: not a "
                            "SavedModel of keras_resnet_cifar.export, which this exporter "
                            "converts; export its .keras file or run directory instead.")
        card = model.card or {}
        licence = resolved.file / reference_weights.LICENCE_FILE
        return Source(model, {"kind": "saved_model", "path": str(resolved.file.resolve()),
                              "sha256": contract.sha256(resolved.file / contract.SAVED_MODEL_GRAPH),
                              "source": card.get("source")},
                      licence_note=card.get("licence"),
                      licence_file=str(licence) if licence.is_file() else None)
    if resolved.run_dir is None:
        provenance = {"kind": "keras_file", "path": str(resolved.file.resolve()),
                      "sha256": contract.sha256(resolved.file, follow_links=True)}
    else:
        provenance = {"kind": "run_dir", "path": str(resolved.run_dir.resolve()),
                      "model_file": run_files.MODEL_FILES[checkpoint],
                      "sha256": contract.sha256(resolved.file),
                      "config": run_files.read_config(resolved.run_dir),
                      "metrics": run_files.read_metrics(resolved.run_dir)}
    if trained_in:
        provenance["computes_float32_trained_in"] = trained_in
    # A model that normalises with the reference weights' ImageNet statistics is made from them.
    if not model_card.uses_reference_normalisation(model.keras_model):
        return Source(model, provenance)
    logging.warning("The model uses the reference weights' ImageNet normalisation: "
                    "recording their licence note in the model card.")
    return Source(model, provenance, licence_note=reference_weights.LICENCE_NOTE)


def _float32_compute(model: predictor.Predictor) -> tuple[predictor.Predictor, str | None]:
    """`model` computing in float32 with the same (float32) weights, and the mixed dtype policy
    it computed in (mixed_bfloat16); `model` and None if it computes in float32 already.
    TFLite has no bfloat16 kernels, and a CPU without native bfloat16 runs float32 faster."""
    keras_model = model.keras_model
    mixed = set() if keras_model is None else (
        {layer.dtype_policy.name for layer in keras_model.layers} - {"float32"})
    if not mixed:
        return model, None
    import keras

    def clone_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(keras_model, clone_function=clone_layer)
    clone.set_weights(keras_model.get_weights())
    return predictor.Predictor(model.source, lambda x: clone(x.astype(np.float32), training=False),
                               model.class_names, keras_model=clone, card=model.card), min(mixed)


def load_reference(npz_path: str | os.PathLike) -> Source:
    """The reference ResNet of PyTorch weights (resnetN.npz); their licence note goes into
    the model card, the licence file beside the .npz into the export."""
    model = reference_weights.reference_model(reference_weights.load_state_dict(npz_path))
    licence = Path(npz_path).with_name(reference_weights.LICENCE_FILE)
    wrapped = predictor.Predictor(predictor.Resolved(Path(npz_path), Path(npz_path), "keras"),
                                  lambda x: model(x.astype(np.float32), training=False),
                                  CIFAR10_CLASSES, keras_model=model)
    return Source(wrapped, {"kind": "reference_weights", "path": str(Path(npz_path).resolve()),
                            "sha256": contract.sha256(npz_path, follow_links=True)},
                  licence_note=reference_weights.LICENCE_NOTE,
                  licence_file=str(licence) if licence.is_file() else None)


def default_name(source: Source) -> str:
    """The architecture (resnet20), else a SavedModel card's name, else its folder's."""
    if source.keras_model is not None:
        return source.keras_model.name
    name = (source.model.card or {}).get("name")  # a card's: any JSON, an escape sequence
    if isinstance(name, str) and rest_client.name_problem(name) is None:
        return name
    return source.model.path.parent.name


def eval_data(dataset: str | None, data_dir: str | None, *, calibration_images: int,
              seed: int = 0) -> EvalData:
    """Calibration and parity images of a data set, or synthetic ones (with a warning);
    exporter.check_options checks `calibration_images`."""
    from keras_resnet_cifar.deploy import tflite  # TensorFlow

    if dataset is None and data_dir is None:
        logging.warning("No data_dir: calibrating int8 and measuring parity on SYNTHETIC "
                        "images. The int8 model's accuracy on real images is unverified.")
        dataset = "synthetic"
    data = datasets.load(dataset or "cifar10", data_dir, seed=seed, synthetic_sizes=(2000, 1000))
    real = dataset != "synthetic"
    where = f"{data.source}" if real else "synthetic data set (no real images given)"
    calibration = tflite.representative_images(data.train.images, calibration_images, seed)
    return EvalData(calibration, data.test.images, data.test.labels, real=real,
                    description=f"{dataset or 'cifar10'}: {where}; {len(calibration)} training "
                                "images for calibration, test split for parity")
