"""Training library: ``train_and_evaluate(config, workdir)`` with ``model.fit``.

A run directory holds everything a run produces (the file names, formats and
the resume rules are :mod:`keras_resnet_cifar.training.rundir`'s):

    config.json            the TrainConfig that produced the run
    history.csv/.json      one row per epoch: epoch (1-based), loss (cross-entropy plus
                           the weight-decay term), cross_entropy and accuracy (training,
                           on augmented batches, running means over the epoch),
                           val_loss, val_cross_entropy, val_accuracy (on the eval set:
                           "test" by default, "validation" with --validation_split),
                           learning_rate, epoch_time_s, images_per_sec
    metrics.json           final test accuracy/loss, best epoch and the set it was
                           chosen on, parameter counts, wall time, images/s, versions
    model.keras            the final model; curves.png its curves
    checkpoints/last.keras, checkpoints/best.keras (best val_accuracy on the eval set)
    backup/state.npz       the resume state (variables, optimiser, epoch, history)

Every file is written atomically (temporary file, fsync, rename). A run stopped
at any instant (SIGKILL, SIGTERM, Ctrl-C, a full disk) resumes from its last
complete epoch with the same command; with ``--deterministic`` it then ends
bit-identical to a run that was never stopped.

With ``--distribute=multi_worker`` only the chief writes the run directory; every
other worker keeps its own state (history, resume state) in
``workertemp_<task id>/`` below it, as the TensorFlow multi-worker guide
recommends, so that all workers take the same resume decisions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet_cifar import environment
from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.models import arch, networks
from keras_resnet_cifar.training import rundir
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.training.optimizer import ReferenceSGD, learning_rate_schedule
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.text import plural

# "loss" is what SGD minimises: cross-entropy plus the L2 weight-decay term. In a
# deep plain net the kernels' norms grow fast early on (BN makes the loss blind to
# their scale, and every large gradient step lengthens them), so that term can
# dominate "loss"; "cross_entropy" is the data term alone, for curves and tables.
HISTORY_FIELDS = ("epoch", "loss", "cross_entropy", "accuracy", "val_loss",
                  "val_cross_entropy", "val_accuracy", "learning_rate", "epoch_time_s",
                  "images_per_sec", "load_average")


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
    model = networks.build_model(config.model, shortcut=config.shortcut,
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
    """Adds ``epoch_time_s``, ``images_per_sec`` (training phase only) and ``load_average``.

    ``load_average`` is the machine's 1-minute load average at the epoch's end
    (``os.getloadavg``): on a shared machine it says how far the timings were
    slowed by other work (a 2-core machine with load 4 runs each job at ~half speed).
    """

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
        logs["load_average"] = os.getloadavg()[0]


class ProgressLine(keras.callbacks.Callback):
    """Progress inside an epoch, on stderr, beside the one summary line per epoch.

    Keras' own output (``verbose=1`` or ``2``) prints each epoch a second time
    beside the run's summary line, shows nothing during the per-epoch evaluation,
    and its bar shares a terminal line with that summary. Here instead:

    - on a terminal, one line rewritten in place (at most every ``tty_every``
      seconds): the step, the running training loss and accuracy, then the
      evaluation's batches; it is erased before the epoch's summary is printed;
    - otherwise (a pipe, a log file), a plain line every ``every`` seconds, so a
      long epoch shows it is alive and an epoch shorter than that prints only its
      summary line.

    Args:
        total_epochs: the run's ``--epochs``.
        steps: training steps per epoch.
        eval_batches: batches of the per-epoch evaluation.
        eval_set: what it evaluates ("test" or "validation").
        every: seconds between lines when stderr is not a terminal.
        tty_every: seconds between updates of the in-place line on a terminal.
        stream: where to write (default: ``sys.stderr`` at the time of writing).
    """

    def __init__(self, total_epochs: int, steps: int, eval_batches: int,
                 eval_set: str = "test", *, every: float = 60.0, tty_every: float = 0.5,
                 stream=None):
        super().__init__()
        self.total_epochs, self.steps, self.eval_batches = total_epochs, steps, eval_batches
        self.eval_set = eval_set
        self.every, self.tty_every = every, tty_every
        self._stream = stream
        self._epoch = None
        self._last = 0.0
        self._start = 0.0
        self._shown = False  # an in-place line is on the terminal

    @property
    def stream(self):
        return self._stream or sys.stderr  # looked up now: the tools redirect it

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _prefix(self) -> str:
        if self._epoch is None:
            return "final evaluation"
        return f"epoch {self._epoch + 1}/{self.total_epochs}"

    def _show(self, text: str) -> None:
        now = time.monotonic()
        tty = self._tty()
        if now - self._last < (self.tty_every if tty else self.every):
            return
        self._last = now
        line = f"{self._prefix()}: {text}, {now - self._start:.0f} s"
        if tty:
            self.stream.write(f"\r{line}\x1b[K")
            self._shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erases the in-place line (a terminal only), so the next line starts clean."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.monotonic()
        # A terminal shows the first step at once; a pipe gets its first line after
        # an interval (a short epoch prints only its summary).
        self._last = float("-inf") if self._tty() else self._start

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        figures = "".join(f", {name} {_scalar(logs[key]):.4f}"
                          for key, name in (("cross_entropy", "cross-entropy"),
                                            ("accuracy", "accuracy")) if key in logs)
        self._show(f"step {batch + 1}/{self.steps} "
                   f"({100 * (batch + 1) / max(self.steps, 1):.0f}%){figures}")

    def on_test_begin(self, logs=None):
        if self._epoch is None:  # the final evaluation, outside fit
            self._start = time.monotonic()
            self._last = float("-inf") if self._tty() else self._start

    def on_test_batch_end(self, batch, logs=None):
        self._show(f"evaluating on the {self.eval_set} set, batch {batch + 1}/"
                   f"{self.eval_batches}")

    def on_test_end(self, logs=None):
        self.clear()

    def on_epoch_end(self, epoch, logs=None):
        self.clear()

    def on_train_end(self, logs=None):
        self.clear()
        self._epoch = None


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Ends training with a UserError when a batch's loss is NaN or infinite.

    ``keras.callbacks.TerminateOnNaN`` stops quietly and the run would end with
    exit status 0 and NaN metrics. Raised before the epoch's end, so the run
    directory keeps the last finite epoch and nothing NaN becomes "best".
    """

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.all(np.isfinite(np.asarray(loss, dtype=np.float64))):
            raise UserError(
                f"the training loss became {float(np.asarray(loss).reshape(-1)[0])} in epoch "
                f"{self.epoch + 1} (learning rate {learning_rate_at(self.epoch, self.config):g}); "
                "training stopped, the run directory keeps the epochs before it. Train with "
                "a lower --learning_rate in another --model_dir.")


class RunWriter(keras.callbacks.Callback):
    """Writes the run directory at the end of every epoch, the resume state first.

    Order: resume state (the truth: variables, epoch, history rows, best epoch),
    history.json/.csv, then (chief only) checkpoints/last.keras and, on a better
    ``val_accuracy``, checkpoints/best.keras and best.json. A kill between them
    leaves files that lag the state, which a resumed run rewrites
    (:func:`_repair`). SIGINT/SIGTERM wait until the epoch is written.
    """

    def __init__(self, workdir: Path, config: TrainConfig, chief: bool,
                 state: rundir.State | None, stop: "_StopSignals"):
        super().__init__()
        self.workdir = workdir
        self.eval_set = config.eval_set
        self.total_epochs = config.epochs
        self.chief = chief
        self.stop = stop
        self.rows = list(state.history) if state else []
        self.best = state.best if state else None
        self._noted = False  # the BatchNorm note is printed once per session

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1}
        row.update({k: float(np.asarray(logs[k]).reshape(-1)[0])
                    for k in HISTORY_FIELDS[1:] if k in logs})
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        value = row.get("val_accuracy")
        improved = value is not None and math.isfinite(value) and (
            self.best is None or value > self.best["value"])
        if improved:
            self.best = {"epoch": epoch + 1, "metric": "val_accuracy", "value": value}
        with self.stop.deferred():
            rundir.save_state(self.workdir, self.model,
                              rundir.State(epoch=epoch + 1, history=self.rows, best=self.best))
            rundir.write_history(self.workdir, self.eval_set, self.rows, HISTORY_FIELDS)
            if self.chief:
                rundir.save_model(self.model, self.workdir, rundir.LAST)
                if improved:
                    rundir.save_model(self.model, self.workdir, rundir.BEST)
                    rundir.write_best(self.workdir, self.best)
        evaluated = (f"{self.eval_set} cross-entropy {row['val_cross_entropy']:.4f}, "
                     f"{self.eval_set} accuracy {row['val_accuracy']:.4f}, "
                     if "val_accuracy" in row else "")
        logging.info(
            "epoch %d/%d: cross-entropy %.4f, accuracy %.4f, %slr %.4g, %.1f s (%.0f img/s)",
            epoch + 1, self.total_epochs, row.get("cross_entropy", math.nan),
            row.get("accuracy", math.nan), evaluated, row.get("learning_rate", math.nan),
            row.get("epoch_time_s", math.nan), row.get("images_per_sec", math.nan))
        note = lagging_batch_norm_note(row, self.eval_set)
        if note and not self._noted:
            self._noted = True
            logging.info("%s", note)


def lagging_batch_norm_note(row: dict[str, Any], eval_set: str) -> str | None:
    """A sentence for an epoch whose evaluation loss is far above its training loss.

    Evaluation runs BatchNormalization in inference mode, on the moving averages
    of the batch statistics, while training normalises each batch by its own.
    Early in a run (few steps, large learning rate) the weights change faster than
    those averages follow, and the evaluation loss can be tens of times the
    training loss (e.g. 68.9 against 2.3 after 20 steps) without anything being
    wrong; it falls as training settles. None when the figures look ordinary.
    """
    train, held = row.get("cross_entropy"), row.get("val_cross_entropy")
    if train is None or held is None or not (math.isfinite(train) and math.isfinite(held)):
        return None
    if held < max(5.0, 3.0 * train):
        return None
    return (f"note: the {eval_set} cross-entropy ({held:.1f}) is far above the training "
            f"one ({train:.2f}). Evaluation normalises with BatchNormalization's moving "
            "averages of the batch statistics, which lag the weights while they change "
            "fast (the first epochs, short runs); early in a run this is common and fades "
            "as training settles.")


class Interrupted(KeyboardInterrupt):
    """Training was stopped by SIGINT (Ctrl-C) or SIGTERM; the run can be resumed."""


class _StopSignals:
    """Turns SIGINT and SIGTERM into :class:`Interrupted`, except while a state is written.

    Cluster schedulers and preemptible machines send SIGTERM; it now stops a run
    as Ctrl-C does. Inside :meth:`deferred` the signal waits until the block ends,
    so the run directory is never left between an epoch's files. (Only the main
    thread can install handlers; elsewhere this does nothing.)
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._previous = {}
        self._deferring = False
        self._pending = None
        self.received = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        if self._deferring:
            self._pending = self.received
        else:
            raise Interrupted(self.received)

    @contextlib.contextmanager
    def deferred(self):
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending:
            raise Interrupted(self._pending)


def load_data(config: TrainConfig, data: datasets.Cifar10 | None = None
              ) -> tuple[datasets.Split, datasets.Split, datasets.Cifar10]:
    """(training split, per-epoch eval split, the whole data set) for ``config``.

    ``data``: the data set of ``config`` when the caller already has it in memory
    (the study trains several models on it); loaded here otherwise.
    """
    if data is None:
        data = datasets.load(config.dataset, config.data_dir, seed=config.seed,
                             synthetic_sizes=(config.synthetic_train_size,
                                              config.synthetic_test_size))
    if config.validation_split:
        if config.validation_split >= len(data.train.labels):
            raise UserError(f"--validation_split={config.validation_split} leaves no "
                            "training images.")
        train, held_out = datasets.holdout(data.train, config.validation_split, config.seed)
    else:
        train, held_out = data.train, data.test
    # A batch larger than the training set is a typo, and one of millions of images
    # exhausts the memory in the input pipeline (SIGSEGV) instead of failing cleanly.
    if config.batch_size > len(train.labels):
        raise UserError(f"--batch_size={config.batch_size} is larger than the "
                        f"{len(train.labels):,} training images.")
    return train, held_out, data


def _claim(workdir: Path, config: TrainConfig, stack: contextlib.ExitStack) -> rundir.Plan:
    """Locks ``workdir`` (for the rest of ``stack``) and decides how to continue it."""
    if not workdir.is_dir():
        raise UserError(f"Cannot write to --model_dir {workdir}: not a directory.")
    try:
        stack.enter_context(rundir.lock(workdir))
    except OSError as e:
        raise UserError(f"Cannot write to --model_dir {workdir}: {e.strerror}.") from None
    return rundir.plan(workdir, config)


def _create(workdir: Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot write to --model_dir {workdir}: {e.strerror}.") from None


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike,
                       callbacks: Sequence[keras.callbacks.Callback] = (),
                       verbose: int | str = "auto",
                       data: datasets.Cifar10 | None = None,
                       evaluate_every_epoch: bool = True) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming what is there) and returns metrics.json.

    The rules of the run directory (one process, one recipe, the resume state) are
    :mod:`keras_resnet_cifar.training.rundir`'s. The data are loaded and checked before a
    new run directory is created, so a run refused for its input leaves none.

    Args:
        config: the run's configuration.
        workdir: the run directory (created if needed).
        callbacks: extra Keras callbacks.
        verbose: progress output: ``"auto"`` (the default) a progress line inside
            each epoch on stderr (see :class:`ProgressLine`) and one summary line per
            epoch; 0 the summary lines only; 1 or 2 Keras' own progress bar or line
            per epoch as well (``model.fit``'s ``verbose``).
        data: the data set of ``config`` if already loaded (else it is loaded here).
        evaluate_every_epoch: evaluate the eval set after every epoch (history's
            ``val_*`` columns and the best checkpoint); False (the study, whose
            curve points already evaluate the test set during each epoch) leaves
            them out and evaluates the test set once, at the end.

    Raises:
        UserError: unusable workdir, a workdir of another run or in use, unusable
            data, an unreadable resume state, a full disk, a non-finite loss.
        Interrupted: SIGINT or SIGTERM (the run resumes with the same command).
    """
    # The strategy first: MultiWorkerMirroredStrategy must exist before TF starts.
    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    workdir = worker_dir(workdir, strategy)
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(_StopSignals())
        plan = _claim(workdir, config, stack) if workdir.exists() else None
        if plan is None or not plan.finished:
            keras.utils.set_random_seed(config.seed)
            if config.deterministic:
                tf.config.experimental.enable_op_determinism()
            data_splits = load_data(config, data)
        if plan is None:
            _create(workdir)
            plan = _claim(workdir, config, stack)
        if plan.finished:
            logging.info("%s already holds a finished %d-epoch run; nothing to train "
                         "(raise --epochs to continue it, or use another --model_dir).",
                         workdir, config.epochs)
            return rundir.read_metrics(workdir)
        rundir.start(workdir, config, plan)
        try:
            return _train(config, workdir, plan, strategy, chief, *data_splits,
                          callbacks=callbacks, verbose=verbose, stop=stop,
                          evaluate_every_epoch=evaluate_every_epoch)
        except KeyboardInterrupt:
            logging.warning("%s: training stopped. %s holds %d of %d epochs; run the same "
                            "command to resume.", stop.received or "interrupted", workdir,
                            rundir.read_state_epoch(workdir) or 0, config.epochs)
            raise


def _train(config: TrainConfig, workdir: Path, plan: rundir.Plan,
           strategy: tf.distribute.Strategy, chief: bool, train: datasets.Split,
           evaluation: datasets.Split, data: datasets.Cifar10, *,
           callbacks: Sequence[keras.callbacks.Callback], verbose: int | str,
           stop: _StopSignals, evaluate_every_epoch: bool = True) -> dict[str, Any]:
    logging.info("data: %s; %s, %s", data.source, plural(len(train.labels), "training image"),
                 plural(len(evaluation.labels), f"{config.eval_set} image"))
    with strategy.scope():
        model = build_and_compile(config, strategy.num_replicas_in_sync)
        # Built now (fit would build it at its first step) so a resume can fill it.
        model.optimizer.build(model.trainable_variables)
        state = rundir.restore_state(workdir, model) if plan.state_epoch else None
    initial_epoch = state.epoch if state else 0
    if state:
        logging.info("resuming from epoch %d of %d (run dir %s)", state.epoch,
                     config.epochs, workdir)
        _repair(workdir, model, state, config, chief)
    replicas = strategy.num_replicas_in_sync
    logging.info("%s: %s trainable parameters; global batch %d over %d replica(s)%s",
                 model.name, f"{networks.count_trainable_params(model):,}",
                 config.batch_size, replicas,
                 "" if chief else f"; this worker writes only to {workdir}")

    steps = config.steps_per_epoch or math.ceil(len(train.labels) / config.batch_size)
    images_per_epoch = steps * config.batch_size if config.steps_per_epoch else len(train.labels)
    writer = RunWriter(workdir, config, chief, state, stop)
    # "auto": this module's progress line (stderr) and no Keras output, so each epoch
    # is one summary line; 1 or 2: Keras' own bar or line as well; 0: summaries only.
    keras_verbose = verbose if verbose in (1, 2) else 0
    eval_batches = math.ceil(len(evaluation.labels) / config.batch_size)
    if config.eval_steps:
        eval_batches = min(eval_batches, config.eval_steps)
    progress = (ProgressLine(config.epochs, steps, eval_batches, config.eval_set)
                if verbose == "auto" else None)
    run_callbacks = [
        learning_rate_schedule(config),
        EpochTimer(images_per_epoch),
        StopOnNonFiniteLoss(config),
        *([progress] if progress else []),  # before the writer: it clears its line first
        writer,
    ]
    if chief:
        run_callbacks.append(keras.callbacks.TensorBoard(
            log_dir=str(rundir.path(workdir, rundir.TENSORBOARD)), profile_batch=0))
    run_callbacks += list(callbacks)

    started = time.perf_counter()
    if initial_epoch < config.epochs:
        # Epoch e's batches depend on (seed, e) only: a resumed run sees exactly the
        # batches the uninterrupted one would have.
        train_ds = _shard_by_data(pipeline.train_dataset(
            train, config.batch_size, seed=config.seed, first_epoch=initial_epoch,
            last_epoch=config.epochs, steps_per_epoch=config.steps_per_epoch))
        if strategy is not tf.distribute.get_strategy():
            _build_from_spec(model, strategy, train_ds)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _vector_logs(model)
        model.fit(train_ds, initial_epoch=initial_epoch, epochs=config.epochs,
                  steps_per_epoch=steps,
                  validation_data=(_eval_ds(evaluation, config) if evaluate_every_epoch
                                   else None),
                  callbacks=run_callbacks, verbose=keras_verbose, shuffle=False)
    fit_seconds = time.perf_counter() - started

    rows, best = writer.rows, writer.best
    last = rows[-1] if rows else {}
    if config.eval_set == "test" and last.get("epoch") == config.epochs \
            and "val_accuracy" in last:
        # The last epoch was evaluated on these very test images by this model.
        test_loss, test_accuracy = last["val_cross_entropy"], last["val_accuracy"]
    else:
        logging.info("evaluating on the test set")
        if progress:
            progress.eval_set = "test"
            progress.eval_batches = math.ceil(len(data.test.labels) / config.batch_size)
            if config.eval_steps:
                progress.eval_batches = min(progress.eval_batches, config.eval_steps)
        test = model.evaluate(_eval_ds(data.test, config), verbose=keras_verbose,
                              return_dict=True, callbacks=[progress] if progress else None)
        test_loss, test_accuracy = (float(np.asarray(test[k]).reshape(-1)[0])
                                    for k in ("cross_entropy", "accuracy"))
    if chief:
        rundir.save_model(model, workdir, rundir.MODEL)
        _save_curves(workdir, config, rows)
    metrics = _metrics(config, model, rows, best, data, strategy, test_loss, test_accuracy,
                       fit_seconds)
    rundir.write_metrics(workdir, metrics)
    logging.info("%s: test accuracy %.4f, test loss %.4f (from the logits); wrote %s",
                 model.name, test_accuracy, test_loss, workdir)
    return metrics


def _eval_ds(split: datasets.Split, config: TrainConfig) -> tf.data.Dataset:
    """The evaluation pipeline, cut at ``--eval_steps`` batches.

    Cut here rather than with ``validation_steps``: Keras keeps a capped
    iterator across epochs, so each epoch would see the next slice of the set.
    """
    ds = pipeline.eval_dataset(split, config.batch_size)
    if config.eval_steps:
        ds = ds.take(config.eval_steps)
    return _shard_by_data(ds)


def _repair(workdir: Path, model: keras.Model, state: rundir.State, config: TrainConfig,
            chief: bool) -> None:
    """Rewrites the files that lag the restored resume state (a kill between writes)."""
    rundir.write_history(workdir, config.eval_set, state.history, HISTORY_FIELDS)
    if chief:
        rundir.save_model(model, workdir, rundir.LAST)
        # checkpoints/best.keras is checked, not trusted: a damaged one would only be
        # found when a tool loads it, long after this session.
        damaged = rundir.is_damaged_model(workdir, rundir.BEST)
        if state.best and state.best["epoch"] == state.epoch and (
                damaged or rundir.read_best(workdir) != state.best):
            rundir.save_model(model, workdir, rundir.BEST)
            rundir.write_best(workdir, state.best)
            if damaged:
                logging.warning("%s was damaged (truncated or corrupt); rewritten from the "
                                "resume state (epoch %d).", rundir.path(workdir, rundir.BEST),
                                state.epoch)
        elif damaged:
            logging.warning(
                "%s is damaged (truncated or corrupt) and cannot be rebuilt: its weights "
                "(epoch %s) exist nowhere else. It is replaced when an epoch improves on "
                "that one; until then use --checkpoint=last.", rundir.path(workdir, rundir.BEST),
                (state.best or {}).get("epoch", "?"))


def _save_curves(workdir: Path, config: TrainConfig, rows: list[dict[str, Any]]) -> None:
    """curves.png: accuracy and cross-entropy per epoch, training and eval set."""
    from keras_resnet_cifar.analysis import plots  # matplotlib: only when a run ends

    figure = plots.training_curves({config.model: rows}, eval_set=config.eval_set,
                                   title=f"{config.model} (seed {config.seed})")
    rundir.save_figure(figure, workdir)


def _metrics(config, model, history, best, data, strategy, test_loss, test_accuracy,
             fit_seconds) -> dict[str, Any]:
    if best:
        best = {**best, "chosen_on": config.eval_set}
    rates = [r["images_per_sec"] for r in history if "images_per_sec" in r]
    return {
        "model": config.model,
        "shortcut": config.shortcut,
        "residual": arch.parse_name(config.model).residual,
        "depth": arch.parse_name(config.model).depth,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        # Keras takes the softmax's logits: -log p is exact even where p underflows
        # (a tool that only sees probabilities must clip them, and differs there).
        "test_loss_definition": "mean cross-entropy -log p(true class), computed from "
                                "the logits (unclipped), without the weight-decay term",
        "test_images": len(data.test.labels) if not config.eval_steps
        else min(len(data.test.labels), config.eval_steps * config.batch_size),
        "eval_set": config.eval_set,
        "best": best,
        "final_train_accuracy": history[-1].get("accuracy") if history else None,
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "params_trainable": networks.count_trainable_params(model),
        "params_total": int(model.count_params()),
        "wall_time_s": float(sum(r.get("epoch_time_s", 0.0) for r in history)),
        "last_session_fit_s": fit_seconds,
        "train_images_per_sec": float(np.median(rates)) if rates else None,
        "data_source": data.source,
        "replicas": strategy.num_replicas_in_sync,
        **environment.describe(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
