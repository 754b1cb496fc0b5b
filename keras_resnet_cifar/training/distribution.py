"""Training under tf.distribute: the strategy, the chief, input sharding, Keras workarounds.

One process (``auto``: MirroredStrategy over several GPUs), one process over
many devices (``mirrored``) or several processes (``multi_worker``,
MultiWorkerMirroredStrategy driven by ``TF_CONFIG``; see docs/multi-worker.md).
Only the chief writes the run directory; every other worker keeps its own state
in ``workertemp_<task id>/`` below it (:func:`worker_dir`), as the TensorFlow
multi-worker guide recommends. :func:`build_from_spec` and :func:`vector_logs`
work around two failures of Keras 3.15 under MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

from keras_resnet_cifar.errors import UserError


def make_strategy(distribute: str) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy over the GPUs when there is more than one.

    ``mirrored`` forces MirroredStrategy over every GPU, or over every logical
    CPU device when there is no GPU (how it is tested on a CPU machine);
    ``multi_worker`` is MultiWorkerMirroredStrategy driven by ``TF_CONFIG``.
    Call it before any other TensorFlow work: MultiWorkerMirroredStrategy
    configures its collective ops when TensorFlow's runtime starts.

    Raises:
        UserError: ``TF_CONFIG`` is set but is not valid JSON.
    """
    if distribute == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("--distribute=multi_worker without TF_CONFIG: training as a "
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
    """Whether this process writes the run directory (TensorFlow's chief rule).

    The chief is the ``chief`` task, or worker 0 when the cluster has no ``chief``;
    a single-process run is always its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    return _is_chief_task(task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def is_chief_process(distribute: str) -> bool:
    """:func:`is_chief` before (or without) the strategy, from ``TF_CONFIG``.

    For the commands, which write the run directory's figures after training.
    """
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
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_dir(workdir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: ``workdir`` for the chief, else a per-worker folder."""
    if is_chief(strategy):
        return Path(workdir)
    return Path(workdir) / f"workertemp_{strategy.cluster_resolver.task_id}"


def build_from_spec(model: keras.Model, strategy: tf.distribute.Strategy,
                     dataset: tf.data.Dataset) -> None:
    """Builds the compile state of ``model`` from ``dataset``'s element spec.

    Under a tf.distribute strategy, Keras 3.15's ``fit``/``evaluate`` first pull a
    batch and average it across replicas only to learn the input shapes
    (``_maybe_symbolic_build`` of its TF trainer). MultiWorkerMirroredStrategy
    cannot average the (images, labels) tuple (fit fails with "Attempt to convert
    a value (PerReplica...)"), and the pulled batch restarts the pipeline, so the
    first epoch would see the data set's second shuffle. The same state is built
    here from the spec instead, and that step is skipped for this model.
    """
    if not (hasattr(model, "_maybe_symbolic_build") and hasattr(model, "_symbolic_build")):
        return  # another Keras: nothing to work around
    batch = tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype.name),
                                  dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def vector_logs(model: keras.Model) -> None:
    """Makes ``model``'s train and test steps return their logs as 1-element vectors.

    Under MultiWorkerMirroredStrategy, Keras 3.15 averages each replica's logs
    with ``strategy.reduce("MEAN", value, axis=0)``, which fails on the scalar
    loss and metrics ("Invalid reduction dimension 0 for input with 0
    dimensions", tensorflow/tensorflow#72388). A 1-element vector, averaged over
    that axis and across the replicas, comes out as the same scalar.
    """
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_step(data, step=step):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v,
                step(data))

        setattr(model, name, vector_step)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker input: every worker builds the same pipeline and keeps its part.

    With sharding by DATA, tf.distribute rebatches each global batch into
    per-replica batches and hands each worker its own, so the union over the
    workers of one step is exactly the global batch a single process would see
    (same shuffle, same crops). The in-memory source has no files to shard.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
