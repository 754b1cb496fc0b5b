r"""Measures, on this machine, how fast the project trains, reads data, evaluates and serves.

    python -m keras_resnet_cifar.benchmark --models=resnet20,resnet56
    python -m keras_resnet_cifar.benchmark --models=resnet20 --peer=~/venvs/torch-peer/bin/python
    python -m keras_resnet_cifar.benchmark --export=exports/resnet20/1 --json=bench.json

Prints a table (and, with ``--json=PATH`` or ``--json=-``, the same figures as
JSON) of:

* training images/s of ``model.fit`` on the real training path: the project's
  ``build_and_compile`` and ``input_pipeline.train_dataset`` (shuffle and
  augmentation included) over synthetic or ``--data_dir`` data. Every training
  flag of ``keras_resnet_cifar.train`` that bears on speed is a flag here too
  (``--batch_size``, ``--mixed_precision``, ``--jit_compile``, ``--distribute``,
  ``--weight_decay``, ...); ``--models`` replaces ``--model``;
* the input pipeline alone (images/s, no model), and how many times the fastest
  training rate it is;
* evaluation images/s (``model.evaluate`` on the evaluation pipeline);
* with ``--export``, SavedModel and TFLite batch-1 latency and batch-128 images/s.
  ``--export`` alone measures only the exports; add ``--models`` to train too.

Each figure is the median of ``--repeats`` timed repeats after a warm-up that is
not counted, with the spread (min, max). With ``--peer=<python>`` the PyTorch peer
(``scripts/torch_peer.py``, in its own environment: this project never imports
torch; setup in that script) runs after each timed training repeat, in each of
``--peer_modes`` (default: its fastest CPU configuration, ``channels_last``), so
the two alternate A B A B ... on the same machine, and the ratio is reported pair
by pair and as a median, with the date and the load average: this machine's
speed drifts, and other work sharing its cores slows the peer most.
"""

from __future__ import annotations

import os
import platform

# Before TensorFlow loads (the package's modules import Keras), as in train.py:
# oneDNN's CPU kernels, which TF leaves off on x86 CPUs without AVX-512 VNNI/AMX.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

from absl import app, flags  # noqa: E402

from keras_resnet_cifar import train_flags  # noqa: E402
from keras_resnet_cifar.config import TrainConfig  # noqa: E402
from keras_resnet_cifar.errors import UserError, run_cli  # noqa: E402

# The peer ships with the repository (scripts/), not with the installed package.
PEER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch_peer.py"
# The peer's configurations: name -> its command-line flags.
PEER_MODES = {"default": (), "channels_last": ("--channels_last",),
              "compile": ("--compile",), "channels_last+compile": ("--channels_last", "--compile")}
# TrainConfig fields that do not bear on the speed of a training step: not benchmark flags.
NOT_SPEED = ("model", "epochs", "lr_boundaries", "lr_decay", "warmup_epochs",
             "warmup_learning_rate", "steps_per_epoch", "eval_steps", "validation_split")
_PEER_RATE = re.compile(r"img/s=([0-9.]+)")


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, spread ((max - min) / median, in %) and the samples themselves."""
    samples = [float(s) for s in samples]
    median = statistics.median(samples)
    return {"median": median, "min": min(samples), "max": max(samples),
            "spread_pct": 100.0 * (max(samples) - min(samples)) / median if median else 0.0,
            "samples": samples}


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, versions, threads, load, date."""
    import tensorflow as tf

    from keras_resnet_cifar import environment

    return {
        **environment.describe(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def build(config) -> tuple[Any, Any]:
    """(compiled model, strategy) of ``config``, as training builds them."""
    import keras

    from keras_resnet_cifar import training

    strategy = training.make_strategy(config.distribute)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = training.build_and_compile(config, strategy.num_replicas_in_sync)
    return model, strategy


def train_rate(model, config, split, *, steps: int, repeats: int,
               between: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Training images/s of ``model.fit`` on the real training path.

    One ``fit`` of ``repeats + 1`` epochs of ``steps`` steps over the repeated
    training pipeline; the first epoch (tracing, pipeline start) is the warm-up.
    Only each epoch's training is timed (there is no validation); ``between(i)``
    runs after timed epoch ``i``, outside the timing (the peer, for A B A B).

    Args:
        model: the compiled model (:func:`build`).
        config: its :class:`~keras_resnet_cifar.config.TrainConfig` (batch, seed).
        split: the training images.
        steps: training steps per timed repeat.
        repeats: timed repeats.
        between: called with the repeat index after each timed repeat.

    Returns:
        :func:`summarize` of the images/s of the repeats.
    """
    import keras

    from keras_resnet_cifar import input_pipeline

    ds = input_pipeline.train_dataset(split, config.batch_size, seed=config.seed).repeat()
    rates = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.start
            if epoch == 0:
                return  # warm-up
            rates.append(steps * config.batch_size / elapsed)
            if between is not None:
                between(epoch - 1)

    model.fit(ds, epochs=repeats + 1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()],
              shuffle=False)  # tf.data shuffles
    return summarize(rates)


def pipeline_rate(split, batch_size: int, *, batches: int, repeats: int,
                  seed: int = 0) -> dict[str, Any]:
    """Images/s of the training input pipeline alone (shuffle, augment, cast, prefetch)."""
    from keras_resnet_cifar import input_pipeline

    iterator = iter(input_pipeline.train_dataset(split, batch_size, seed=seed).repeat())
    for _ in range(min(batches, 10)):  # warm-up: shuffle buffer, autotuning
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = sum(int(next(iterator)[1].shape[0]) for _ in range(batches))
        rates.append(images / (time.perf_counter() - start))
    return summarize(rates)


def eval_rate(model, split, batch_size: int, *, repeats: int) -> dict[str, Any]:
    """Images/s of ``model.evaluate`` on the evaluation pipeline (one warm-up pass)."""
    from keras_resnet_cifar import input_pipeline

    ds = input_pipeline.eval_dataset(split, batch_size)
    model.evaluate(ds, verbose=0)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.evaluate(ds, verbose=0)
        rates.append(len(split) / (time.perf_counter() - start))
    return summarize(rates)


def serving_rates(predict: Callable[..., Any], images, *, runs: int,
                  batch_size: int = 128) -> dict[str, Any]:
    """Batch-1 latency (ms) and batch-``batch_size`` images/s of a classifier's ``predict``."""
    one, batch = images[:1], images[:batch_size]
    for _ in range(3):  # warm-up: first calls trace, allocate, resize
        predict(one, batch_size=1)
        predict(batch, batch_size=batch_size)
    latencies = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(one, batch_size=1)
        latencies.append(1e3 * (time.perf_counter() - start))
    rates = []
    for _ in range(max(3, runs // 10)):
        start = time.perf_counter()
        predict(batch, batch_size=batch_size)
        rates.append(len(batch) / (time.perf_counter() - start))
    return {"latency_ms_batch1": summarize(latencies),
            f"images_per_sec_batch{batch_size}": summarize(rates)}


def export_rates(paths: Sequence[str], images, *, runs: int) -> dict[str, Any]:
    """:func:`serving_rates` of each SavedModel folder and ``.tflite`` file in ``paths``.

    A folder holding ``saved_model.pb`` is measured as a SavedModel, and every
    ``.tflite`` file in it too. A part whose runtime is not installed (or whose
    export module is absent) is reported as skipped, with the reason.

    Raises:
        UserError: a path that does not exist or holds neither.
    """
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"--export={path} does not exist.")
        if path.is_dir():
            if (path / "saved_model.pb").exists():
                found.append(("savedmodel", path))
            found += [("tflite", p) for p in sorted(path.glob("*.tflite"))]
        elif path.suffix == ".tflite":
            found.append(("tflite", path))
        if not any(p == path or p.parent == path for _, p in found):
            raise UserError(f"--export={path} is neither a SavedModel folder nor a .tflite file.")
    results = {}
    for kind, path in found:
        # Short keys for the table: "savedmodel:resnet56/1", "tflite:model_int8.tflite".
        key = f"{kind}:{path.name if kind == 'tflite' else '/'.join(path.parts[-2:])}"
        try:
            if kind == "savedmodel":
                from keras_resnet_cifar import serving
                predict = serving.load_classifier(path).predict
            else:
                from keras_resnet_cifar import edge
                predict = edge.TFLiteClassifier(path, num_threads=os.cpu_count() or 1).predict
        except ImportError as e:
            results[key] = {"skipped": f"{e.name or e} is not installed"}
            continue
        results[key] = {"path": str(path), **serving_rates(predict, images, runs=runs)}
    return results


def peer_rate(python: str, model: str, batch_size: int, steps: int,
              script: str | os.PathLike = PEER_SCRIPT, mode: str = "channels_last",
              timeout: float = 1800) -> float:
    """Images/s of one run of the PyTorch peer (``python script --model ...``) in ``mode``.

    Raises:
        UserError: the interpreter or script is missing, or the peer fails.
    """
    if not Path(script).is_file():
        raise UserError(f"No peer script at {script} (set --peer_script).")
    cmd = [python, os.fspath(script), "--model", model, "--batch", str(batch_size),
           "--steps", str(steps), *PEER_MODES[mode]]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"The peer could not run ({' '.join(cmd)}): {e}.") from None
    match = _PEER_RATE.search(run.stdout)
    if run.returncode or not match:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"The peer failed ({' '.join(cmd)}): {tail}")
    return float(match.group(1))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What :func:`run` measures: the benchmark's own options and one training config.

    ``base`` holds everything about training (batch, precision, XLA, distribution,
    data; the flags of :mod:`keras_resnet_cifar.train_flags`); each model of
    ``models`` is timed with ``base`` and that model.
    """

    base: TrainConfig
    models: tuple[str, ...] = ("resnet20", "resnet56")
    steps: int = 20
    repeats: int = 5
    pipeline_batches: int = 200
    export: tuple[str, ...] = ()
    export_runs: int = 100
    peer: str | None = None
    peer_script: str = os.fspath(PEER_SCRIPT)
    peer_modes: tuple[str, ...] = ("channels_last",)


def _check_peer_modes(modes: Sequence[str]) -> None:
    if not modes or set(modes) - set(PEER_MODES):
        raise UserError(f"--peer_modes must name some of {', '.join(PEER_MODES)}, got "
                        f"{','.join(modes) or 'none'}.")


def run(plan: Plan) -> dict[str, Any]:
    """Every measurement of ``plan``, as one JSON-ready dict (data only, no models).

    Raises:
        UserError: nothing to measure, or a bad model name or peer mode.
    """
    from keras_resnet_cifar import datasets

    if not plan.models and not plan.export:
        raise UserError("Nothing to measure: --models is empty and no --export is given.")
    _check_peer_modes(plan.peer_modes)
    configs = [dataclasses.replace(plan.base, model=m) for m in plan.models]
    for config in configs:  # bad names fail before any work
        try:
            config.from_dict(dataclasses.asdict(config))
        except ValueError as e:
            raise UserError(str(e)) from None
    base = plan.base
    data = datasets.load(base.dataset, base.data_dir, seed=0,
                         synthetic_sizes=(base.synthetic_train_size, base.synthetic_test_size))
    settings = {k: v for k, v in dataclasses.asdict(plan).items() if k != "base"}
    settings.update({k: v for k, v in dataclasses.asdict(base).items() if k not in NOT_SPEED})
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {**settings, "data": data.source},
        "training": {}, "evaluation": {},
    }
    for config in configs:
        peer_rates: dict[str, list[float]] = {mode: [] for mode in plan.peer_modes}

        def between(_, model=config.model):
            for mode in plan.peer_modes:
                peer_rates[mode].append(peer_rate(plan.peer, model, base.batch_size,
                                                  plan.steps, plan.peer_script, mode))

        model, strategy = build(config)
        rates = train_rate(model, config, data.train, steps=plan.steps, repeats=plan.repeats,
                           between=between if plan.peer else None)
        from keras_resnet_cifar import models as model_lib

        entry: dict[str, Any] = {"images_per_sec": rates,
                                 "params": model_lib.count_trainable_params(model),
                                 "replicas": strategy.num_replicas_in_sync}
        if plan.peer:
            entry["peer"] = {}
            for mode, samples in peer_rates.items():
                pairs = [a / b for a, b in zip(rates["samples"], samples)]
                entry["peer"][mode] = {"images_per_sec": summarize(samples),
                                       "ratio": {"pairs": pairs,
                                                 "median": statistics.median(pairs)}}
        report["training"][config.model] = entry
        report["evaluation"][config.model] = {
            "images_per_sec": eval_rate(model, data.test, base.batch_size,
                                        repeats=plan.repeats)}
        del model
    if report["training"]:
        pipeline = pipeline_rate(data.train, base.batch_size, batches=plan.pipeline_batches,
                                 repeats=plan.repeats)
        fastest = max(e["images_per_sec"]["median"] for e in report["training"].values())
        report["pipeline"] = {"images_per_sec": pipeline,
                              "times_fastest_training": pipeline["median"] / fastest}
    else:
        report["pipeline"] = {"skipped": "no training measured (--models is empty)"}
    report["export"] = (export_rates(plan.export, data.test.images, runs=plan.export_runs)
                        if plan.export else {"skipped": "no --export given"})
    # Other work on the machine slows both sides, the peer's OpenMP threads most.
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table (every figure of the JSON but the samples)."""
    m = report["machine"]
    s = report["settings"]
    when = (f"{m['date']}; load average (1, 5, 15 min) {' '.join(map(str, m['load_average']))}"
            f" before, {' '.join(map(str, m['load_average_after']))} after")
    lines = [
        f"machine: {m['cpu']}, {m['cpu_cores']} cores, GPUs {m['gpus'] or 'none'}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}; "
        f"TF_ENABLE_ONEDNN_OPTS={m['onednn']}; threads intra {m['intra_op_threads']} "
        f"inter {m['inter_op_threads']} (0 = TF default); {when}",
        f"settings: batch {s['batch_size']}, {s['steps']} steps x {s['repeats']} repeats "
        f"after a warm-up, {s['mixed_precision']}, jit_compile={s['jit_compile']}, "
        f"steps_per_execution={s['steps_per_execution']}, data: {s['data']}",
        "",
    ]
    rows: list[tuple[str, str]] = []  # (label, figures)

    def row(name, stats, fmt="{:10.1f}"):
        rows.append((name, " ".join(fmt.format(stats[k]) for k in ("median", "min", "max"))
                     + f" {stats['spread_pct']:6.1f}%"))

    ratios = []
    for name, entry in report["training"].items():
        row(f"train {name} (img/s, {entry['params']:,} params)", entry["images_per_sec"])
        for mode, peer in entry.get("peer", {}).items():
            row(f"peer  {name} (img/s, PyTorch, {mode})", peer["images_per_sec"])
            ratio = peer["ratio"]
            label = f"ratio {name} (project / peer {mode})"
            rows.append((label, f"{ratio['median']:10.3f}   pairs: "
                         + " ".join(f"{r:.3f}" for r in ratio["pairs"])))
            ratios.append(f"{name} {ratio['median']:.2f}x vs {mode}")
    for name, entry in report["evaluation"].items():
        row(f"evaluate {name} (img/s)", entry["images_per_sec"])
    p = report["pipeline"]
    if "skipped" in p:
        rows.append(("input pipeline", f"skipped: {p['skipped']}"))
    else:
        row("input pipeline alone (img/s)", p["images_per_sec"], "{:10.0f}")
        rows.append(("input pipeline / fastest training", f"{p['times_fastest_training']:10.1f}x"))
    export = report["export"]
    if "skipped" in export:
        rows.append(("export", f"skipped: {export['skipped']}"))
    for key, entry in export.items() if "skipped" not in export else ():
        if "skipped" in entry:
            rows.append((key, f"skipped: {entry['skipped']}"))
            continue
        row(f"{key} batch-1 (ms)", entry["latency_ms_batch1"], "{:10.2f}")
        row(f"{key} batch-128 (img/s)", entry["images_per_sec_batch128"])
    width = max([44] + [len(label) for label, _ in rows])
    lines.append(f"{'measurement':{width}s} {'median':>10s} {'min':>10s} {'max':>10s} "
                 f"{'spread':>7s}")
    lines += [f"{label:{width}s} {figures}" for label, figures in rows]
    if ratios:
        lines += ["", f"project / PyTorch peer, median of A B pairs: {'; '.join(ratios)} "
                      f"(measured {when}; compare only runs at a load near the benchmark's "
                      "own, about 2 on 2 cores)"]
    return "\n".join(lines)


def define_flags() -> None:
    """The benchmark's flags: train's training flags that bear on speed, and its own."""
    train_flags.define_config_flags(defaults=TrainConfig(
        dataset="synthetic", synthetic_train_size=10000, synthetic_test_size=2000),
        exclude=NOT_SPEED)
    defaults = Plan(base=TrainConfig())
    flags.DEFINE_list("models", list(defaults.models), "Models to train: plainN / resnetN. "
                      "Empty (--models=) with --export: measure the exports only.")
    flags.DEFINE_integer("steps", defaults.steps, "Training steps per timed repeat.")
    flags.DEFINE_integer("repeats", defaults.repeats, "Timed repeats of every measurement.")
    flags.DEFINE_integer("pipeline_batches", defaults.pipeline_batches,
                         "Batches per timed repeat of the input pipeline alone.")
    flags.DEFINE_list("export", [], "SavedModel folders and/or .tflite files to measure. "
                      "Without --models, only these are measured.")
    flags.DEFINE_integer("export_runs", defaults.export_runs, "Batch-1 calls per export.")
    flags.DEFINE_string("peer", None, "Python of the PyTorch peer's environment (see "
                        "scripts/torch_peer.py): run the peer after each timed training "
                        "repeat.")
    flags.DEFINE_string("peer_script", defaults.peer_script, "The peer's script.")
    flags.DEFINE_list("peer_modes", list(defaults.peer_modes),
                      f"The peer's configurations to run, each labelled: "
                      f"{', '.join(PEER_MODES)}. channels_last is its fastest on CPU.")
    flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF's default).")
    flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF's default).")
    flags.DEFINE_string("json", None, "Also write the figures as JSON to this path "
                        "('-': standard output, after the table).")


def plan_from_flags(flag_values: flags.FlagValues) -> Plan:
    """The Plan of the parsed flags, checked before any measurement.

    Raises:
        UserError: a bad value, an --export path that does not exist, a missing peer.
    """
    for name in ("steps", "repeats", "pipeline_batches", "export_runs"):
        if flag_values[name].value < 1:
            raise UserError(f"--{name} must be positive, got {flag_values[name].value}.")
    models = tuple(flag_values.models)
    if flag_values.export and not flag_values["models"].present:
        models = ()  # --export alone: measure the exports, train nothing
    if not models and not flag_values.export:
        raise UserError("--models is empty: name models to train (e.g. --models=resnet20), "
                        "or give --export to measure exports only.")
    for path in flag_values.export:  # before minutes of training
        if not Path(path).expanduser().exists():
            raise UserError(f"--export={path} does not exist.")
    _check_peer_modes(flag_values.peer_modes)
    peer = flag_values.peer and os.path.expanduser(flag_values.peer)
    if peer and not (Path(peer).is_file() or _on_path(peer)):
        raise UserError(f"--peer={flag_values.peer} is not a Python interpreter that exists.")
    base = train_flags.config_from_flags(flag_values, model=models[0] if models else "resnet20")
    return Plan(base=base, models=models, steps=flag_values.steps,
                repeats=flag_values.repeats, pipeline_batches=flag_values.pipeline_batches,
                export=tuple(os.path.expanduser(p) for p in flag_values.export),
                export_runs=flag_values.export_runs, peer=peer or None,
                peer_script=os.path.expanduser(flag_values.peer_script),
                peer_modes=tuple(flag_values.peer_modes))


def main(argv):
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    plan = plan_from_flags(FLAGS)
    import tensorflow as tf

    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    report = run(plan)
    print(format_table(report))
    if FLAGS.json:
        text = json.dumps(report, indent=2) + "\n"
        if FLAGS.json == "-":
            print(text, end="")
        else:
            from keras_resnet_cifar import fileio
            fileio.write_text(Path(FLAGS.json), text)


def _on_path(name: str) -> bool:
    import shutil
    return shutil.which(name) is not None


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
