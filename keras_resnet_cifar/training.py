"""Training library: ``train_and_evaluate(config, workdir)`` with ``model.fit``.

A run directory holds everything a run produces:

    config.json            the resolved TrainConfig
    history.csv/.json      one row per epoch: epoch (1-based), loss (cross-entropy plus
                           the weight-decay term), cross_entropy and accuracy (training,
                           on augmented batches, running means over the epoch),
                           val_loss, val_cross_entropy, val_accuracy (on the eval set:
                           "test" by default, "validation" with --validation_split),
                           learning_rate, epoch_time_s, images_per_sec
    metrics.json           final test accuracy/loss, best epoch and the set it was
                           chosen on, parameter counts, wall time, images/s, versions
    model.keras            the final model
    checkpoints/last.keras, checkpoints/best.keras (best val_accuracy on the eval set)
    backup/                BackupAndRestore state, for resuming an interrupted run
    tensorboard/           TensorBoard logs

Every file is written atomically (temporary file, then rename).

With ``--distribute=multi_worker`` only the chief writes the run directory; every
other worker keeps its own state (history, metrics, BackupAndRestore) in
``workertemp_<task id>/`` below it, as the TensorFlow multi-worker guide
recommends, so that all workers take the same resume decisions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import types
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet_cifar import datasets, environment, fileio, input_pipeline, models
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.optimizer import ReferenceSGD, learning_rate_schedule
from keras_resnet_cifar.errors import UserError

# "loss" is what SGD minimises: cross-entropy plus the L2 weight-decay term. In a
# deep plain net the kernels' norms grow fast early on (BN makes the loss blind to
# their scale, and every large gradient step lengthens them), so that term can
# dominate "loss"; "cross_entropy" is the data term alone, for curves and tables.
HISTORY_FIELDS = ("epoch", "loss", "cross_entropy", "accuracy", "val_loss",
                  "val_cross_entropy", "val_accuracy", "learning_rate", "epoch_time_s",
                  "images_per_sec")


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
    if task_type is None or task_type == "chief":
        return True
    return (task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def worker_dir(workdir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: ``workdir`` for the chief, else a per-worker folder."""
    if is_chief(strategy):
        return Path(workdir)
    return Path(workdir) / f"workertemp_{strategy.cluster_resolver.task_id}"


def build_and_compile(config: TrainConfig, replicas: int = 1) -> keras.Model:
    """The model of ``config``, compiled with the reference SGD (call inside a strategy scope).

    With several replicas, BatchNormalization synchronises its batch statistics
    across them: a step normalises over the whole global batch, as one device
    would, and every replica keeps the same moving averages (Keras 3 does not
    aggregate per-replica moving statistics, which would otherwise drift apart and
    make evaluation under the strategy disagree with the saved model). Synchronised
    layers take Keras' own (unfused) path.

    Sets Keras' global dtype policy to ``config.mixed_precision``. Under a mixed
    policy the BatchNormalization layers compute and output float32 (as does the
    softmax, by construction). In training, each BatchNormalization layer runs as
    one fused TensorFlow kernel (see :func:`fuse_batch_norm`).
    """
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    model = models.build_model(config.model, shortcut=config.shortcut,
                               weight_decay=config.weight_decay,
                               weight_decay_scope=config.weight_decay_scope,
                               sync_batchnorm=replicas > 1)
    if config.mixed_precision != "float32":
        model = _float32_batch_norm(model)
    fuse_batch_norm(model)
    # SGD with heavy-ball momentum exactly as torch.optim.SGD: v = m v + g, w -= lr v
    # (Keras' SGD keeps lr inside the velocity and parts from it at lr changes; see
    # optimizer.py). Weight decay is the models' L2 term (gradient lambda * w,
    # through momentum), not Keras' decoupled SGD(weight_decay=...).
    optimizer = ReferenceSGD(learning_rate=learning_rate_at(0, config),
                             momentum=config.momentum)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
                  jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    return model


def _float32_batch_norm(model: keras.Model) -> keras.Model:
    """The same model (same weights) with its BatchNormalization layers in float32."""

    def clone_layer(layer):
        layer_config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer_config["dtype"] = "float32"
        return layer.__class__.from_config(layer_config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def fuse_batch_norm(model: keras.Model) -> int:
    """Makes the training-mode BatchNormalization of ``model`` one fused TF kernel each.

    Keras 3.15's BatchNormalization on TensorFlow computes ``tf.nn.moments`` and
    ``tf.nn.batch_normalization``: about ten small element-wise kernels forward
    and twenty backward per layer, each a pass over the activations. Here the same
    arithmetic (batch mean, biased batch variance, epsilon, gamma, beta) runs as
    ``FusedBatchNormV3`` and its gradient: two passes each way (oneDNN's kernels
    on CPU, cuDNN's on GPU). The moving variance averages the unbiased batch variance, as PyTorch's
    BatchNorm in the reference trainers does (Keras' layer averages the biased
    one: a relative difference of 1/n, n = batch x height x width, at most 1.2e-4
    here). Only each layer instance's ``call`` changes: the class, config and
    weights stay stock Keras, so saved files are unaffected, and anything the fused
    kernel does not cover (inference, masks, renorm, synchronized BN, other axes,
    non-float32 inputs, other backends) takes Keras' own path.

    Returns:
        How many layers were switched.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in model._flatten_layers(include_self=False):
        if type(layer) is keras.layers.BatchNormalization:
            layer.call = types.MethodType(_fused_batch_norm_call, layer)
            count += 1
    return count


def _fused_batch_norm_call(layer, inputs, training=None, mask=None):
    fusable = (training is True and layer.trainable and mask is None
               and inputs.dtype == tf.float32 and inputs.shape.rank == 4
               and list(layer._reduction_axes) == [0, 1, 2]
               and layer.center and layer.scale
               and not layer.renorm and not layer.synchronized)
    if not fusable:
        return type(layer).call(layer, inputs, training=training, mask=mask)
    empty = tf.constant([], tf.float32)
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=tf.cast(layer.gamma, tf.float32),
        offset=tf.cast(layer.beta, tf.float32), mean=empty, variance=empty,
        epsilon=layer.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
        is_training=True)
    # The kernel returns the unbiased (n - 1) batch variance for the moving average,
    # which is what the reference trainers' BatchNorm (torch.nn.BatchNorm2d) averages
    # too; Keras' own layer averages the biased one (the normalisation itself uses
    # the biased one in all three).
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum
                                 + variance * (1.0 - momentum))
    return tf.cast(outputs, layer.compute_dtype)


def _build_from_spec(model: keras.Model, strategy: tf.distribute.Strategy,
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


def _vector_logs(model: keras.Model) -> None:
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


def _shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker input: every worker builds the same pipeline and keeps its part.

    With sharding by DATA, tf.distribute rebatches each global batch into
    per-replica batches and hands each worker its own, so the union over the
    workers of one step is exactly the global batch a single process would see
    (same shuffle, same crops). The in-memory source has no files to shard.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_time_s`` and ``images_per_sec`` (training phase only) to the logs."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images_per_epoch = images_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_time = None

    def on_test_begin(self, logs=None):  # the per-epoch evaluation starts
        if getattr(self, "_start", None) is not None and self._train_time is None:
            self._train_time = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        logs["epoch_time_s"] = elapsed
        logs["images_per_sec"] = self.images_per_epoch / max(self._train_time or elapsed, 1e-9)


class RunHistory(keras.callbacks.Callback):
    """Keeps history.csv / history.json, one row per epoch even across resumes."""

    def __init__(self, workdir: Path, eval_set: str, total_epochs: int):
        super().__init__()
        self.workdir = workdir
        self.eval_set = eval_set
        self.total_epochs = total_epochs
        self.rows = {row["epoch"]: row for row in read_history(workdir)}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1}
        row.update({k: float(logs[k]) for k in HISTORY_FIELDS[1:] if k in logs})
        self.rows = {e: r for e, r in self.rows.items() if e < epoch + 1}
        self.rows[epoch + 1] = row
        self._write()
        logging.info(
            "epoch %d/%d: cross-entropy %.4f, accuracy %.4f, %s cross-entropy %.4f, "
            "%s accuracy %.4f, lr %.4g, %.1f s (%.0f img/s)", epoch + 1, self.total_epochs,
            row.get("cross_entropy", math.nan), row.get("accuracy", math.nan), self.eval_set,
            row.get("val_cross_entropy", math.nan), self.eval_set,
            row.get("val_accuracy", math.nan),
            row.get("learning_rate", math.nan), row.get("epoch_time_s", math.nan),
            row.get("images_per_sec", math.nan))

    def _write(self):
        rows = [self.rows[e] for e in sorted(self.rows)]
        fileio.write_json(self.workdir / "history.json",
                          {"eval_set": self.eval_set, "epochs": rows})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        fileio.write_text(self.workdir / "history.csv", buf.getvalue())


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves checkpoints/last.keras every epoch and best.keras on a better eval accuracy.

    Unlike ``keras.callbacks.ModelCheckpoint``, a kill during saving never leaves a
    truncated file: each save goes to a temporary file that is then renamed.
    """

    def __init__(self, directory: Path, monitor: str = "val_accuracy"):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.best_path = directory / "best.json"
        self.best = (json.loads(self.best_path.read_text())
                     if self.best_path.exists() else None)

    def on_epoch_end(self, epoch, logs=None):
        self._save(self.directory / "last.keras")
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or value > self.best["value"]):
            self._save(self.directory / "best.keras")
            self.best = {"epoch": epoch + 1, "metric": self.monitor, "value": float(value)}
            fileio.write_json(self.best_path, self.best)

    def _save(self, path):
        with fileio.atomic_path(path) as tmp:
            self.model.save(tmp)


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of a run directory (empty when it has none yet)."""
    path = Path(workdir) / "history.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["epochs"]


def _prepare_workdir(config: TrainConfig, workdir: Path) -> bool:
    """Creates or checks the run directory; returns True if the run is already complete."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"Cannot write to --model_dir {workdir}: {e.strerror}.") from None
    saved = workdir / "config.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        for key in ("model", "shortcut", "dataset", "batch_size", "validation_split"):
            if previous.get(key) != getattr(config, key):
                raise UserError(
                    f"{workdir} holds a run with {key}={previous.get(key)!r}, not "
                    f"{getattr(config, key)!r}; choose another --model_dir to start a new run.")
    done = read_history(workdir)
    if (workdir / "metrics.json").exists() and done and done[-1]["epoch"] >= config.epochs:
        return True
    fileio.write_text(saved, config.to_json())
    return False


def load_data(config: TrainConfig) -> tuple[datasets.Split, datasets.Split, datasets.Cifar10]:
    """(training split, per-epoch eval split, the whole data set) for ``config``."""
    data = datasets.load(config.dataset, config.data_dir, seed=config.seed,
                         synthetic_sizes=(config.synthetic_train_size,
                                          config.synthetic_test_size))
    if config.validation_split:
        if config.validation_split >= len(data.train.labels):
            raise UserError(f"--validation_split={config.validation_split} leaves no "
                            "training images.")
        train, held_out = datasets.holdout(data.train, config.validation_split, config.seed)
        return train, held_out, data
    return data.train, data.test, data


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike,
                       callbacks: Sequence[keras.callbacks.Callback] = (),
                       verbose: int | str = "auto") -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming what is there) and returns metrics.json.

    Args:
        config: the run's configuration.
        workdir: the run directory (created if needed).
        callbacks: extra Keras callbacks.
        verbose: passed to ``model.fit`` (the progress bar).

    Raises:
        UserError: unusable workdir, a workdir of another run, unusable data.
    """
    # The strategy first: MultiWorkerMirroredStrategy must exist before TF starts.
    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    workdir = worker_dir(workdir, strategy)
    if _prepare_workdir(config, workdir):
        logging.info("%s already holds a finished %d-epoch run; nothing to train "
                     "(raise --epochs to continue it, or use another --model_dir).",
                     workdir, config.epochs)
        return json.loads((workdir / "metrics.json").read_text())

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    train, evaluation, data = load_data(config)
    logging.info("data: %s; %d training images, %d %s images", data.source,
                 len(train.labels), len(evaluation.labels), config.eval_set)

    with strategy.scope():
        model = build_and_compile(config, strategy.num_replicas_in_sync)
    replicas = strategy.num_replicas_in_sync
    logging.info("%s: %s trainable parameters; global batch %d over %d replica(s)%s",
                 model.name, f"{models.count_trainable_params(model):,}",
                 config.batch_size, replicas,
                 "" if chief else f"; this worker writes only to {workdir}")

    train_ds = _shard_by_data(
        input_pipeline.train_dataset(train, config.batch_size, seed=config.seed))
    eval_ds = _shard_by_data(input_pipeline.eval_dataset(evaluation, config.batch_size))
    if strategy is not tf.distribute.get_strategy():
        _build_from_spec(model, strategy, train_ds)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _vector_logs(model)
    steps = config.steps_per_epoch or math.ceil(len(train.labels) / config.batch_size)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    images_per_epoch = steps * config.batch_size if config.steps_per_epoch else len(train.labels)

    ckpt_dir = workdir / "checkpoints"
    # Order matters: the history and checkpoints are written before the backup,
    # so a kill between them re-runs an epoch whose row is then overwritten.
    # Every worker keeps its own history and backup (so all take the same resume
    # decisions); only the chief writes checkpoints, TensorBoard logs and the model.
    run_callbacks = [
        learning_rate_schedule(config),
        EpochTimer(images_per_epoch),
        RunHistory(workdir, config.eval_set, config.epochs),
    ]
    if chief:
        ckpt_dir.mkdir(exist_ok=True)
        run_callbacks += [
            AtomicCheckpoint(ckpt_dir),
            keras.callbacks.TensorBoard(log_dir=str(workdir / "tensorboard"), profile_batch=0),
        ]
    run_callbacks += [
        *callbacks,
        keras.callbacks.BackupAndRestore(str(workdir / "backup"), delete_checkpoint=False),
    ]
    started = time.perf_counter()
    model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
              validation_data=eval_ds, validation_steps=config.eval_steps,
              callbacks=run_callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles
    fit_seconds = time.perf_counter() - started

    test_ds = input_pipeline.eval_dataset(data.test, config.batch_size)
    test = model.evaluate(test_ds, steps=config.eval_steps, verbose=0, return_dict=True)
    test_loss, test_accuracy = test["cross_entropy"], test["accuracy"]
    if chief:
        with fileio.atomic_path(workdir / "model.keras") as tmp:
            model.save(tmp)
    metrics = _metrics(config, model, workdir, data, strategy, test_loss, test_accuracy,
                       fit_seconds)
    fileio.write_json(workdir / "metrics.json", metrics)
    logging.info("%s: test accuracy %.4f, test loss %.4f; wrote %s", model.name,
                 test_accuracy, test_loss, workdir)
    return metrics


def _metrics(config, model, workdir, data, strategy, test_loss, test_accuracy,
             fit_seconds) -> dict[str, Any]:
    history = read_history(workdir)
    best_path = workdir / "checkpoints" / "best.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else None
    if best:
        best["chosen_on"] = config.eval_set
    rates = [r["images_per_sec"] for r in history if "images_per_sec" in r]
    return {
        "model": config.model,
        "shortcut": config.shortcut,
        "residual": models.parse_name(config.model).residual,
        "depth": models.parse_name(config.model).depth,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),  # cross-entropy, without the weight-decay term
        "test_images": len(data.test.labels) if not config.eval_steps
        else min(len(data.test.labels), config.eval_steps * config.batch_size),
        "eval_set": config.eval_set,
        "best": best,
        "final_train_accuracy": history[-1].get("accuracy") if history else None,
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "params_trainable": models.count_trainable_params(model),
        "params_total": int(model.count_params()),
        "wall_time_s": float(sum(r.get("epoch_time_s", 0.0) for r in history)),
        "last_session_fit_s": fit_seconds,
        "train_images_per_sec": float(np.median(rates)) if rates else None,
        "data_source": data.source,
        "replicas": strategy.num_replicas_in_sync,
        **environment.describe(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
