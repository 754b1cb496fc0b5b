"""Exports a classifier for TF Serving and edge devices, with proof: one new version, in TF
Serving's layout (exports/README.md lists its files), built in a hidden folder beside it and
renamed into place, so a TF Serving process polling `<out>/<name>/` never sees half of one
and a failed export leaves nothing. One export per model name runs at a time (an flock,
`.export.lock`); the next export removes the hidden folder a killed one left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from absl import logging

from keras_resnet_cifar import fileio
# None of these imports TensorFlow (serving and tflite do): the checks answer before it loads.
from keras_resnet_cifar.deploy import (contract, edge, grpc_client, model_card, parity, seal,
                                       sources, tf_serving)
from keras_resnet_cifar.deploy.sources import EvalData, Source
from keras_resnet_cifar.errors import UserError, plural
from keras_resnet_cifar.models.reference_weights import LICENCE_FILE

LOCK = ".export.lock"
MAX_VERSION = 2**63 - 1  # TF Serving reads a version folder's name as an int64
# The SavedModel's own files, which a SavedModel source contributes to an export.
SAVED_MODEL_FILES = (contract.SAVED_MODEL_GRAPH, "fingerprint.pb", "variables", "assets")


def next_version(model_root: str | os.PathLike) -> int:
    return max(tf_serving.versions(model_root), default=0) + 1


def _tflite_info(variant: str, blob: bytes) -> dict:
    from keras_resnet_cifar.deploy import tflite

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


def _write_warmup(folder: Path, name: str, data: EvalData) -> dict | None:
    """The card's record of the warm-up requests it writes (None without the serving extra)."""
    try:
        grpc_client.apis()
    except UserError as missing:
        logging.warning("No TF Serving warm-up file: %s", missing)
        return None
    images = data.test_images if len(data.test_images) else data.calibration
    return {"file": tf_serving.write_warmup(folder, name, images),
            "signature": contract.DEFAULT_SIGNATURE,
            "batch_sizes": list(tf_serving.BATCH_SIZES), "images": data.description}


def _parity(source: Source, folder: Path, blobs: dict[str, bytes], data: EvalData,
            latency_runs: int) -> dict:
    images, labels = data.test_images, data.test_labels
    logging.info("Parity: the source model on %s", plural(len(images), "image"))
    reference = source.model.predict(images)
    keras_model = source.keras_model
    one = (source.model.predict if keras_model is None
           else lambda x: keras_model.predict_on_batch(x.astype(np.float32)))
    variants = {source.model.kind: {"predict": lambda x: reference, "predict_one": one}}
    files = [folder / contract.SAVED_MODEL_GRAPH, *(folder / "variables").rglob("*")]
    saved_size = sum(f.stat().st_size for f in files if f.is_file())  # the SavedModel's bytes
    if keras_model is not None:  # the SavedModel was made here: measure it too
        from keras_resnet_cifar.deploy import serving

        saved = serving.load_classifier(folder)
        variants["saved_model"] = {"predict": saved, "predict_one": saved, "size_bytes": saved_size}
    else:  # the SavedModel is the source, copied unchanged
        variants[source.model.kind]["size_bytes"] = saved_size
    for variant, blob in blobs.items():
        file = contract.tflite_file(variant)
        runner = edge.TFLiteClassifier(folder / file, num_threads=1)
        variants[f"tflite_{variant}"] = {"predict": runner.predict, "predict_one": runner.predict,
                                         "size_bytes": len(blob), "file": file}
    report = parity.report(reference, variants, images, labels if data.real else None,
                           latency_runs=latency_runs, progress=lambda name: logging.info(
                               "Parity: %s on %s, %s", name, plural(len(images), "image"),
                               plural(latency_runs, "timed batch-1 call")))
    return {**report, "reference": source.model.kind, "data": data.description,
            "latency_threads": 1}


@contextlib.contextmanager
def _export_lock(model_root: Path) -> Iterator[None]:
    """Holds `model_root/.export.lock`; stale folders of killed exports are removed only
    under it, where no live export owns one."""
    busy = f"Another export to {model_root} is running; try again when it has finished."
    with fileio.exclusive_lock(model_root / LOCK, lambda pid: busy) as locked:
        for tmp in model_root.glob(".*.tmp") if locked else ():
            if tmp.is_dir() and tmp.name.split(".")[1].isdigit():
                logging.info("Removing %s, left by an export that was killed.", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        yield


@dataclasses.dataclass(frozen=True)
class Exported:
    folder: Path
    card: dict
    parity: dict | None  # None when no parity images were used


def check_options(*, variants: Sequence[str] = contract.TFLITE_VARIANTS,
                  parity_images: int = 0, latency_runs: int = 0, version: int | None = None,
                  calibration_images: int = 1) -> None:
    """Checks an export's options without TensorFlow. The export runs every .tflite model it
    writes (int8 input quantisation, parity) as an edge device does: variants need LiteRT."""
    for name, value, least in (("calibration_images", calibration_images, 1),
                               ("parity_images", parity_images, 0),
                               ("latency_runs", latency_runs, 0)):
        if value < least:
            raise UserError(f"{name} must be >= {least}, got {value}.", argument=name)
    if version is not None and not 1 <= version <= MAX_VERSION:
        raise UserError(f"version must be an integer in [1, {MAX_VERSION}] (TF Serving's "
                        f"int64 versions), got {version}.", argument="version")
    if unknown := [v for v in variants if v not in contract.TFLITE_VARIANTS]:
        raise UserError(f"variants must be some of {', '.join(contract.TFLITE_VARIANTS)}, "
                        f"got {unknown[0]!r}.", argument="variants")
    if variants:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            raise UserError("export runs the TFLite models it writes on the LiteRT runtime, "
                            "which is not installed here: pip install ai-edge-litert (or "
                            "give no variants to write the SavedModel only).",
                            argument="variants") from None


def export(source: Source, export_dir: str | os.PathLike, *, data: EvalData,
           name: str | None = None, version: int | None = None,
           class_names: Sequence[str] | None = None,
           variants: Sequence[str] = contract.TFLITE_VARIANTS, parity_images: int = 10000,
           latency_runs: int = 100) -> Exported:
    """Writes `export_dir/name/version/` atomically (default: sources.default_name, the next
    free version); parity compares every variant with the source on `parity_images`."""
    check_options(variants=variants, parity_images=parity_images,
                  latency_runs=latency_runs, version=version)
    name = sources.default_name(source) if name is None else name
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise UserError(f"name must be one folder name, got {name!r}.", argument="name")
    class_names = tuple(class_names or source.model.class_names)
    model_root = Path(export_dir) / name
    fileio.make_dir(model_root)
    if not os.access(model_root, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write to {model_root}.")
    with _export_lock(model_root):
        version = next_version(model_root) if version is None else version
        final = model_root / str(version)
        if final.exists():
            raise UserError(f"{final} already exists: versions are never overwritten "
                            "(give no version to take the next free one).", argument="version")
        with fileio.atomic_path(final, is_dir=True) as tmp:
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving container must read it
            card, report = _write_version(
                source, tmp, name=name, version=version, class_names=class_names, data=data,
                variants=variants, parity_images=parity_images, latency_runs=latency_runs)
            if final.exists():  # something else made this version meanwhile
                raise UserError(f"{final} appeared during the export; nothing was written.")
    return Exported(final, card, report)


def _write_version(source: Source, tmp: Path, *, name: str, version: int,
                   class_names: Sequence[str], data: EvalData, variants: Sequence[str],
                   parity_images: int, latency_runs: int) -> tuple[dict, dict | None]:
    from keras_resnet_cifar.deploy import serving, tflite  # TensorFlow loads here

    if source.keras_model is not None:
        logging.info("Writing the SavedModel")
        serving.save(source.keras_model, tmp, class_names)
    else:
        logging.info("Copying the SavedModel %s", source.model.path)
        for item in SAVED_MODEL_FILES:
            _copy_without_links(source.model.path / item, tmp / item)
    warmup = _write_warmup(tmp, name, data)
    convertible = source.keras_model if source.keras_model is not None else source.model.path
    blobs = {}
    for variant in variants:
        logging.info("Converting to TFLite (%s)", variant)
        # The converter's scratch folder is inside tmp: an interrupted export's goes with it.
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
        shutil.copyfile(source.licence_file, tmp / LICENCE_FILE)
    hashes = contract.file_hashes(tmp)
    card = model_card.build(source.model, source.provenance, licence=source.licence_note,
                            name=name, version=version, class_names=class_names,
                            tflite_files=files, data_description=data.description,
                            parity_report=report, warmup=warmup, files=hashes)
    # This machine's seal of these bytes (seal.py): loaded without trust_savedmodel, here only.
    card[seal.SEAL] = seal.seal(card, hashes)
    fileio.write_json(tmp / contract.MODEL_CARD, card)
    return card, report


def _copy_without_links(origin: Path, target: Path) -> None:
    """Copies a SavedModel's file or folder (if present), refusing a link or special file in
    it: an export never carries a file from outside the model (an `assets/` link)."""
    if not os.path.lexists(origin):
        return
    if not origin.is_dir() or origin.is_symlink():
        fileio.check_not_link(origin)  # a link or a FIFO is refused, a file is copied
        with fileio.open_regular(origin) as f, open(target, "wb") as out:
            shutil.copyfileobj(f, out)
        return
    target.mkdir()
    for entry in sorted(origin.iterdir()):
        _copy_without_links(entry, target / entry.name)
