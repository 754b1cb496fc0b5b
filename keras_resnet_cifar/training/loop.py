"""Training library: train_and_evaluate(config, workdir) with model.fit, in a run directory
(its files: run_files; its rules: lock and resume_state). A run stopped at any instant
resumes with the same command and, with deterministic=True, ends bit-identical.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet_cifar import environment, fileio, run_files, signals
from keras_resnet_cifar.config import (ConfigError, TrainConfig, check_steps_per_execution,
                                       learning_rate_at)
from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.models import arch, networks
from keras_resnet_cifar.errors import plural
from keras_resnet_cifar.training import batch_norm, distribution, lock, resume_state
from keras_resnet_cifar.training import callbacks as callbacks_lib
from keras_resnet_cifar.training.optimizer import ReferenceSGD, StepSchedule


def build_and_compile(config: TrainConfig, replicas: int = 1) -> keras.Model:
    """The model of `config`, compiled with the reference SGD (call inside a strategy scope);
    sets Keras' global dtype policy. Several replicas sync BatchNorm's batch statistics: Keras
    3 does not aggregate per-replica moving statistics, which would drift apart."""
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    model = networks.build_model(config.model, shortcut=config.shortcut,
                                 weight_decay=config.weight_decay,
                                 weight_decay_scope=config.weight_decay_scope,
                                 sync_batchnorm=replicas > 1)
    if config.mixed_precision != "float32":
        model = batch_norm.float32_batch_norm(model)
    batch_norm.fuse_batch_norm(model)
    # Weight decay is the models' L2 term (gradient lambda * w, through momentum), as in
    # torch.optim.SGD, not Keras' decoupled SGD(weight_decay=...).
    optimizer = ReferenceSGD(learning_rate=learning_rate_at(0, config), momentum=config.momentum)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    return model


def load_data(config: TrainConfig, data: datasets.Cifar10 | None = None
              ) -> tuple[datasets.Split, datasets.Split, datasets.Cifar10]:
    """(training split, per-epoch eval split, the whole data set); `data`: the data set
    when the caller holds it already (the study trains several models on it)."""
    if data is None:
        data = datasets.load(config.dataset, config.data_dir, seed=config.seed,
                             synthetic_sizes=(config.synthetic_train_size,
                                              config.synthetic_test_size))
    if config.validation_split:
        if config.validation_split >= len(data.train.labels):
            raise ConfigError(f"validation_split={config.validation_split} leaves no "
                            "training images.", argument="validation_split")
        train, held_out = datasets.holdout(data.train, config.validation_split, config.seed)
    else:
        train, held_out = data.train, data.test
    # A batch larger than the training set is a typo, and one of millions of images
    # exhausts the memory in the input pipeline (SIGSEGV) instead of failing cleanly.
    if config.batch_size > len(train.labels):
        raise ConfigError(f"batch_size={config.batch_size} is larger than the "
                        f"{len(train.labels):,} training images.", argument="batch_size")
    return train, held_out, data


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike,
                       callbacks: Sequence[keras.callbacks.Callback] = (),
                       verbose: int | str = "auto", data: datasets.Cifar10 | None = None,
                       evaluate_every_epoch: bool = True) -> dict[str, Any]:
    """Trains `config` in `workdir` (resuming what is there) and returns metrics.json. The
    data are checked before a new run directory is made, so a refused run leaves none.
    verbose: "auto", a progress line and a summary line per epoch; 0 the summaries only; 1
    or 2 Keras' output as well. evaluate_every_epoch=False (the study) leaves out the val_*
    columns and best checkpoint, and tests once at the end. Raises UserError, or
    signals.Interrupted on SIGINT or SIGTERM (the same command resumes)."""
    # The strategy first: MultiWorkerMirroredStrategy must exist before TF starts.
    strategy = distribution.make_strategy(config.distribute)
    chief = distribution.is_chief(strategy)
    workdir = distribution.worker_dir(workdir, strategy)
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(signals.StopSignals())
        plan = lock.acquire(workdir, config, stack) if workdir.exists() else None
        if plan is None or not plan.finished:
            keras.utils.set_random_seed(config.seed)
            if config.deterministic:
                tf.config.experimental.enable_op_determinism()
            data_splits = load_data(config, data)
        if plan is None:
            fileio.make_dir(workdir, what=f"the run directory {workdir}")
            plan = lock.acquire(workdir, config, stack)
        if plan.finished:
            logging.info("%s already holds a finished %d-epoch run; nothing to train "
                         "(raise epochs to continue it, or use another run directory).",
                         workdir, config.epochs)
            return run_files.read_metrics(workdir)
        lock.start(workdir, config, plan)
        try:
            session = _Session(config, workdir, plan, strategy, chief, *data_splits,
                               verbose=verbose, stop=stop)
            session.fit(callbacks, evaluate_every_epoch)
            return session.finish()
        except KeyboardInterrupt:
            logging.warning("%s: training stopped. %s holds %d of %d epochs; run the same "
                            "command to resume.", stop.received or "interrupted", workdir,
                            resume_state.read_state_epoch(workdir) or 0, config.epochs)
            raise


def _eval_batches(split: datasets.Split, config: TrainConfig) -> int:
    return min(datasets.batches(len(split.labels), config.batch_size),
               config.eval_steps or math.inf)


def _eval_ds(split: datasets.Split, config: TrainConfig) -> tf.data.Dataset:
    # Cut here (take(-1): all): with validation_steps Keras keeps a capped iterator
    # across epochs, so each epoch would see the next slice of the set.
    return distribution.shard_by_data(pipeline.eval_dataset(split, config.batch_size).take(
        config.eval_steps or -1))


class _Session:
    """One training session in a locked run directory: setup, fit, final test, metrics."""

    def __init__(self, config: TrainConfig, workdir: Path, plan: lock.Plan,
                 strategy: tf.distribute.Strategy, chief: bool, train: datasets.Split,
                 evaluation: datasets.Split, data: datasets.Cifar10, *,
                 verbose: int | str, stop: signals.StopSignals):
        self.config, self.workdir, self.strategy, self.chief = config, workdir, strategy, chief
        self.train, self.evaluation, self.data, self.fit_seconds = train, evaluation, data, 0.0
        logging.info("data: %s; %s, %s", data.source, plural(len(train.labels), "training image"),
                     plural(len(evaluation.labels), f"{config.eval_set} image"))
        with strategy.scope():
            self.model = build_and_compile(config, strategy.num_replicas_in_sync)
            # Built now (fit would build it at its first step) so a resume can fill it.
            self.model.optimizer.build(self.model.trainable_variables)
            state = resume_state.restore_state(workdir, self.model) if plan.state_epoch else None
        self.initial_epoch = state.epoch if state else 0
        if state:
            logging.info("resuming from epoch %d of %d (run dir %s)", state.epoch,
                         config.epochs, workdir)
            _repair(workdir, self.model, state, config, chief)
        logging.info("%s: %s trainable parameters; global batch %d over %d replica(s)%s",
                     self.model.name, f"{networks.count_trainable_params(self.model):,}",
                     config.batch_size, strategy.num_replicas_in_sync,
                     "" if chief else f"; this worker writes only to {workdir}")
        self.steps = config.epoch_steps(len(train.labels))
        check_steps_per_execution(self.steps, config.steps_per_execution)
        self.writer = callbacks_lib.RunWriter(workdir, config.eval_set, config.epochs, chief,
                                              state, stop)
        self.keras_verbose = verbose if verbose in (1, 2) else 0
        self.progress = (callbacks_lib.ProgressLine(
            config.epochs, self.steps, _eval_batches(evaluation, config), config.eval_set)
            if verbose == "auto" else None)

    def _callbacks(self, extra: Sequence[keras.callbacks.Callback]) -> list:
        config = self.config
        images_per_epoch = (self.steps * config.batch_size if config.steps_per_epoch
                            else len(self.train.labels))
        board = [callbacks_lib.TensorBoard(self.writer.stop, profile_batch=0, log_dir=str(
            run_files.path(self.workdir, run_files.TENSORBOARD)))] if self.chief else []
        # The progress line before the writer: it clears its line first.
        return [StepSchedule(config), callbacks_lib.EpochTimer(images_per_epoch),
                callbacks_lib.StopOnNonFiniteLoss(),
                *([self.progress] if self.progress else []), self.writer, *board, *extra]

    def fit(self, extra_callbacks: Sequence[keras.callbacks.Callback],
            evaluate_every_epoch: bool) -> None:
        config, strategy = self.config, self.strategy
        if self.initial_epoch >= config.epochs:
            return
        started = time.perf_counter()
        # Epoch e's batches depend on (seed, e) only: a resumed run sees the same batches.
        train_ds = distribution.shard_by_data(pipeline.train_dataset(
            self.train, config.batch_size, seed=config.seed, first_epoch=self.initial_epoch,
            last_epoch=config.epochs, steps_per_epoch=config.steps_per_epoch))
        if strategy is not tf.distribute.get_strategy():
            distribution.build_from_spec(self.model, strategy, train_ds)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            distribution.vector_logs(self.model)
        try:
            self.model.fit(train_ds, initial_epoch=self.initial_epoch, epochs=config.epochs,
                           steps_per_epoch=self.steps,
                           validation_data=(_eval_ds(self.evaluation, config)
                                            if evaluate_every_epoch else None),
                           callbacks=self._callbacks(extra_callbacks),
                           verbose=self.keras_verbose, shuffle=False)
        except KeyboardInterrupt:
            if self.progress:  # the stop's message starts a line of its own
                self.progress.clear()
            raise
        self.fit_seconds = time.perf_counter() - started

    def _test(self) -> tuple[float, float]:
        """(test loss, test accuracy) of the final model."""
        config, last = self.config, (self.writer.rows or [{}])[-1]
        # The last epoch evaluated on these very test images by this model?
        if (config.eval_set == "test" and last.get("epoch") == config.epochs
                and "val_accuracy" in last):
            return last["val_cross_entropy"], last["val_accuracy"]
        logging.info("evaluating on the test set")
        if self.progress:
            self.progress.eval_set = "test"
            self.progress.eval_batches = _eval_batches(self.data.test, config)
        test = self.model.evaluate(_eval_ds(self.data.test, config),
                                   verbose=self.keras_verbose, return_dict=True,
                                   callbacks=[self.progress] if self.progress else None)
        return callbacks_lib.scalar(test["cross_entropy"]), callbacks_lib.scalar(test["accuracy"])

    def finish(self) -> dict[str, Any]:
        test_loss, test_accuracy = self._test()
        if self.chief:
            run_files.save_model(self.model, self.workdir, run_files.MODEL)
        metrics = self._metrics(test_loss, test_accuracy)
        run_files.write_metrics(self.workdir, metrics)
        logging.info("%s: test accuracy %.4f on %s, test loss %.4f (cross-entropy from the "
                     "logits); wrote %s", self.model.name, test_accuracy,
                     plural(metrics["test_images"], "image"), test_loss, self.workdir)
        return metrics

    def _metrics(self, test_loss: float, test_accuracy: float) -> dict[str, Any]:
        config, rows, best = self.config, self.writer.rows, self.writer.best
        rates = [r["images_per_sec"] for r in rows if "images_per_sec" in r]
        name = arch.parse_name(config.model)
        return {
            "model": config.model, "shortcut": config.shortcut,
            "residual": name.residual, "depth": name.depth,
            "test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            # From the logits: -log p is exact even where p underflows (a tool that only
            # sees probabilities must clip them, and differs there).
            "test_loss_definition": "mean cross-entropy -log p(true class), computed from "
                                    "the logits (unclipped), without the weight-decay term",
            "test_images": len(self.data.test.labels) if not config.eval_steps
            else min(len(self.data.test.labels), config.eval_steps * config.batch_size),
            "eval_set": config.eval_set,
            "best": {**best, "chosen_on": config.eval_set} if best else best,
            "final_train_accuracy": rows[-1].get("accuracy") if rows else None,
            "epochs_completed": rows[-1]["epoch"] if rows else 0,
            "params_trainable": networks.count_trainable_params(self.model),
            "params_total": int(self.model.count_params()),
            "wall_time_s": float(sum(r.get("epoch_time_s", 0.0) for r in rows)),
            "last_session_fit_s": self.fit_seconds,
            "train_images_per_sec": float(np.median(rates)) if rates else None,
            "data_source": self.data.source, "replicas": self.strategy.num_replicas_in_sync,
            **environment.describe(), **environment.provenance(config.data_dir),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _repair(workdir: Path, model: keras.Model, state: resume_state.State,
            config: TrainConfig, chief: bool) -> None:
    """Rewrites the files that lag the restored resume state (a kill between writes)."""
    run_files.write_history(workdir, config.eval_set, state.history)
    if not chief:
        return
    run_files.save_model(model, workdir, run_files.LAST)
    # Checked, not trusted: a damaged best.keras would be found only when a tool loads it.
    best = run_files.path(workdir, run_files.BEST)
    damaged = run_files.is_damaged_model(workdir, run_files.BEST)
    if state.best and state.best["epoch"] == state.epoch and (
            damaged or run_files.read_best(workdir) != state.best):
        run_files.save_model(model, workdir, run_files.BEST)
        run_files.write_best(workdir, state.best)
        if damaged:
            logging.warning("%s was damaged (truncated or corrupt); rewritten from the "
                            "resume state (epoch %d).", best, state.epoch)
    elif damaged:
        logging.warning("%s is damaged (truncated or corrupt) and cannot be rebuilt: its weights "
                        "(epoch %s) exist nowhere else. It is replaced when an epoch improves "
                        "on that one; until then use the last checkpoint.", best,
                        (state.best or {}).get("epoch", "?"))
