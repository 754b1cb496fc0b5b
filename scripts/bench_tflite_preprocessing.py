r"""What the in-graph preprocessing costs a float32 TFLite model at batch 1.

Converts the same network twice, with and without its ``normalize`` layer
(the bare one takes already-normalised inputs), and times batch-1 inference of
both on one thread with XNNPACK, interleaved (alternating blocks of calls, so
drift in the machine's load hits both alike). Prints both medians and the ratio.

    python scripts/bench_tflite_preprocessing.py --model=resnet20 \
        [--weights=resnet20.npz] [--rounds=30 --calls=50]
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from absl import flags

from keras_resnet_cifar import cli, environment  # no TensorFlow before the flags

flags.DEFINE_string("model", "resnet20", "Architecture (latency does not depend on weights).")
flags.DEFINE_string("weights", None, "Optional reference resnetN.npz to load.")
flags.DEFINE_integer("rounds", 30, "Interleaved rounds.")
flags.DEFINE_integer("calls", 50, "Timed batch-1 calls per model per round.")
flags.DEFINE_integer("num_threads", 1, "LiteRT threads.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras

    from keras_resnet_cifar.deploy import edge, tflite
    from keras_resnet_cifar.models import arch, networks

    if FLAGS.weights:
        from keras_resnet_cifar.models import reference_weights
        model = reference_weights.reference_model(
            reference_weights.load_state_dict(FLAGS.weights))
    else:
        model = networks.build_model(FLAGS.model)
    # The same layers from the normalised tensor on: the network without preprocessing.
    bare = keras.Model(model.get_layer("normalize").output, model.output, name="bare")
    full_runner = edge.TFLiteClassifier(tflite.convert(model, "float32"),
                                        num_threads=FLAGS.num_threads)
    bare_runner = edge.TFLiteClassifier(tflite.convert(bare, "float32"),
                                        num_threads=FLAGS.num_threads)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    normalised = ((pixels - np.array(arch.CIFAR10_MEAN)) / np.array(arch.CIFAR10_STD))
    normalised = normalised.astype(np.float32)
    # The bare model's input is float32 already; TFLiteClassifier passes it through.
    runs = {"with_preprocessing": (full_runner, pixels), "bare": (bare_runner, normalised)}
    times = {k: [] for k in runs}
    for name, (runner, x) in runs.items():  # warm up (allocation, XNNPACK packing)
        for _ in range(50):
            runner.predict(x)
    for r in range(FLAGS.rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            runner, x = runs[name]
            for _ in range(FLAGS.calls):
                start = time.perf_counter()
                runner.predict(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"model": model.name, "threads": FLAGS.num_threads, "cpu": environment.cpu_model(),
              "calls_each": len(times["bare"]),
              "median_ms": {k: round(v, 4) for k, v in medians.items()},
              "ratio": round(medians["with_preprocessing"] / medians["bare"], 4)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    cli.run(main)
