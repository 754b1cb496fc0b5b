"""Exports a trained classifier for TF Serving and for edge devices, with proof.

    python -m keras_resnet_cifar.export --model_dir=runs/resnet20 \
        --data_dir=~/data/cifar10 --export_dir=exports

writes, atomically, one new version in TF Serving's layout:

    exports/<name>/<version>/
        saved_model.pb, variables/, assets/, fingerprint.pb   the SavedModel (serving.py)
        model_float32.tflite, model_dynamic_range.tflite,
        model_int8.tflite                                     TFLite (tflite.py)
        model_card.json        class names, input contract, provenance, licence
        parity.json            agreement with the Keras model (parity.py)
        LICENSE.weights        when made from the reference weights

The version is built in a hidden temporary folder beside it (same filesystem)
and renamed into place at the end, so a TF Serving process polling
``exports/<name>/`` never sees a half-written version, and a failed or
interrupted export leaves nothing behind. (Only a SIGKILL mid-export can leave a
hidden ``.N.*.tmp`` folder, which TF Serving ignores: it is not a number.)

The model comes from a training run directory (``model.keras``, or
``checkpoints/{last,best}.keras`` with ``--checkpoint``), a bare ``.keras`` file,
or the reference PyTorch weights (``--reference_weights=resnetN.npz``).

Int8 calibration uses ``--calibration_images`` training images and the parity
report ``--parity_images`` test images of ``--dataset``/``--data_dir``. Without
any data the export still works but says so loudly: calibration and parity use
the synthetic data set, so the int8 model's accuracy on real images is unknown
and the report's accuracy column is not a CIFAR-10 figure.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from keras_resnet_cifar import (datasets, edge, fileio, import_weights, models, parity,
                                serving, tflite)
from keras_resnet_cifar.errors import UserError, run_cli
from keras_resnet_cifar.labels import CIFAR10_CLASSES

CHECKPOINTS = {"final": "model.keras", "last": "checkpoints/last.keras",
               "best": "checkpoints/best.keras"}
MODEL_CARD = "model_card.json"
PARITY = "parity.json"


@dataclasses.dataclass(frozen=True)
class Source:
    """A model to export and where it came from.

    Attributes:
        model: the Keras model (raw pixels in, probabilities out).
        provenance: what the model card records about the source: kind, path,
            sha256, and the run's config and metrics when there is a run.
        licence_note: a notice that must travel with the export, or None.
        licence_file: a licence file to copy into the export, or None.
    """

    model: keras.Model
    provenance: dict
    licence_note: str | None = None
    licence_file: str | None = None


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Images for int8 calibration and the parity report."""

    calibration: np.ndarray       # uint8 (N, 32, 32, 3), from the training split
    test_images: np.ndarray       # uint8 (M, 32, 32, 3)
    test_labels: np.ndarray       # int (M,)
    description: str              # where they came from, for the model card
    real: bool                    # False for the synthetic fallback


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_keras(path: Path):
    try:
        return keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a loadable .keras model ({reason}).") from None


def load_source(path: str | os.PathLike, *, checkpoint: str = "final") -> Source:
    """Loads a run directory's model (or a bare ``.keras`` file) for export.

    Args:
        path: a training run directory or a ``.keras`` file.
        checkpoint: in a run directory, ``"final"`` (``model.keras``),
            ``"last"`` or ``"best"`` (``checkpoints/<which>.keras``).

    Raises:
        UserError: nothing there, no model in the run directory, unknown
            checkpoint, or an unreadable model.
    """
    path = Path(path)
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"Unknown checkpoint {checkpoint!r}: expected one of "
                        f"{', '.join(CHECKPOINTS)}.")
    if path.is_file():
        if path.suffix != ".keras":
            raise UserError(f"{path} is not a .keras file or a run directory.")
        return _with_licence(Source(_load_keras(path), {
            "kind": "keras_file", "path": str(path.resolve()), "sha256": _sha256(path)}))
    if not path.is_dir():
        raise UserError(f"No run directory or .keras file at {path}.")
    file = path / CHECKPOINTS[checkpoint]
    if not file.is_file():
        raise UserError(f"{path} has no {CHECKPOINTS[checkpoint]}: not a finished training "
                        "run (use --checkpoint=last for an unfinished one).")
    provenance = {"kind": "run_dir", "path": str(path.resolve()),
                  "model_file": CHECKPOINTS[checkpoint], "sha256": _sha256(file),
                  "config": fileio.read_json(path / "config.json"),
                  "metrics": fileio.read_json(path / "metrics.json")}
    return _with_licence(Source(_load_keras(file), provenance))


def _with_licence(source: Source) -> Source:
    """Adds the reference weights' licence note to a model that looks made from them.

    ``import_weights`` writes ``.keras`` files whose ``normalize`` layer holds the
    reference's ImageNet statistics, which this package's training never uses;
    such a model carries the weights' licence obligation into its exports.
    """
    stats = _normalisation(source.model)
    if stats and np.allclose(stats["mean"], models.IMAGENET_MEAN, atol=1e-3) and \
            np.allclose(stats["std"], models.IMAGENET_STD, atol=1e-3):
        logging.warning("The model uses the reference weights' ImageNet normalisation: "
                        "recording their licence note in the model card.")
        return dataclasses.replace(source, licence_note=import_weights.LICENSE_NOTE)
    return source


def load_reference(npz_path: str | os.PathLike) -> Source:
    """Builds the reference ResNet from PyTorch weights (``resnetN.npz``) for export.

    The weights' licence note goes into the model card, and their
    ``LICENSE.weights`` (beside the ``.npz``) into the export.
    """
    model = import_weights.reference_model(import_weights.load_state_dict(npz_path))
    licence = Path(npz_path).with_name("LICENSE.weights")
    return Source(model, {"kind": "reference_weights", "path": str(Path(npz_path).resolve()),
                          "sha256": _sha256(npz_path)},
                  licence_note=import_weights.LICENSE_NOTE,
                  licence_file=str(licence) if licence.is_file() else None)


def next_version(model_root: str | os.PathLike) -> int:
    """1 + the largest numeric version folder under ``model_root`` (1 if none)."""
    root = Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    return max(versions, default=0) + 1


def _normalisation(model) -> dict | None:
    try:
        layer = model.get_layer("normalize")
    except ValueError:
        return None
    mean = np.asarray(layer.mean, np.float64).ravel()
    std = np.sqrt(np.asarray(layer.variance, np.float64).ravel())
    return {"mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std],
            "scale": "pixels on [0, 255]"}


def model_card(source: Source, *, name: str, version: int, class_names: Sequence[str],
               tflite_files: dict, data: EvalData, parity_report: dict | None) -> dict:
    """What travels with the export: contract, provenance and headline figures."""
    model = source.model
    metrics = source.provenance.get("metrics") or {}
    keras_row = (parity_report or {}).get("variants", {}).get("keras", {})
    return {
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": model.name,
        "params_trainable": models.count_trainable_params(model),
        "params_total": int(model.count_params()),
        "class_names": list(class_names),
        "input": {"name": serving.INPUT_KEY, "shape": [None, 32, 32, 3],
                  "pixels": "raw RGB, [0, 255]; the model normalises them itself",
                  "normalisation": _normalisation(model)},
        "signatures": {
            serving.DEFAULT_SIGNATURE: "image uint8 (None, 32, 32, 3)",
            serving.FLOAT_SIGNATURE: "image float32 (None, 32, 32, 3) on [0, 255]",
            "outputs": "probabilities float32 (None, C), class_id int64 (None,), "
                       "class_name string (None,)"},
        "tflite": tflite_files,
        "calibration_data": data.description if "int8" in tflite_files else None,
        "source": source.provenance,
        # What the training run measured (and on which set), if it was a run.
        "test_accuracy": metrics.get("test_accuracy"),
        "test_accuracy_eval_set": metrics.get("eval_set", "test" if metrics else None),
        # What the export measured itself on the parity images.
        "parity_accuracy": keras_row.get("accuracy"),
        "parity_data": data.description if parity_report else None,
        "licence": source.licence_note,
        "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def _tflite_info(variant: str, blob: bytes) -> dict:
    runner = edge.TFLiteClassifier(blob)
    scale, zero_point = runner.input_quantization
    info = {"file": tflite.file_name(variant), "bytes": len(blob),
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
    model = source.model
    images, labels = data.test_images, data.test_labels
    keras_predict = lambda x: model.predict(x.astype(np.float32), batch_size=256, verbose=0)
    keras_one = lambda x: model.predict_on_batch(x.astype(np.float32))
    reference = keras_predict(images)
    saved = serving.load_classifier(folder)
    variants = {
        "keras": {"predict": lambda x: reference, "predict_one": keras_one},
        "saved_model": {"predict": saved, "predict_one": saved,
                        "size_bytes": _folder_size(folder)},
    }
    for variant, blob in blobs.items():
        runner = edge.TFLiteClassifier(folder / tflite.file_name(variant), num_threads=1)
        variants[f"tflite_{variant}"] = {"predict": runner.predict, "predict_one": runner.predict,
                                         "size_bytes": len(blob),
                                         "file": tflite.file_name(variant)}
    report = parity.report(reference, variants, images, labels if data.real else None,
                           latency_runs=latency_runs)
    report["data"] = data.description
    report["latency_threads"] = 1
    return report


def _folder_size(folder: Path) -> int:
    """Bytes of the SavedModel files (not the TFLite models or reports beside them)."""
    files = [folder / "saved_model.pb", *(folder / "variables").rglob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def export(source: Source, export_dir: str | os.PathLike, *, name: str,
           data: EvalData, version: int | None = None,
           class_names: Sequence[str] = CIFAR10_CLASSES,
           variants: Sequence[str] = tflite.VARIANTS, parity_images: int = 10000,
           latency_runs: int = 100) -> tuple[Path, dict]:
    """Writes ``export_dir/name/version/`` (see the module docstring), atomically.

    Args:
        source: the model and its provenance.
        export_dir: the folder TF Serving's ``--model_base_path`` parent is.
        name: the model name (TF Serving's MODEL_NAME).
        data: calibration and parity images.
        version: the version number; None takes the next free one.
        class_names: names of the model's outputs, in order.
        variants: TFLite variants to write (any of ``tflite.VARIANTS``).
        parity_images: how many test images the parity report uses (0: none).
        latency_runs: timed batch-1 calls per variant in the report.

    Returns:
        (the version folder, its model card).

    Raises:
        UserError: the version exists, the place is not writable, bad name,
            version or variants.
    """
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise UserError(f"Bad model name {name!r}: it must be one folder name.")
    unknown = [v for v in variants if v not in tflite.VARIANTS]
    if unknown:
        raise UserError(f"Unknown TFLite variant {unknown[0]!r}: expected some of "
                        f"{', '.join(tflite.VARIANTS)}.")
    model_root = Path(export_dir) / name
    try:
        model_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create {model_root}: {e.strerror or e}.") from None
    if not os.access(model_root, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write to {model_root}.")
    if version is None:
        version = next_version(model_root)
    if version < 1:
        raise UserError(f"Versions are positive integers; got {version}.")
    final = model_root / str(version)
    if final.exists():
        raise UserError(f"{final} already exists: versions are never overwritten "
                        "(omit --version to take the next free one).")

    with fileio.atomic_path(final, is_dir=True) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving container must read it
        logging.info("Writing the SavedModel to %s", tmp)
        serving.save(source.model, tmp, class_names)
        blobs = {}
        for variant in variants:
            logging.info("Converting to TFLite (%s)", variant)
            blobs[variant] = tflite.convert(source.model, variant, data.calibration)
            (tmp / tflite.file_name(variant)).write_bytes(blobs[variant])
        files = {v: _tflite_info(v, b) for v, b in blobs.items()}
        report = None
        if parity_images:
            sub = dataclasses.replace(data, test_images=data.test_images[:parity_images],
                                      test_labels=data.test_labels[:parity_images])
            report = _parity(source, tmp, blobs, sub, latency_runs)
            (tmp / PARITY).write_text(json.dumps(report, indent=2) + "\n")
        card = model_card(source, name=name, version=version, class_names=class_names,
                          tflite_files=files, data=data, parity_report=report)
        (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2) + "\n")
        if source.licence_file:
            shutil.copyfile(source.licence_file, tmp / "LICENSE.weights")
        if final.exists():  # another exporter took this version meanwhile
            raise UserError(f"{final} appeared during the export; nothing was written.")
    return final, card


def eval_data(dataset: str | None, data_dir: str | None, *, calibration_images: int,
              seed: int = 0) -> EvalData:
    """Calibration and parity images from a data set, or the synthetic fallback."""
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


# --- Command line -----------------------------------------------------------------

def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Training run directory, or a .keras file.")
    flags.DEFINE_string("reference_weights", None,
                        "Export the reference ResNet built from these resnetN.npz weights "
                        "instead of --model_dir.")
    flags.DEFINE_enum("checkpoint", "final", list(CHECKPOINTS),
                      "In a run directory: final (model.keras), last or best checkpoint.")
    flags.DEFINE_string("export_dir", "exports", "Where exports/<name>/<version>/ go.")
    flags.DEFINE_string("name", None, "Model name (TF Serving MODEL_NAME); default: the "
                        "architecture, e.g. resnet20.")
    flags.DEFINE_integer("version", None, "Version number; default: the next free one.")
    flags.DEFINE_string("dataset", None, "cifar10 or synthetic, for calibration and "
                        "parity; default: cifar10 when --data_dir is given, else synthetic.")
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 copy (any official layout).")
    flags.DEFINE_list("tflite", list(tflite.VARIANTS), "TFLite variants to write.")
    flags.DEFINE_integer("calibration_images", 500, "Training images for int8 calibration.")
    flags.DEFINE_integer("parity_images", 10000, "Test images for the parity report (0: none).")
    flags.DEFINE_integer("latency_runs", 100, "Timed batch-1 calls per variant.")


def main(argv):
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    FLAGS = flags.FLAGS
    if bool(FLAGS.model_dir) == bool(FLAGS.reference_weights):
        raise UserError("Give exactly one of --model_dir (run directory or .keras file) "
                        "and --reference_weights.")
    source = (load_reference(FLAGS.reference_weights) if FLAGS.reference_weights
              else load_source(FLAGS.model_dir, checkpoint=FLAGS.checkpoint))
    data = eval_data(FLAGS.dataset, FLAGS.data_dir,
                     calibration_images=FLAGS.calibration_images)
    name = FLAGS.name or source.model.name
    folder, card = export(source, FLAGS.export_dir, name=name, data=data,
                          version=FLAGS.version, variants=FLAGS.tflite,
                          parity_images=FLAGS.parity_images, latency_runs=FLAGS.latency_runs)
    if FLAGS.parity_images:
        print(parity.format_table(json.loads((folder / PARITY).read_text())))
    if card["licence"]:
        print(card["licence"])
    print(f"exported {card['architecture']} ({card['params_trainable']:,} parameters) "
          f"to {folder}")


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
