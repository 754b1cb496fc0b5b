"""Running an exported .tflite classifier with what an edge device has (numpy, Pillow,
ai-edge-litert); never TensorFlow or Keras. The int8 model takes uint8 pixels (scale 1, zero
point 0), the others float32 on [0, 255]: TFLiteClassifier reads the input type from the
model, so callers pass uint8 pixels whatever the variant. LiteRT's default XNNPACK delegate
runs the operators it supports, its built-in kernels the others.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Sequence

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.deploy import contract
from keras_resnet_cifar.errors import UserError, first_line
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

# ResNet-1202 in float32 is ~78 MB as a .tflite file; its tensors at batch 256, a few 100 MB.
MAX_TFLITE_BYTES = 256 << 20
# What its tensors declare (summed over every tensor at the model's own batch): 2.5 MB for
# ResNet-20, 6.9 MB for ResNet-56 in float32, so about 150 MB for ResNet-1202. A file of
# kilobytes can declare gigabytes that LiteRT allocates on loading.
MAX_TFLITE_TENSOR_BYTES = 512 << 20


class TFLiteClassifier:
    """uint8 pixels -> class probabilities of a .tflite path or bytes. `xnnpack=False` runs
    LiteRT's built-in kernels only; `class_names` default to the card's, else CIFAR-10's."""

    def __init__(self, model: str | os.PathLike | bytes, *, num_threads: int = 1,
                 xnnpack: bool = True, class_names: Sequence[str] | None = None):
        from ai_edge_litert import interpreter as litert

        if num_threads < 1:
            raise UserError(f"num_threads must be >= 1, got {num_threads}.", argument="num_threads")
        resolver = (litert.OpResolverType.AUTO if xnnpack
                    else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        if isinstance(model, (bytes, bytearray)):
            source, what, card = {"model_content": bytes(model)}, "the given bytes", None
            check_tensors(source["model_content"], what)
        else:
            what = os.fspath(model)
            source = {"model_path": what}
            if not os.path.isfile(what):
                raise UserError(f"No TFLite model at {what}.")
            fileio.check_regular(what, follow_links=True)  # LiteRT maps the whole file
            contract.check_size(f"{what} holds", os.path.getsize(what), MAX_TFLITE_BYTES)
            check_tensors(fileio.read_bytes(what, max_bytes=MAX_TFLITE_BYTES,
                                            follow_links=True), what)
            # LiteRT runs a bit-flipped model silently ("cat 100%"): check the card's sha256.
            card = contract.read_card(what)
            contract.check_file(card, os.path.dirname(what) or ".", os.path.basename(what))
        try:
            self._interpreter = litert.Interpreter(
                **source, num_threads=num_threads, experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{what} is not a loadable TFLite model ({first_line(e)}).") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or tuple(inputs[0]["shape"][1:]) != (32, 32, 3):
            raise UserError(f"{what} is not a 32x32x3 image classifier with one input "
                            "and one output.")
        self._input, self._output, self._what, self._batch = inputs[0], outputs[0], what, None
        self.input_dtype = np.dtype(self._input["dtype"])
        # (scale, zero point) of the input; (0.0, 0) when it is not quantised.
        self.input_quantization = tuple(self._input["quantization"])
        self.num_classes = int(self._output["shape"][-1])
        if class_names is None:
            class_names = contract.class_names(card) or CIFAR10_CLASSES
        if len(class_names) != self.num_classes:
            raise UserError(f"{len(class_names)} class names for a model with "
                            f"{self.num_classes} outputs.")
        self.class_names = tuple(class_names)

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        if batch != 1 and self._input["shape_signature"][0] != -1:
            raise UserError("This TFLite model has a fixed batch size of "
                            f"{self._input['shape'][0]}.")
        try:
            self._interpreter.resize_tensor_input(self._input["index"], [batch, 32, 32, 3])
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise UserError(f"{self._what} cannot be prepared to run ({first_line(e)}): the "
                            "model file is damaged or not an image classifier.") from None
        self._batch = batch

    def _quantise(self, pixels: np.ndarray) -> np.ndarray:
        scale, zero_point = self.input_quantization
        if self.input_dtype == np.float32:
            return pixels.astype(np.float32)
        if scale == 1.0 and zero_point == 0 and self.input_dtype == np.uint8:
            return pixels.astype(np.uint8)
        info = np.iinfo(self.input_dtype)
        q = np.rint(pixels.astype(np.float32) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantise(self, values: np.ndarray) -> np.ndarray:
        if values.dtype == np.float32:
            return values
        scale, zero_point = self._output["quantization"]
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def predict(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 (N, classes) probabilities of uint8 (or [0, 255] float) pixels, in
        batches (the last one padded: the interpreter is resized at most once a call)."""
        pixels = np.asarray(pixels)
        n = len(pixels)
        batch = max(1, min(batch_size, n))
        out = np.empty((n, self.num_classes), np.float32)
        for start in range(0, n, batch):
            chunk = pixels[start:start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), 32, 32, 3),
                                                        chunk.dtype)])
            self._resize(batch)
            try:
                self._interpreter.set_tensor(self._input["index"], self._quantise(chunk))
                self._interpreter.invoke()
                result = self._interpreter.get_tensor(self._output["index"])
            except (RuntimeError, ValueError) as e:  # e.g. "Input tensor 21 lacks data"
                raise UserError(f"{self._what} failed to run ({first_line(e)}): the model "
                                "file is damaged or not an image classifier.") from None
            out[start:start + batch] = self._dequantise(result)[:n - start]
        return out


def check_tensors(data: bytes, what: str) -> None:
    """Refuses a model whose tensors declare too much, or whose buffers reach past its end,
    from its flatbuffer alone (nothing allocated)."""
    from ai_edge_litert import schema_py_generated as schema

    sizes = {value: np.dtype(name.lower()).itemsize if name.lower() in np.sctypeDict else 8
             for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    total = 0
    try:
        model = schema.Model.GetRootAs(data, 0)
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                shape = [tensor.Shape(i) for i in range(tensor.ShapeLength())]
                if any(n < 0 for n in shape):
                    raise UserError(f"{what} declares a tensor of shape {shape!s:.80}: not "
                                    "a loadable TFLite model.")
                total += math.prod(shape) * sizes.get(tensor.Type(), 8)
        reach = max((model.Buffers(b).Offset() + model.Buffers(b).Size()
                     for b in range(model.BuffersLength())), default=0)
    except (struct.error, IndexError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{what} is not a loadable TFLite model ({first_line(e)}).") from None
    contract.check_size(f"{what} declares tensors of", total, MAX_TFLITE_TENSOR_BYTES)
    if reach > len(data):
        raise UserError(f"{what} declares a buffer reaching byte {reach:,} of a "
                        f"{len(data):,}-byte file: not a loadable TFLite model.")
