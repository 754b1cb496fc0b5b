"""Measures, on this machine, how fast the project trains, reads data, evaluates and serves.

    python -m keras_resnet_cifar.benchmark --models=resnet20,resnet56
    python -m keras_resnet_cifar.benchmark --models=resnet20 --peer=/tmp/peer/bin/python
    python -m keras_resnet_cifar.benchmark --models=resnet20 --export=exports/resnet20/1 \
        --json=bench.json

Prints a table (and, with ``--json=PATH`` or ``--json=-``, the same figures as
JSON) of:

* training images/s of ``model.fit`` on the real training path: the project's
  ``build_and_compile`` and ``input_pipeline.train_dataset`` (shuffle and
  augmentation included) over synthetic or ``--data_dir`` data;
* the input pipeline alone (images/s, no model), and how many times the fastest
  training rate it is;
* evaluation images/s (``model.evaluate`` on the evaluation pipeline);
* with ``--export``, SavedModel and TFLite batch-1 latency and batch-128 images/s.

Each figure is the median of ``--repeats`` timed repeats after a warm-up that is
not counted, with the spread (min, max). With ``--peer=<python>`` the PyTorch peer
(``../shared/bench/torch_peer.py``, in its own environment: this project never
imports torch) runs after each timed training repeat, so the two alternate
A B A B ... on the same machine, and the ratio is reported pair by pair and as a
median: this machine's speed drifts, and other work may share its cores (the
load average is printed with the figures).
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

from keras_resnet_cifar.errors import UserError, run_cli  # noqa: E402

PEER_SCRIPT = Path(os.environ.get("KRC_SHARED", Path(__file__).resolve().parents[2] / "shared")
                   ) / "bench" / "torch_peer.py"
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


def train_rate(config, split, *, steps: int, repeats: int,
               between: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Training images/s of ``model.fit`` on the real training path.

    One ``fit`` of ``repeats + 1`` epochs of ``steps`` steps over the repeated
    training pipeline; the first epoch (tracing, pipeline start) is the warm-up.
    Only each epoch's training is timed (there is no validation); ``between(i)``
    runs after timed epoch ``i``, outside the timing (the peer, for A B A B).

    Args:
        config: a :class:`~keras_resnet_cifar.config.TrainConfig` (model, batch,
            precision, jit, steps per execution, distribution).
        split: the training images.
        steps: training steps per timed repeat.
        repeats: timed repeats.
        between: called with the repeat index after each timed repeat.

    Returns:
        :func:`summarize` of the images/s of the repeats, plus the model's
        ``params`` and ``replicas``.
    """
    import keras

    from keras_resnet_cifar import input_pipeline, models, training

    strategy = training.make_strategy(config.distribute)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = training.build_and_compile(config)
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
    return {**summarize(rates), "params": models.count_trainable_params(model),
            "replicas": strategy.num_replicas_in_sync, "model": model}


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
              script: str | os.PathLike = PEER_SCRIPT, timeout: float = 1800) -> float:
    """Images/s of one run of the PyTorch peer (``python script --model ...``).

    Raises:
        UserError: the interpreter or script is missing, or the peer fails.
    """
    if not Path(script).is_file():
        raise UserError(f"No peer script at {script} (set --peer_script).")
    cmd = [python, os.fspath(script), "--model", model, "--batch", str(batch_size),
           "--steps", str(steps)]
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
class Options:
    """What :func:`run` measures (the CLI's flags)."""

    models: tuple[str, ...] = ("resnet20", "resnet56")
    batch_size: int = 128
    steps: int = 20
    repeats: int = 5
    dataset: str = "synthetic"
    data_dir: str | None = None
    synthetic_train_size: int = 10000
    synthetic_test_size: int = 2000
    pipeline_batches: int = 200
    export: tuple[str, ...] = ()
    export_runs: int = 100
    peer: str | None = None
    peer_script: str = os.fspath(PEER_SCRIPT)
    jit_compile: bool = False
    steps_per_execution: int = 1
    mixed_precision: str = "float32"
    distribute: str = "auto"


def run(options: Options) -> dict[str, Any]:
    """Every measurement of ``options``, as one JSON-ready dict."""
    from keras_resnet_cifar import datasets
    from keras_resnet_cifar.config import TrainConfig

    def config_of(model):
        return TrainConfig(model=model, batch_size=options.batch_size,
                           dataset=options.dataset, data_dir=options.data_dir,
                           synthetic_train_size=options.synthetic_train_size,
                           synthetic_test_size=options.synthetic_test_size,
                           jit_compile=options.jit_compile,
                           steps_per_execution=options.steps_per_execution,
                           mixed_precision=options.mixed_precision,
                           distribute=options.distribute)

    configs = [config_of(m) for m in options.models]  # bad names fail before any work
    data = datasets.load(options.dataset, options.data_dir, seed=0,
                         synthetic_sizes=(options.synthetic_train_size,
                                          options.synthetic_test_size))
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {**dataclasses.asdict(options), "data": data.source},
        "training": {}, "evaluation": {},
    }
    for config in configs:
        peer_rates: list[float] = []

        def between(_, model=config.model):
            peer_rates.append(peer_rate(options.peer, model, options.batch_size,
                                        options.steps, options.peer_script))

        result = train_rate(config, data.train, steps=options.steps, repeats=options.repeats,
                            between=between if options.peer else None)
        model = result.pop("model")
        entry = {"images_per_sec": {k: v for k, v in result.items()
                                    if k not in ("params", "replicas")},
                 "params": result["params"], "replicas": result["replicas"]}
        if peer_rates:
            pairs = [a / b for a, b in zip(result["samples"], peer_rates)]
            entry["peer_images_per_sec"] = summarize(peer_rates)
            entry["ratio_to_peer"] = {"pairs": pairs, "median": statistics.median(pairs)}
        report["training"][config.model] = entry
        report["evaluation"][config.model] = {
            "images_per_sec": eval_rate(model, data.test, options.batch_size,
                                        repeats=options.repeats)}
        del model
    pipeline = pipeline_rate(data.train, options.batch_size, batches=options.pipeline_batches,
                             repeats=options.repeats)
    fastest = max(e["images_per_sec"]["median"] for e in report["training"].values())
    report["pipeline"] = {"images_per_sec": pipeline,
                          "times_fastest_training": pipeline["median"] / fastest}
    report["export"] = (export_rates(options.export, data.test.images, runs=options.export_runs)
                        if options.export else {"skipped": "no --export given"})
    # Other work on the machine slows both sides, the peer's OpenMP threads most.
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table (every figure of the JSON but the samples)."""
    m = report["machine"]
    s = report["settings"]
    lines = [
        f"machine: {m['cpu']}, {m['cpu_cores']} cores, GPUs {m['gpus'] or 'none'}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}; "
        f"TF_ENABLE_ONEDNN_OPTS={m['onednn']}; threads intra {m['intra_op_threads']} "
        f"inter {m['inter_op_threads']} (0 = TF default); load average (1, 5, 15 min) "
        f"{' '.join(map(str, m['load_average']))} before, "
        f"{' '.join(map(str, m['load_average_after']))} after; {m['date']}",
        f"settings: batch {s['batch_size']}, {s['steps']} steps x {s['repeats']} repeats "
        f"after a warm-up, {s['mixed_precision']}, jit_compile={s['jit_compile']}, "
        f"steps_per_execution={s['steps_per_execution']}, data: {s['data']}",
        "",
        f"{'measurement':44s} {'median':>10s} {'min':>10s} {'max':>10s} {'spread':>7s}",
    ]

    def row(name, stats, fmt="{:10.1f}"):
        lines.append(f"{name:44s} " + " ".join(fmt.format(stats[k]) for k in ("median", "min", "max"))
                     + f" {stats['spread_pct']:6.1f}%")

    for name, entry in report["training"].items():
        row(f"train {name} (img/s, {entry['params']:,} params)", entry["images_per_sec"])
        if "peer_images_per_sec" in entry:
            row(f"peer  {name} (img/s, PyTorch)", entry["peer_images_per_sec"])
            ratio = entry["ratio_to_peer"]
            lines.append(f"{'ratio ' + name + ' (project / peer)':44s} {ratio['median']:10.3f}"
                         f"   pairs: {' '.join(f'{r:.3f}' for r in ratio['pairs'])}")
    for name, entry in report["evaluation"].items():
        row(f"evaluate {name} (img/s)", entry["images_per_sec"])
    p = report["pipeline"]
    row("input pipeline alone (img/s)", p["images_per_sec"], "{:10.0f}")
    lines.append(f"{'input pipeline / fastest training':44s} {p['times_fastest_training']:10.1f}x")
    export = report["export"]
    if "skipped" in export:
        lines.append(f"{'export':44s} skipped: {export['skipped']}")
    for key, entry in export.items() if "skipped" not in export else ():
        if "skipped" in entry:
            lines.append(f"{key:44s} skipped: {entry['skipped']}")
            continue
        row(f"{key[:28]} batch-1 (ms)", entry["latency_ms_batch1"], "{:10.2f}")
        row(f"{key[:28]} batch-128 (img/s)", entry["images_per_sec_batch128"])
    return "\n".join(lines)


def define_flags() -> None:
    defaults = Options()
    flags.DEFINE_list("models", list(defaults.models), "Models to train: plainN / resnetN.")
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Global training batch size.")
    flags.DEFINE_integer("steps", defaults.steps, "Training steps per timed repeat.")
    flags.DEFINE_integer("repeats", defaults.repeats, "Timed repeats of every measurement.")
    flags.DEFINE_enum("dataset", defaults.dataset, ["synthetic", "cifar10"],
                      "synthetic, or cifar10 (with --data_dir, or tensorflow-datasets).")
    flags.DEFINE_string("data_dir", None, "A local CIFAR-10 copy (see train.py).")
    flags.DEFINE_integer("synthetic_train_size", defaults.synthetic_train_size,
                         "Training images of --dataset=synthetic.")
    flags.DEFINE_integer("synthetic_test_size", defaults.synthetic_test_size,
                         "Test images of --dataset=synthetic (evaluation, export).")
    flags.DEFINE_integer("pipeline_batches", defaults.pipeline_batches,
                         "Batches per timed repeat of the input pipeline alone.")
    flags.DEFINE_list("export", [], "SavedModel folders and/or .tflite files to measure.")
    flags.DEFINE_integer("export_runs", defaults.export_runs, "Batch-1 calls per export.")
    flags.DEFINE_string("peer", None, "Python of the PyTorch peer's environment, e.g. "
                        "/tmp/peer/bin/python: run it after each timed training repeat.")
    flags.DEFINE_string("peer_script", defaults.peer_script, "The peer's script.")
    flags.DEFINE_boolean("jit_compile", defaults.jit_compile, "Train with XLA.")
    flags.DEFINE_integer("steps_per_execution", defaults.steps_per_execution,
                         "Training steps per tf.function call.")
    flags.DEFINE_enum("mixed_precision", defaults.mixed_precision,
                      ["float32", "mixed_float16", "mixed_bfloat16"], "Dtype policy.")
    flags.DEFINE_enum("distribute", defaults.distribute, ["auto", "none", "mirrored"],
                      "Distribution strategy (see train.py).")
    flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF's default).")
    flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF's default).")
    flags.DEFINE_string("json", None, "Also write the figures as JSON to this path "
                        "('-': standard output, after the table).")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    for name in ("steps", "repeats", "batch_size", "pipeline_batches", "export_runs"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be positive, got {FLAGS[name].value}.")
    for path in FLAGS.export:  # before minutes of training
        if not Path(path).exists():
            raise UserError(f"--export={path} does not exist.")
    if FLAGS.peer and not (Path(FLAGS.peer).is_file() or _on_path(FLAGS.peer)):
        raise UserError(f"--peer={FLAGS.peer} is not a Python interpreter that exists.")
    options = Options(
        models=tuple(FLAGS.models), batch_size=FLAGS.batch_size, steps=FLAGS.steps,
        repeats=FLAGS.repeats, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        synthetic_train_size=FLAGS.synthetic_train_size,
        synthetic_test_size=FLAGS.synthetic_test_size,
        pipeline_batches=FLAGS.pipeline_batches, export=tuple(FLAGS.export),
        export_runs=FLAGS.export_runs, peer=FLAGS.peer, peer_script=FLAGS.peer_script,
        jit_compile=FLAGS.jit_compile, steps_per_execution=FLAGS.steps_per_execution,
        mixed_precision=FLAGS.mixed_precision, distribute=FLAGS.distribute)
    import tensorflow as tf

    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    report = run(options)
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
