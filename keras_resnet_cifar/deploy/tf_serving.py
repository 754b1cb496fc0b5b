"""The files TF Serving reads besides the SavedModel: warm-up requests, model config and
batching parameters. TF Serving replays a version's warm-up PredictionLogs before serving
it, so the first requests do not pay for graph initialisation: one per batch size the
batcher pads to. BatchingParameters' proto is not in tensorflow-serving-api's wheel, so its
text format is written field by field.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from keras_resnet_cifar.deploy import contract, grpc_client
from keras_resnet_cifar.errors import UserError

# The batch sizes the batcher pads to (the last must be max_batch_size) and warm-up prepares.
BATCH_SIZES = (1, 8, 32, 128)
MODEL_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"


def write_warmup(folder: str | os.PathLike, model_name: str, images: np.ndarray,
                 batch_sizes: Sequence[int] = BATCH_SIZES) -> str:
    """Writes the warm-up TFRecord file in `folder`, one PredictionLog per batch size (of
    `images` repeated); its relative path."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2  # the optional extra

    images = np.asarray(images, np.uint8)
    if len(images) == 0:
        raise UserError("No images to build the warm-up requests from.")
    logs = [prediction_log_pb2.PredictionLog() for _ in batch_sizes]
    for log, size in zip(logs, batch_sizes):
        log.predict_log.request.CopyFrom(grpc_client.build_request(
            model_name, images[np.arange(size) % len(images)],
            signature=contract.DEFAULT_SIGNATURE))
    path = os.path.join(os.fspath(folder), contract.WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return contract.WARMUP_FILE


def versions(model_root: str | os.PathLike) -> list[int]:
    root = os.fspath(model_root)
    return sorted(int(p) for p in os.listdir(root) if p.isdigit()
                  and os.path.isdir(os.path.join(root, p))) if os.path.isdir(root) else []


def model_config(name: str, base_path: str, available: Sequence[int], *,
                 stable: int | None = None, canary: int | None = None) -> str:
    """A ModelServerConfig in text format serving the `stable` version (default: the
    highest) and the `canary` one by label (/v1/models/<name>/labels/stable)."""
    from google.protobuf import text_format
    try:
        from tensorflow_serving.config import model_server_config_pb2  # the optional extra
    except ImportError:
        raise UserError(grpc_client.MISSING) from None

    if not available:
        raise UserError(f"No numbered version folder to serve for {name}: export one first.")
    stable = max(available) if stable is None else stable
    labels = {"stable": stable, **({} if canary is None else {"canary": canary})}
    for label, version in labels.items():
        if version not in available:
            raise UserError(f"The {label} version {version} is not among the exported "
                            f"versions of {name} ({', '.join(map(str, available))}).")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=name, base_path=base_path,
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    for label, version in labels.items():
        model.version_labels[label] = version
    return text_format.MessageToString(config)


def batching_parameters(*, max_batch_size: int = BATCH_SIZES[-1],
                        batch_timeout_micros: int = 1000, num_batch_threads: int | None = None,
                        max_enqueued_batches: int = 100) -> str:
    """BatchingParameters in text format. `num_batch_threads` defaults to this machine's
    CPUs (TF Serving's advice: the serving machine's cores)."""
    values = {"max_batch_size": max_batch_size, "batch_timeout_micros": batch_timeout_micros,
              "max_enqueued_batches": max_enqueued_batches,
              "num_batch_threads": num_batch_threads or os.cpu_count() or 1}
    for what, value in values.items():
        least = 0 if what == "batch_timeout_micros" else 1
        if value < least:
            raise UserError(f"{what} must be >= {least}, got {value}.", argument=what)
    # Allowed sizes must increase and end at max_batch_size.
    allowed = [s for s in BATCH_SIZES if s < max_batch_size] + [max_batch_size]
    return "".join([*(f"{what} {{ value: {value} }}\n" for what, value in values.items()),
                    *(f"allowed_batch_sizes: {s}\n" for s in allowed),
                    "pad_variable_length_inputs: false\n"])
