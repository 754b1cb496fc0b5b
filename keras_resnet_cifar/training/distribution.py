"""Training under tf.distribute: the strategy, the chief, input sharding, and two
workarounds for Keras 3.15 under MultiWorkerMirroredStrategy (docs/multi-worker.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

from keras_resnet_cifar.errors import UserError


def make_strategy(distribute: str) -> tf.distribute.Strategy:
    """"auto": MirroredStrategy over several GPUs; "mirrored": over every GPU, or every
    logical CPU without one (how it is tested); "multi_worker": from TF_CONFIG. Call it
    before other TensorFlow work (MultiWorkerMirroredStrategy configures the runtime)."""
    if distribute == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("distribute=multi_worker without TF_CONFIG: training as a "
                            "single worker.")
        else:
            try:
                json.loads(os.environ["TF_CONFIG"])
            except ValueError:
                raise UserError("TF_CONFIG is not valid JSON; see "
                                "scripts/launch_multiworker.sh for its form.") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if distribute == "mirrored" or (distribute == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: the chief task, or worker 0 when
    the cluster has none (TensorFlow's rule)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if getattr(resolver, "task_type", None) is None:
        return True
    return _is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def is_chief_process(distribute: str) -> bool:
    """is_chief() from TF_CONFIG, without the strategy (for the commands' figures)."""
    if distribute != "multi_worker" or "TF_CONFIG" not in os.environ:
        return True
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
    except ValueError:
        return True  # make_strategy has refused it already
    task = tf_config.get("task") or {}
    return _is_chief_task(task.get("type"), int(task.get("index", 0)),
                          tf_config.get("cluster") or {})


def _is_chief_task(task_type: str | None, task_id: int, cluster: dict) -> bool:
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster)


def worker_dir(workdir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """`workdir` for the chief, else workertemp_<task id>/ below it, as the TensorFlow
    multi-worker guide recommends (so that all workers take the same resume decisions)."""
    return Path(workdir) if is_chief(strategy) else (
        Path(workdir) / f"workertemp_{strategy.cluster_resolver.task_id}")


def build_from_spec(model: keras.Model, strategy: tf.distribute.Strategy,
                     dataset: tf.data.Dataset) -> None:
    """Builds `model`'s compile state from `dataset`'s element spec: Keras 3.15's fit first
    pulls a batch (restarting the pipeline) and averages it across replicas, which fails
    under MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...)")."""
    if not (hasattr(model, "_maybe_symbolic_build") and hasattr(model, "_symbolic_build")):
        return  # another Keras: nothing to work around
    batch = tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype.name),
                                  dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def vector_logs(model: keras.Model) -> None:
    """Makes `model`'s train and test steps return 1-element vectors: under
    MultiWorkerMirroredStrategy Keras 3.15 reduces logs over axis 0, which fails on
    scalars (tensorflow/tensorflow#72388)."""
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_step(data, step=step):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v,
                step(data))

        setattr(model, name, vector_step)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shards by DATA: every worker builds the same pipeline and keeps its part, so one
    step's batches over all workers are the global batch one process would see."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
