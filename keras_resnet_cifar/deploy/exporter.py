"""Exports a classifier for TF Serving and for edge devices, with proof (the library).

:func:`export` writes, atomically, one new version in TF Serving's layout:

    <out>/<name>/<version>/
        saved_model.pb, variables/, assets/, fingerprint.pb   the SavedModel (serving.py)
        model_float32.tflite, model_dynamic_range.tflite,
        model_int8.tflite                                     TFLite (tflite.py)
        model_card.json        class names, input contract, provenance, licence
        parity.json            agreement with the source model (parity.py)
        LICENSE.weights        when made from the reference weights

The version is built in a hidden temporary folder beside it (same filesystem)
and renamed into place at the end, so a TF Serving process polling
``<out>/<name>/`` never sees a half-written version, and a failed or interrupted
export leaves nothing behind. One export per model name runs at a time (a lock
file, ``.export.lock``, that the system releases when the process ends however
it ends); the next export removes the hidden folder a killed one left.

The source is anything :mod:`keras_resnet_cifar.deploy.predictor` loads except a
``.tflite`` file (already an export): a training run directory, a ``.keras``
file, or a SavedModel (copied as it is; its TFLite models are converted from
its ``serving_float32`` signature) -- or the reference PyTorch weights
(:func:`load_reference`). The command line is :mod:`keras_resnet_cifar.export`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from absl import logging

from keras_resnet_cifar import fileio
from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.deploy import contract, edge, parity, predictor, serving, tflite
from keras_resnet_cifar.models import networks, reference_weights
from keras_resnet_cifar.training import rundir
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES
from keras_resnet_cifar.text import plural

LOCK = ".export.lock"
# The SavedModel's own files, which a SavedModel source contributes to an export.
SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")


@dataclasses.dataclass(frozen=True)
class Source:
    """A model to export and where it came from.

    Attributes:
        model: the predictor (raw pixels in, probabilities out): a Keras model
            (``model.keras_model``) or a SavedModel.
        provenance: what the model card records about the source: kind, path,
            sha256, and the run's config and metrics when there is a run.
        licence_note: a notice that must travel with the export, or None.
        licence_file: a licence file to copy into the export, or None.
    """

    model: predictor.Predictor
    provenance: dict
    licence_note: str | None = None
    licence_file: str | None = None

    @property
    def keras_model(self):
        """The Keras model, or None for a SavedModel source."""
        return self.model.keras_model


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Images for int8 calibration and the parity report."""

    calibration: np.ndarray       # uint8 (N, 32, 32, 3), from the training split
    test_images: np.ndarray       # uint8 (M, 32, 32, 3)
    test_labels: np.ndarray       # int (M,)
    description: str              # where they came from, for the model card
    real: bool                    # False for the synthetic fallback


def load_source(path: str | os.PathLike, *, checkpoint: str = "final",
                trust_savedmodel: bool = False) -> Source:
    """Loads a run directory's model, a ``.keras`` file or a SavedModel for export.

    Args:
        path: a training run directory, a ``.keras`` file or a SavedModel folder.
        checkpoint: in a run directory, ``"final"`` (``model.keras``),
            ``"last"`` or ``"best"`` (``checkpoints/<which>.keras``).
        trust_savedmodel: accept a SavedModel that this project's exporter did
            not write (:func:`keras_resnet_cifar.deploy.predictor.check_trusted`).

    Raises:
        UserError: nothing there, no model in the run directory, unknown
            checkpoint, an unreadable model, a ``.tflite`` file, an untrusted
            SavedModel, or one without this project's two signatures.
    """
    resolved = predictor.resolve(path, checkpoint, trust_savedmodel=trust_savedmodel)
    if resolved.kind == "tflite":
        raise UserError(f"{path} is a .tflite model, already an export: export its run "
                        "directory, .keras file or SavedModel instead.")
    model = predictor.load(resolved, trust_savedmodel=trust_savedmodel)
    if resolved.kind == "saved_model":
        # Its TFLite models are converted from serving_float32: said now, not as a
        # KeyError after the copy.
        missing = [name for name in (contract.DEFAULT_SIGNATURE, contract.FLOAT_SIGNATURE)
                   if name not in serving.signature_names(resolved.file)]
        if missing:
            raise UserError(f"{path} has no {' and no '.join(missing)} signature: not a "
                            "SavedModel of keras_resnet_cifar.export, which this exporter "
                            "converts; export its .keras file or run directory instead.")
        card = model.card or {}
        licence = resolved.file / contract.LICENCE
        return Source(model, {"kind": "saved_model", "path": str(resolved.file.resolve()),
                              "sha256": contract.sha256(resolved.file / "saved_model.pb"),
                              "source": card.get("source")},
                      licence_note=card.get("licence"),
                      licence_file=str(licence) if licence.is_file() else None)
    if resolved.run_dir is None:
        return _with_licence(Source(model, {
            "kind": "keras_file", "path": str(resolved.file.resolve()),
            "sha256": contract.sha256(resolved.file)}))
    provenance = {"kind": "run_dir", "path": str(resolved.run_dir.resolve()),
                  "model_file": rundir.MODEL_FILES[checkpoint],
                  "sha256": contract.sha256(resolved.file),
                  "config": rundir.read_config(resolved.run_dir),
                  "metrics": rundir.read_metrics(resolved.run_dir)}
    return _with_licence(Source(model, provenance))


def _with_licence(source: Source) -> Source:
    """Adds the reference weights' licence note to a model that looks made from them.

    :func:`reference_weights.reference_model` (and so ``import_weights``'s
    ``.keras`` files) puts the reference's ImageNet statistics in the
    ``normalize`` layer, which this package's training never uses; such a model
    carries the weights' licence obligation into its exports.
    """
    stats = _normalisation(source.keras_model)
    if stats and np.allclose(stats["mean"], networks.IMAGENET_MEAN, atol=1e-3) and \
            np.allclose(stats["std"], networks.IMAGENET_STD, atol=1e-3):
        logging.warning("The model uses the reference weights' ImageNet normalisation: "
                        "recording their licence note in the model card.")
        return dataclasses.replace(source, licence_note=reference_weights.LICENSE_NOTE)
    return source


def load_reference(npz_path: str | os.PathLike) -> Source:
    """Builds the reference ResNet from PyTorch weights (``resnetN.npz``) for export.

    The weights' licence note goes into the model card, and their
    ``LICENSE.weights`` (beside the ``.npz``) into the export.
    """
    model = reference_weights.reference_model(reference_weights.load_state_dict(npz_path))
    licence = Path(npz_path).with_name(contract.LICENCE)
    resolved = predictor.Resolved(Path(npz_path), Path(npz_path), "keras")
    wrapped = predictor.Predictor(
        resolved, lambda x: model(x.astype(np.float32), training=False), CIFAR10_CLASSES,
        keras_model=model)
    return Source(wrapped, {"kind": "reference_weights",
                            "path": str(Path(npz_path).resolve()),
                            "sha256": contract.sha256(npz_path)},
                  licence_note=reference_weights.LICENSE_NOTE,
                  licence_file=str(licence) if licence.is_file() else None)


def next_version(model_root: str | os.PathLike) -> int:
    """1 + the largest numeric version folder under ``model_root`` (1 if none)."""
    root = Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    return max(versions, default=0) + 1


def _normalisation(model) -> dict | None:
    if model is None:
        return None
    try:
        layer = model.get_layer("normalize")
    except ValueError:
        return None
    mean = np.asarray(layer.mean, np.float64).ravel()
    std = np.sqrt(np.asarray(layer.variance, np.float64).ravel())
    return {"mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std],
            "scale": "pixels on [0, 255]"}


def _architecture(source: Source) -> dict:
    """Name, parameter counts and normalisation: from the Keras model, or the source's card."""
    model = source.keras_model
    if model is not None:
        return {"architecture": model.name,
                "params_trainable": networks.count_trainable_params(model),
                "params_total": int(model.count_params()),
                "normalisation": _normalisation(model)}
    card = source.model.card or {}
    return {"architecture": card.get("architecture"),
            "params_trainable": card.get("params_trainable"),
            "params_total": card.get("params_total"),
            "normalisation": (card.get("input") or {}).get("normalisation")}


def model_card(source: Source, *, name: str, version: int, class_names: Sequence[str],
               tflite_files: dict, data: EvalData, parity_report: dict | None,
               files: dict[str, str] | None = None) -> dict:
    """What travels with the export: contract, provenance, headline figures, file hashes.

    ``files`` ({relative path: sha256} of every other file of the version) lets
    the tools find a damaged file (``edge.py`` checks a ``.tflite`` against it) and
    tells them which SavedModels this project wrote: a SavedModel is code, and one
    the card does not vouch for loads only with ``--trust_savedmodel``.
    """
    import keras
    import tensorflow as tf

    arch = _architecture(source)
    metrics = source.provenance.get("metrics") or {}
    reference_row = (parity_report or {}).get("variants", {}).get(source.model.kind, {})
    return {
        "name": name,
        "version": version,
        contract.WRITTEN_BY: contract.WRITER,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": arch["architecture"],
        "params_trainable": arch["params_trainable"],
        "params_total": arch["params_total"],
        "class_names": list(class_names),
        "input": {"name": contract.INPUT_KEY, "shape": list(contract.IMAGE_SHAPE),
                  "pixels": "raw RGB, [0, 255]; the model normalises them itself",
                  "normalisation": arch["normalisation"]},
        "signatures": {
            contract.DEFAULT_SIGNATURE: "image uint8 (None, 32, 32, 3)",
            contract.FLOAT_SIGNATURE: "image float32 (None, 32, 32, 3) on [0, 255]",
            "outputs": "probabilities float32 (None, C), class_id int64 (None,), "
                       "class_name string (None,)"},
        "tflite": tflite_files,
        "calibration_data": data.description if "int8" in tflite_files else None,
        "source": source.provenance,
        # What the training run measured (and on which set), if it was a run.
        "test_accuracy": metrics.get("test_accuracy"),
        "test_accuracy_eval_set": metrics.get("eval_set", "test" if metrics else None),
        # What the export measured itself on the parity images, with the source model.
        "parity_accuracy": reference_row.get("accuracy"),
        "parity_data": data.description if parity_report else None,
        "licence": source.licence_note,
        "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
        contract.FILES: dict(files or {}),
    }


def _tflite_info(variant: str, blob: bytes) -> dict:
    runner = edge.TFLiteClassifier(blob)
    scale, zero_point = runner.input_quantization
    info = {"file": contract.tflite_file(variant), "bytes": len(blob),
            "input_dtype": str(runner.input_dtype), "ops": tflite.ops_used(blob)}
    if variant == "int8":
        info["input_quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        if (scale, zero_point) != (1.0, 0):
            logging.warning("The int8 model's input is quantised with scale %g, zero point "
                            "%d, not (1, 0): feed it through edge.TFLiteClassifier, which "
                            "quantises, rather than raw bytes.", scale, zero_point)
    return info


def _parity(source: Source, folder: Path, blobs: dict[str, bytes], data: EvalData,
            latency_runs: int) -> dict:
    """The parity report: the source model is the reference, every export is compared."""
    images, labels = data.test_images, data.test_labels
    logging.info("Parity: the source model on %s", plural(len(images), "image"))
    reference = source.model.predict(images)
    keras_model = source.keras_model
    one = (source.model.predict if keras_model is None
           else lambda x: keras_model.predict_on_batch(x.astype(np.float32)))
    variants = {source.model.kind: {"predict": lambda x: reference, "predict_one": one}}
    if keras_model is not None:  # the SavedModel was made here: measure it too
        saved = serving.load_classifier(folder)
        variants["saved_model"] = {"predict": saved, "predict_one": saved,
                                   "size_bytes": _folder_size(folder)}
    else:  # the SavedModel is the source, copied unchanged
        variants[source.model.kind]["size_bytes"] = _folder_size(folder)
    for variant, blob in blobs.items():
        runner = edge.TFLiteClassifier(folder / contract.tflite_file(variant), num_threads=1)
        variants[f"tflite_{variant}"] = {"predict": runner.predict, "predict_one": runner.predict,
                                         "size_bytes": len(blob),
                                         "file": contract.tflite_file(variant)}
    report = parity.report(reference, variants, images, labels if data.real else None,
                           latency_runs=latency_runs,
                           progress=lambda name: logging.info(
                               "Parity: %s on %s, %s", name, plural(len(images), "image"),
                               plural(latency_runs, "timed batch-1 call")))
    report["reference"] = source.model.kind
    report["data"] = data.description
    report["latency_threads"] = 1
    return report


def _folder_size(folder: Path) -> int:
    """Bytes of the SavedModel files (not the TFLite models or reports beside them)."""
    files = [folder / "saved_model.pb", *(folder / "variables").rglob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


@contextlib.contextmanager
def _export_lock(model_root: Path) -> Iterator[None]:
    """Holds ``model_root/.export.lock``; refuses if another export holds it.

    An flock: the system releases it when the process ends, however it ends,
    so a killed export never leaves the next one locked out.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, no stale-folder cleanup
        yield
        return
    with open(model_root / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"Another export to {model_root} is running; try again when "
                            "it has finished.") from None
        _remove_stale_temps(model_root)
        yield


def _remove_stale_temps(model_root: Path) -> None:
    """Removes hidden ``.<version>.*.tmp`` folders of exports that were killed.

    Called with the lock held, so no live export owns one.
    """
    for tmp in model_root.glob(".*.tmp"):
        if tmp.is_dir() and tmp.name.split(".")[1].isdigit():
            logging.info("Removing %s, left by an export that was killed.", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def export(source: Source, export_dir: str | os.PathLike, *, name: str,
           data: EvalData, version: int | None = None,
           class_names: Sequence[str] | None = None,
           variants: Sequence[str] = tflite.VARIANTS, parity_images: int = 10000,
           latency_runs: int = 100) -> tuple[Path, dict]:
    """Writes ``export_dir/name/version/`` (see the module docstring), atomically.

    Args:
        source: the model and its provenance.
        export_dir: the folder TF Serving's ``--model_base_path`` parent is.
        name: the model name (TF Serving's MODEL_NAME).
        data: calibration and parity images.
        version: the version number; None takes the next free one.
        class_names: names of the model's outputs, in order (default: the
            source's own).
        variants: TFLite variants to write (any of ``tflite.VARIANTS``).
        parity_images: how many test images the parity report uses (0: none).
        latency_runs: timed batch-1 calls per variant in the report.

    Returns:
        (the version folder, its model card).

    Raises:
        UserError: the version exists, the place is not writable, another
            export to the same name is running, bad name, version, counts or
            variants.
    """
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise UserError(f"Bad model name {name!r}: it must be one folder name.")
    unknown = [v for v in variants if v not in tflite.VARIANTS]
    if unknown:
        raise UserError(f"Unknown TFLite variant {unknown[0]!r}: expected some of "
                        f"{', '.join(tflite.VARIANTS)}.")
    if parity_images < 0 or latency_runs < 0:
        raise UserError("--parity_images and --latency_runs must not be negative; got "
                        f"{parity_images} and {latency_runs}.")
    if version is not None and version < 1:
        raise UserError(f"Versions are positive integers; got {version}.")
    class_names = tuple(class_names or source.model.class_names)
    model_root = Path(export_dir) / name
    try:
        model_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create {model_root}: {e.strerror or e}.") from None
    if not os.access(model_root, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write to {model_root}.")
    with _export_lock(model_root):
        if version is None:
            version = next_version(model_root)
        final = model_root / str(version)
        if final.exists():
            raise UserError(f"{final} already exists: versions are never overwritten "
                            "(omit --version to take the next free one).")
        with fileio.atomic_path(final, is_dir=True) as tmp:
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving container must read it
            card = _write_version(source, tmp, name=name, version=version,
                                  class_names=class_names, data=data, variants=variants,
                                  parity_images=parity_images, latency_runs=latency_runs)
            if final.exists():  # something else made this version meanwhile
                raise UserError(f"{final} appeared during the export; nothing was written.")
    return final, card


def _write_version(source: Source, tmp: Path, *, name: str, version: int,
                   class_names: Sequence[str], data: EvalData, variants: Sequence[str],
                   parity_images: int, latency_runs: int) -> dict:
    if source.keras_model is not None:
        logging.info("Writing the SavedModel")
        serving.save(source.keras_model, tmp, class_names)
    else:
        logging.info("Copying the SavedModel %s", source.model.path)
        for item in SAVED_MODEL_FILES:
            origin = source.model.path / item
            if origin.is_dir():
                shutil.copytree(origin, tmp / item)
            elif origin.is_file():
                shutil.copyfile(origin, tmp / item)
    convertible = source.keras_model if source.keras_model is not None else source.model.path
    blobs = {}
    for variant in variants:
        logging.info("Converting to TFLite (%s)", variant)
        # The converter's scratch folder goes inside the version's temporary one, so
        # whatever an interrupted export leaves is removed with it.
        blobs[variant] = tflite.convert(convertible, variant, data.calibration, workdir=tmp)
        (tmp / contract.tflite_file(variant)).write_bytes(blobs[variant])
    files = {v: _tflite_info(v, b) for v, b in blobs.items()}
    report = None
    if parity_images:
        sub = dataclasses.replace(data, test_images=data.test_images[:parity_images],
                                  test_labels=data.test_labels[:parity_images])
        report = _parity(source, tmp, blobs, sub, latency_runs)
        fileio.write_json(tmp / contract.PARITY, report)
    if source.licence_file:
        shutil.copyfile(source.licence_file, tmp / contract.LICENCE)
    card = model_card(source, name=name, version=version, class_names=class_names,
                      tflite_files=files, data=data, parity_report=report,
                      files=contract.file_hashes(tmp))
    fileio.write_json(tmp / contract.MODEL_CARD, card)
    return card


def eval_data(dataset: str | None, data_dir: str | None, *, calibration_images: int,
              seed: int = 0) -> EvalData:
    """Calibration and parity images from a data set, or the synthetic fallback."""
    if calibration_images < 1:
        raise UserError(f"--calibration_images must be >= 1, got {calibration_images}.")
    if dataset is None and data_dir is None:
        logging.warning("No --data_dir: calibrating int8 and measuring parity on SYNTHETIC "
                        "images. The int8 model's accuracy on real images is unverified.")
        dataset = "synthetic"
    data = datasets.load(dataset or "cifar10", data_dir, seed=seed,
                         synthetic_sizes=(2000, 1000))
    real = dataset != "synthetic"
    where = f"{data.source}" if real else "synthetic data set (no real images given)"
    calibration = tflite.representative_images(data.train.images, calibration_images, seed)
    return EvalData(calibration=calibration, test_images=data.test.images,
                    test_labels=data.test.labels,
                    description=f"{dataset or 'cifar10'}: {where}; {len(calibration)} "
                                "training images for calibration, test split for parity",
                    real=real)
