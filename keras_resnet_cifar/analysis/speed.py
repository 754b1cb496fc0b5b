"""Measures how fast the project trains, reads data, evaluates and serves (the benchmark's library).

`run(plan)` returns every figure as one JSON-ready dict; speed_table lays it out and
benchmark.py is the command. Each figure is a `summarize` of timed repeats after an
untimed warm-up; a peer (peer.py) runs after each timed training repeat so that the two
alternate A B A B on the same machine."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from absl import logging

from keras_resnet_cifar import environment
from keras_resnet_cifar.analysis import peer
from keras_resnet_cifar.models import arch  # no Keras on import: the CLI checks its flags first
from keras_resnet_cifar.config import PRECISIONS, TrainConfig
from keras_resnet_cifar.data import datasets  # no TensorFlow on import
from keras_resnet_cifar.errors import UserError

# TrainConfig fields that do not bear on the speed of a training step: not benchmark flags.
NOT_SPEED = ("model", "epochs", "lr_boundaries", "lr_decay", "warmup_epochs",
             "warmup_learning_rate", "steps_per_epoch", "eval_steps", "validation_split")
# Far beyond any useful measurement (minutes), but never an endless one (repeats=1e20).
MAX_COUNTS = {"steps": 10_000, "repeats": 1_000, "pipeline_batches": 100_000,
              "inference_runs": 100_000}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Each of `models` trained with `base`, and the saved models of `model_paths`."""

    base: TrainConfig
    models: tuple[str, ...] = ("resnet20", "resnet56")
    steps: int = 20
    repeats: int = 5
    pipeline_batches: int = 200
    model_paths: tuple[str, ...] = ()
    inference_runs: int = 100
    num_threads: int = 0  # of a .tflite model; 0: every core
    trust_savedmodel: bool = False  # load SavedModels that the exporter did not write
    peer: tuple[str, ...] = ()  # the peer's command (interpreter, script); () for none
    peer_modes: tuple[str, ...] = ("channels_last",)  # the peer's configurations (--mode)
    # Training variants timed in turn, each a precision with "+xla" for XLA
    # ("float32", "mixed_bfloat16", "float32+xla"); () for base's own.
    variants: tuple[str, ...] = ()


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, spread ((max - min) / median, in %) and the samples themselves."""
    samples = [float(s) for s in samples]
    median = statistics.median(samples)
    return {"median": median, "min": min(samples), "max": max(samples),
            "spread_pct": 100.0 * (max(samples) - min(samples)) / median if median else 0.0,
            "samples": samples}


def machine() -> dict[str, Any]:
    import tensorflow as tf

    return {**environment.describe(),
            # Native bfloat16 arithmetic: what mixed_bfloat16 can gain here (None: unknown).
            "bfloat16_cpu_flags": environment.bfloat16_support(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def build(config) -> tuple[Any, Any]:
    """(compiled model, strategy) of `config`, as training builds them."""
    import keras

    from keras_resnet_cifar.training import distribution, loop

    strategy = distribution.make_strategy(config.distribute)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = loop.build_and_compile(config, strategy.num_replicas_in_sync)
    return model, strategy


def train_rates(models: dict[str, tuple[Any, TrainConfig]], split, *, steps: int, repeats: int,
                between: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Label -> `summarize` of the training images/s of each (warmed-up model, config).

    Repeat i of every model runs before repeat i + 1 of any (A B A B); `between(i)` runs
    after repeat i, untimed. Each repeat is one `fit`, which starts a new iterator: the
    steps of its first train-function call (waiting for the first batch) are not timed."""
    import keras

    from keras_resnet_cifar.data import pipeline

    def fit(model, config, ds) -> float:
        ends = []
        timer = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
        model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer],
                  shuffle=False)  # tf.data shuffles
        timed = steps - steps // len(ends)  # the first call's steps are not
        return timed * config.batch_size / (ends[-1] - ends[0])

    streams = {label: pipeline.train_dataset(split, c.batch_size, seed=c.seed).repeat()
               for label, (_, c) in models.items()}
    rates: dict[str, list[float]] = {label: [] for label in models}
    for i in range(repeats):
        for label, (model, config) in models.items():
            rates[label].append(fit(model, config, streams[label]))
            logging.info("%s: training repeat %d/%d: %.1f img/s", label, i + 1, repeats,
                         rates[label][-1])
        if between is not None:
            between(i)
    return {label: summarize(samples) for label, samples in rates.items()}


def warm_up(label: str, model, config, split, *, steps: int) -> None:
    """One untimed `fit`: traces the step under the current dtype policy."""
    from keras_resnet_cifar.data import pipeline

    start = time.perf_counter()
    model.fit(pipeline.train_dataset(split, config.batch_size, seed=config.seed).repeat(),
              epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    logging.info("%s: warm-up done (%.0f s)", label, time.perf_counter() - start)


def per_second(work: Callable[[], int], repeats: int) -> dict[str, Any]:
    """`summarize` of items/s over `repeats` timed calls of `work` (which returns its items)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        rates.append(work() / (time.perf_counter() - start))  # work() runs first
    return summarize(rates)


def pipeline_rate(split, batch_size: int, *, batches: int, repeats: int,
                  seed: int = 0) -> dict[str, Any]:
    """Images/s of the training input pipeline alone (shuffle, augment, cast, prefetch)."""
    from keras_resnet_cifar.data import pipeline

    iterator = iter(pipeline.train_dataset(split, batch_size, seed=seed).repeat())
    for _ in range(min(batches, 10)):  # warm-up: shuffle buffer, autotuning
        next(iterator)
    return per_second(lambda: sum(int(next(iterator)[1].shape[0]) for _ in range(batches)),
                      repeats)


def eval_rate(model, split, batch_size: int, *, repeats: int) -> dict[str, Any]:
    """Images/s of `model.evaluate` on the evaluation pipeline (after one warm-up pass)."""
    from keras_resnet_cifar.data import pipeline

    ds = pipeline.eval_dataset(split, batch_size)

    def evaluate_all() -> int:
        model.evaluate(ds, verbose=0)
        return len(split)

    evaluate_all()
    return per_second(evaluate_all, repeats)


def serving_rates(predict: Callable[..., Any], images, *, runs: int,
                  batch_size: int = 128) -> dict[str, Any]:
    """Batch-1 latency (ms) and full-batch images/s of `predict` (a short `images` repeats)."""
    one = images[:1]
    batch = np.resize(images[:batch_size], (batch_size, *np.shape(images)[1:]))
    for _ in range(3):  # warm-up: first calls trace, allocate, resize
        predict(one, batch_size=1)
        predict(batch, batch_size=batch_size)
    calls = per_second(lambda: len(predict(one, batch_size=1)), runs)
    rates = per_second(lambda: len(predict(batch, batch_size=batch_size)), max(3, runs // 10))
    return {"latency_ms_batch1": summarize([1e3 / r for r in calls["samples"]]),
            f"images_per_sec_batch{batch_size}": rates}


def inference_rates(paths: Sequence[str | os.PathLike], images, *, runs: int,
                    num_threads: int, trust_savedmodel: bool = False) -> dict[str, Any]:
    """`serving_rates` of each model (anything predictor.load takes), keyed by a short
    label (saved_model:resnet56/1, tflite:model_int8.tflite), or by path where two clash."""
    from keras_resnet_cifar.deploy import predictor

    results: dict[str, Any] = {}
    for path in paths:
        model = predictor.load(path, num_threads=num_threads, trust_savedmodel=trust_savedmodel)
        where = Path(path)
        key = f"{model.kind}:{'/'.join(where.parts[-2:]) if where.is_dir() else where.name}"
        key = key if key not in results else f"{model.kind}:{path}"
        logging.info("timing %s: %d batch-1 calls", key, runs)
        results[key] = {"path": os.fspath(path), "kind": model.kind,
                        **serving_rates(model.predict, images, runs=runs)}
    return results


def variant_configs(plan: Plan) -> dict[str, TrainConfig]:
    """Label -> training config of each of `plan.variants` (`plan.base` alone without)."""
    if not plan.variants:
        return {plan.base.mixed_precision + ("+xla" if plan.base.jit_compile else ""): plan.base}
    if len(set(plan.variants)) < len(plan.variants):
        raise UserError(f"variants names a variant twice: {','.join(plan.variants)}.",
                        argument="variants")
    configs = {}
    for variant in plan.variants:
        precision, _, suffix = variant.partition("+")
        if suffix not in ("", "xla"):
            raise UserError(f"variants: {variant!r} is not a precision with an optional +xla "
                            "(e.g. float32, mixed_bfloat16, float32+xla).", argument="variants")
        try:
            configs[variant] = dataclasses.replace(plan.base, mixed_precision=precision,
                                                   jit_compile=bool(suffix))
        except ValueError:
            raise UserError(f"variants: {precision!r} is not one of "
                            f"{', '.join(PRECISIONS)}.", argument="variants") from None
    return configs


def check_plan(plan: Plan) -> None:
    """Raises UserError for a plan that cannot run, before any work (and TensorFlow)."""
    from keras_resnet_cifar.deploy import predictor

    if not plan.models and not plan.model_paths:
        raise UserError("models is empty: name models to train (e.g. resnet20), or saved "
                        "models to time.", argument="models")
    for name in plan.models:
        try:
            arch.parse_name(name)
        except ValueError as e:
            raise UserError(str(e)) from None
    if len(set(plan.models)) < len(plan.models):
        raise UserError(f"models names a model twice: {','.join(plan.models)}.", argument="models")
    for name, most in MAX_COUNTS.items():
        if not 1 <= getattr(plan, name) <= most:
            raise UserError(f"{name} must be in [1, {most:,}], got {getattr(plan, name)}.",
                            argument=name)
    if plan.num_threads < 0:
        raise UserError(f"num_threads must be >= 0 (0: every core), got {plan.num_threads}.",
                        argument="num_threads")
    if plan.peer and not plan.peer_modes:
        raise UserError("peer_modes is empty: name the peer's configurations to run.",
                        argument="peer_modes")
    spe = plan.base.steps_per_execution
    if plan.models and plan.steps < 2 * spe:  # the first call of each repeat is untimed
        raise UserError(f"steps must be at least 2 x steps_per_execution ({2 * spe}), "
                        f"got {plan.steps}.", argument="steps")
    variant_configs(plan)
    for path in plan.model_paths:  # before minutes of training
        predictor.resolve(path, trust_savedmodel=plan.trust_savedmodel)


def run(plan: Plan) -> dict[str, Any]:
    """Every measurement of `plan` as one JSON-ready dict (data only, no models); the saved
    models are timed first: one that cannot be loaded fails before minutes of training."""
    check_plan(plan)
    base = plan.base
    data = datasets.load(base.dataset, base.data_dir, seed=0,
                         synthetic_sizes=(base.synthetic_train_size, base.synthetic_test_size))
    settings = {k: v for k, v in dataclasses.asdict(plan).items() if k != "base"}
    settings.update({k: v for k, v in dataclasses.asdict(base).items() if k not in NOT_SPEED})
    report: dict[str, Any] = {
        "machine": machine(), "settings": {**settings, "data": data.source},
        "training": {}, "evaluation": {},
        "inference": (inference_rates(plan.model_paths, data.test.images, runs=plan.inference_runs,
                                      num_threads=plan.num_threads or os.cpu_count() or 1,
                                      trust_savedmodel=plan.trust_savedmodel)
                      if plan.model_paths else {"skipped": "no --model_path given"})}
    for name in plan.models:
        training, evaluation = _time_model(plan, name, data)
        report["training"].update(training)
        report["evaluation"].update(evaluation)
    if report["training"]:
        logging.info("timing the input pipeline alone")
        pipeline = pipeline_rate(data.train, base.batch_size, batches=plan.pipeline_batches,
                                 repeats=plan.repeats)
        fastest = max(e["images_per_sec"]["median"] for e in report["training"].values())
        report["pipeline"] = {"images_per_sec": pipeline,
                              "times_fastest_training": pipeline["median"] / fastest}
    else:
        report["pipeline"] = {"skipped": "no training measured (--models is empty)"}
    # Other work on the machine slows both sides, the peer's OpenMP threads most.
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _time_model(plan: Plan, name: str, data) -> tuple[dict, dict]:
    """The training and evaluation entries of model `name`, every variant in turn."""
    import keras

    from keras_resnet_cifar.models import networks

    variants = variant_configs(plan)
    # One variant: keyed by the model's name, as before variants existed.
    labels = {v: name if len(variants) == 1 else f"{name} {v}" for v in variants}
    precisions = sorted({c.mixed_precision for c in variants.values()})
    peer_rates = {(mode, p): [] for mode in plan.peer_modes for p in precisions}

    def between(_):
        for mode, precision in peer_rates:
            peer_rates[mode, precision].append(peer.rate(
                plan.peer, name, plan.base.batch_size, plan.steps, mode, precision=precision))
            logging.info("%s: peer (%s%s): %.1f img/s", name, mode, "" if precision == "float32"
                         else f", {precision}", peer_rates[mode, precision][-1])

    logging.info("timing %s: training (%s in turn), 1 warm-up + %d x %d steps%s; then "
                 "evaluation", name, ", ".join(variants), plan.repeats, plan.steps,
                 " (the peer after each)" if plan.peer else "")
    built = {}
    for variant, config in variants.items():
        config = dataclasses.replace(config, model=name)
        model, strategy = build(config)
        warm_up(labels[variant], model, config, data.train, steps=plan.steps)
        built[labels[variant]] = (model, config)
    rates = train_rates(built, data.train, steps=plan.steps, repeats=plan.repeats,
                        between=between if plan.peer else None)
    first = next(iter(variants))
    training, evaluation = {}, {}
    for variant, label in labels.items():
        model, config = built[label]
        entry: dict[str, Any] = {"variant": variant, "images_per_sec": rates[label],
                                 "params": networks.count_trainable_params(model),
                                 "replicas": strategy.num_replicas_in_sync}
        if variant != first:
            entry["ratio_to_first"] = {"of": first, **peer.ratios(
                rates[label]["samples"], rates[labels[first]]["samples"])}
        if plan.peer:
            entry["peer"] = {mode: {"precision": config.mixed_precision,
                                    "images_per_sec": summarize(samples),
                                    "ratio": peer.ratios(rates[label]["samples"], samples)}
                             for mode in plan.peer_modes
                             for samples in [peer_rates[mode, config.mixed_precision]]}
        training[label] = entry
        # Keras reads the global dtype policy when it traces evaluate: a bfloat16 model
        # traced under float32 (the policy the last build left) runs at float32's speed.
        keras.mixed_precision.set_global_policy(config.mixed_precision)
        evaluation[label] = {"images_per_sec": eval_rate(model, data.test, plan.base.batch_size,
                                                         repeats=plan.repeats)}
    return training, evaluation
