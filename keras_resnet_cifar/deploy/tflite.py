"""TFLite conversion: a Keras classifier over raw pixels -> .tflite bytes, built-in ops only
(no Flex), the model's `normalize` layer inside the graph; the variants are exports/README.md's
(float16 computes in float16 on GPU delegates only: a CPU dequantises its weights). As Keras'
own LiteRT export: an ExportArchive SavedModel, then from_saved_model; a SavedModel of this
exporter converts through its serving_float32 signature.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_resnet_cifar.deploy import contract
from keras_resnet_cifar.errors import UserError

VARIANTS = contract.TFLITE_VARIANTS
_ENDPOINT = "serve"


def _saved_model(model: keras.Model | str | os.PathLike, folder: str) -> None:
    spec = tf.TensorSpec((None, 32, 32, 3), tf.float32, name=contract.INPUT_KEY)
    if not isinstance(model, keras.Model):  # an exported SavedModel
        module = tf.Module()
        module.loaded = tf.saved_model.load(os.fspath(model))
        signature = module.loaded.signatures.get(contract.FLOAT_SIGNATURE)
        if signature is None:
            raise UserError(f"{model} has no {contract.FLOAT_SIGNATURE} signature to convert "
                            "to TFLite: not a SavedModel of keras_resnet_cifar.export.")
        module.serve = tf.function(
            lambda image: {"probabilities": signature(image=image)["probabilities"]},
            input_signature=[spec])
        tf.saved_model.save(module, folder, signatures={_ENDPOINT: module.serve})
        return
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(_ENDPOINT, lambda image: {"probabilities": model(image, training=False)},
                         input_signature=[spec])
    archive.write_out(folder, verbose=False)


def representative_images(images: np.ndarray, count: int = 500, seed: int = 0) -> np.ndarray:
    if len(images) == 0:
        raise UserError("No images to calibrate the int8 model on.")
    rng = np.random.default_rng(seed)
    return images[np.sort(rng.choice(len(images), min(count, len(images)), replace=False))]


def convert(model: keras.Model | str | os.PathLike, variant: str,
            calibration: np.ndarray | None = None, *,
            workdir: str | os.PathLike | None = None) -> bytes:
    """The .tflite flatbuffer of a Keras model or a SavedModel of serving.save. int8
    `calibration` images should hold pixels of 0 and 255, so that the uint8 input is the
    identity on raw pixels; the scratch folder goes in `workdir`."""
    if variant not in VARIANTS:
        raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}.",
                        argument="variant")
    if variant == "int8" and (calibration is None or len(calibration) == 0):
        raise UserError("The int8 TFLite model needs calibration images.")
    with tempfile.TemporaryDirectory(prefix="krc_tflite_", dir=workdir) as folder:
        _saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [_ENDPOINT])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant in ("float16", "dynamic_range", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if variant == "int8":
            converter.representative_dataset = lambda: (
                [image[None].astype(np.float32)] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32
        return converter.convert()


def ops_used(tflite_bytes: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_bytes, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    builtin = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    return sorted({c.customCode.decode() if c.customCode else names.get(b, str(b))
                   for c, b in zip(m.operatorCodes, builtin)})
