"""Training library: ``train_and_evaluate(config, workdir)`` with ``model.fit``.

A run directory holds everything a run produces (the file names and formats are
:mod:`keras_resnet_cifar.run_files`'s, its rules
:mod:`~keras_resnet_cifar.training.lock`'s and
:mod:`~keras_resnet_cifar.training.resume_state`'s):

    config.json            the TrainConfig that produced the run
    history.csv/.json      one row per epoch: epoch (1-based), loss (cross-entropy plus
                           the weight-decay term), cross_entropy and accuracy (training,
                           on augmented batches, running means over the epoch),
                           val_loss, val_cross_entropy, val_accuracy (on the eval set:
                           "test" by default, "validation" with --validation_split),
                           learning_rate, epoch_time_s, images_per_sec
    metrics.json           final test accuracy/loss, best epoch and the set it was
                           chosen on, parameter counts, wall time, images/s, versions
    model.keras            the final model (the commands add curves.png, its curves)
    checkpoints/last.keras, checkpoints/best.keras (best val_accuracy on the eval set)
    backup/state.npz       the resume state (variables, optimiser, epoch, history)

Every file is written atomically (temporary file, fsync, rename). A run stopped
at any instant (SIGKILL, SIGTERM, Ctrl-C, a full disk) resumes from its last
complete epoch with the same command; with ``--deterministic`` it then ends
bit-identical to a run that was never stopped.

With ``--distribute=multi_worker`` only the chief writes the run directory; every
other worker keeps its own state (history, resume state) in
``workertemp_<task id>/`` below it, as the TensorFlow multi-worker guide
recommends, so that all workers take the same resume decisions
(:mod:`~keras_resnet_cifar.training.distribution`).

The rest of the training room: :mod:`~keras_resnet_cifar.training.callbacks` (what
runs at each epoch's end), :mod:`~keras_resnet_cifar.training.batch_norm` (the
fused BatchNorm), :mod:`~keras_resnet_cifar.training.optimizer` (the reference
SGD and the learning-rate schedule).
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

from keras_resnet_cifar import environment, fileio, signals
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import arch, networks
from keras_resnet_cifar.errors import plural
from keras_resnet_cifar.training import batch_norm, distribution, lock, resume_state
from keras_resnet_cifar import run_files
from keras_resnet_cifar.training import callbacks as callbacks_lib
from keras_resnet_cifar.training.optimizer import ReferenceSGD, StepSchedule


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
    one fused TensorFlow kernel
    (:func:`keras_resnet_cifar.training.batch_norm.fuse_batch_norm`).
    """
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    model = networks.build_model(config.model, shortcut=config.shortcut,
                               weight_decay=config.weight_decay,
                               weight_decay_scope=config.weight_decay_scope,
                               sync_batchnorm=replicas > 1)
    if config.mixed_precision != "float32":
        model = batch_norm.float32_batch_norm(model)
    batch_norm.fuse_batch_norm(model)
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


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike,
                       callbacks: Sequence[keras.callbacks.Callback] = (),
                       verbose: int | str = "auto",
                       data: datasets.Cifar10 | None = None,
                       evaluate_every_epoch: bool = True) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming what is there) and returns metrics.json.

    The rules of the run directory (one process, one recipe, the resume state) are
    :mod:`keras_resnet_cifar.training.lock`'s and
    :mod:`keras_resnet_cifar.training.resume_state`'s. The data are loaded and checked before a
    new run directory is created, so a run refused for its input leaves none.

    Args:
        config: the run's configuration.
        workdir: the run directory (created if needed).
        callbacks: extra Keras callbacks.
        verbose: progress output: ``"auto"`` (the default) a progress line inside
            each epoch on stderr (see :class:`callbacks.ProgressLine`) and one summary line per
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
        keras_resnet_cifar.signals.Interrupted: SIGINT or SIGTERM (the run resumes
            with the same command).
    """
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
                         "(raise --epochs to continue it, or use another run directory).",
                         workdir, config.epochs)
            return run_files.read_metrics(workdir)
        lock.start(workdir, config, plan)
        try:
            return _train(config, workdir, plan, strategy, chief, *data_splits,
                          callbacks=callbacks, verbose=verbose, stop=stop,
                          evaluate_every_epoch=evaluate_every_epoch)
        except KeyboardInterrupt:
            logging.warning("%s: training stopped. %s holds %d of %d epochs; run the same "
                            "command to resume.", stop.received or "interrupted", workdir,
                            resume_state.read_state_epoch(workdir) or 0, config.epochs)
            raise


def _train(config: TrainConfig, workdir: Path, plan: lock.Plan,
           strategy: tf.distribute.Strategy, chief: bool, train: datasets.Split,
           evaluation: datasets.Split, data: datasets.Cifar10, *,
           callbacks: Sequence[keras.callbacks.Callback], verbose: int | str,
           stop: signals.StopSignals, evaluate_every_epoch: bool = True) -> dict[str, Any]:
    logging.info("data: %s; %s, %s", data.source, plural(len(train.labels), "training image"),
                 plural(len(evaluation.labels), f"{config.eval_set} image"))
    with strategy.scope():
        model = build_and_compile(config, strategy.num_replicas_in_sync)
        # Built now (fit would build it at its first step) so a resume can fill it.
        model.optimizer.build(model.trainable_variables)
        state = resume_state.restore_state(workdir, model) if plan.state_epoch else None
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
    if steps % config.steps_per_execution:  # TrainConfig refuses this for the known sizes
        raise UserError(f"--steps_per_execution={config.steps_per_execution} does not divide "
                        f"the {steps} steps of an epoch of {len(train.labels)} images.")
    images_per_epoch = steps * config.batch_size if config.steps_per_epoch else len(train.labels)
    writer = callbacks_lib.RunWriter(workdir, config, chief, state, stop)
    # "auto": this module's progress line (stderr) and no Keras output, so each epoch
    # is one summary line; 1 or 2: Keras' own bar or line as well; 0: summaries only.
    keras_verbose = verbose if verbose in (1, 2) else 0
    eval_batches = math.ceil(len(evaluation.labels) / config.batch_size)
    if config.eval_steps:
        eval_batches = min(eval_batches, config.eval_steps)
    progress = (callbacks_lib.ProgressLine(config.epochs, steps, eval_batches, config.eval_set)
                if verbose == "auto" else None)
    run_callbacks = [
        StepSchedule(config),
        callbacks_lib.EpochTimer(images_per_epoch),
        callbacks_lib.StopOnNonFiniteLoss(config),
        *([progress] if progress else []),  # before the writer: it clears its line first
        writer,
    ]
    if chief:
        run_callbacks.append(keras.callbacks.TensorBoard(
            log_dir=str(run_files.path(workdir, run_files.TENSORBOARD)), profile_batch=0))
    run_callbacks += list(callbacks)

    started = time.perf_counter()
    if initial_epoch < config.epochs:
        # Epoch e's batches depend on (seed, e) only: a resumed run sees exactly the
        # batches the uninterrupted one would have.
        train_ds = distribution.shard_by_data(pipeline.train_dataset(
            train, config.batch_size, seed=config.seed, first_epoch=initial_epoch,
            last_epoch=config.epochs, steps_per_epoch=config.steps_per_epoch))
        if strategy is not tf.distribute.get_strategy():
            distribution.build_from_spec(model, strategy, train_ds)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            distribution.vector_logs(model)
        try:
            model.fit(train_ds, initial_epoch=initial_epoch, epochs=config.epochs,
                      steps_per_epoch=steps,
                      validation_data=(_eval_ds(evaluation, config) if evaluate_every_epoch
                                       else None),
                      callbacks=run_callbacks, verbose=keras_verbose, shuffle=False)
        except KeyboardInterrupt:
            if progress:  # the stop's message starts a line of its own
                progress.clear()
            raise
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
        run_files.save_model(model, workdir, run_files.MODEL)
    metrics = _metrics(config, model, rows, best, data, strategy, test_loss, test_accuracy,
                       fit_seconds)
    run_files.write_metrics(workdir, metrics)
    logging.info("%s: test accuracy %.4f on %s, test loss %.4f (cross-entropy from the "
                 "logits); wrote %s", model.name, test_accuracy,
                 plural(metrics["test_images"], "image"), test_loss, workdir)
    return metrics


def _eval_ds(split: datasets.Split, config: TrainConfig) -> tf.data.Dataset:
    """The evaluation pipeline, cut at ``--eval_steps`` batches.

    Cut here rather than with ``validation_steps``: Keras keeps a capped
    iterator across epochs, so each epoch would see the next slice of the set.
    """
    ds = pipeline.eval_dataset(split, config.batch_size)
    if config.eval_steps:
        ds = ds.take(config.eval_steps)
    return distribution.shard_by_data(ds)


def _repair(workdir: Path, model: keras.Model, state: resume_state.State,
            config: TrainConfig,
            chief: bool) -> None:
    """Rewrites the files that lag the restored resume state (a kill between writes)."""
    run_files.write_history(workdir, config.eval_set, state.history)
    if chief:
        run_files.save_model(model, workdir, run_files.LAST)
        # checkpoints/best.keras is checked, not trusted: a damaged one would only be
        # found when a tool loads it, long after this session.
        damaged = run_files.is_damaged_model(workdir, run_files.BEST)
        if state.best and state.best["epoch"] == state.epoch and (
                damaged or run_files.read_best(workdir) != state.best):
            run_files.save_model(model, workdir, run_files.BEST)
            run_files.write_best(workdir, state.best)
            if damaged:
                logging.warning("%s was damaged (truncated or corrupt); rewritten from the "
                                "resume state (epoch %d).", run_files.path(workdir, run_files.BEST),
                                state.epoch)
        elif damaged:
            logging.warning(
                "%s is damaged (truncated or corrupt) and cannot be rebuilt: its weights "
                "(epoch %s) exist nowhere else. It is replaced when an epoch improves on "
                "that one; until then use --checkpoint=last.", run_files.path(workdir, run_files.BEST),
                (state.best or {}).get("epoch", "?"))


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
        **environment.provenance(config.data_dir),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
