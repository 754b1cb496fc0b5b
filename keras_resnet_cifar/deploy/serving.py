"""The SavedModel that TF Serving loads: contract.py's two signatures over raw pixels, one set
of outputs (exports/README.md). The model's own `normalize` layer normalises: clients send
pixels, serving needs nothing of this package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_resnet_cifar.deploy.contract import (DEFAULT_SIGNATURE, FLOAT_SIGNATURE, IMAGE_SHAPE,
                                                INPUT_KEY, OUTPUT_KEYS, SAVED_MODEL_GRAPH)
from keras_resnet_cifar.errors import UserError, first_line


def save(model: keras.Model, path: str | os.PathLike, class_names: Sequence[str]) -> None:
    if tuple(model.input_shape) != IMAGE_SHAPE:
        raise UserError(f"The model takes {model.input_shape}, not {IMAGE_SHAPE} images.")
    if model.output_shape[-1] != len(class_names):
        raise UserError(f"The model has {model.output_shape[-1]} outputs but "
                        f"{len(class_names)} class names were given.")
    names = tf.constant(list(class_names), tf.string)

    def classify(image):  # the argument's name is the signatures' input key
        probabilities = tf.cast(model(image, training=False), tf.float32)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return dict(zip(OUTPUT_KEYS, (probabilities, class_id, tf.gather(names, class_id))))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also what ExportArchive aliases as serving_default.
    archive.add_endpoint(DEFAULT_SIGNATURE, lambda image: classify(tf.cast(image, tf.float32)),
                         input_signature=[tf.TensorSpec(IMAGE_SHAPE, tf.uint8, name=INPUT_KEY)])
    archive.add_endpoint(FLOAT_SIGNATURE, classify, input_signature=[
        tf.TensorSpec(IMAGE_SHAPE, tf.float32, name=INPUT_KEY)])
    archive.write_out(os.fspath(path), verbose=False)


class SavedModelClassifier:
    """An exported SavedModel: uint8 pixels -> probabilities, through serving_default."""

    def __init__(self, path: str | os.PathLike):
        try:
            self._loaded = tf.saved_model.load(os.fspath(path))
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise UserError(f"{path} is not a loadable SavedModel ({first_line(e)}).") from None
        self._signature = self._loaded.signatures.get(DEFAULT_SIGNATURE)
        if (self._signature is None
                or INPUT_KEY not in self._signature.structured_input_signature[1]):
            raise UserError(f"{path} has no {DEFAULT_SIGNATURE} signature taking "
                            f"{INPUT_KEY!r}: not exported by keras_resnet_cifar.export.")

    def predict(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        pixels = np.asarray(pixels, np.uint8)
        parts = [self._signature(image=tf.constant(pixels[i:i + batch_size]))
                 [OUTPUT_KEYS[0]].numpy() for i in range(0, len(pixels), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    __call__ = predict


load_classifier = SavedModelClassifier


def signature_names(path: str | os.PathLike) -> list[str]:
    """The SavedModel's signature names, from saved_model.pb alone (nothing loaded or run)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((Path(path) / SAVED_MODEL_GRAPH).read_bytes())
    except (OSError, ValueError) as e:  # DecodeError is a ValueError
        raise UserError(f"{path} is not a loadable SavedModel ({first_line(e)}).") from None
    return sorted({name for graph in proto.meta_graphs for name in graph.signature_def})
