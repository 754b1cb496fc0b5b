"""Latency of the client over REST and over gRPC, against the stand-in (serve_local).

    PYTHONPATH=. python scripts/bench_serving.py --model_path=exports/resnet20 [--calls=30] [--rounds=5]

Starts ``python -m keras_resnet_cifar.serve_local`` on free loopback ports in its own
process, then times ``rest_client.predict`` and ``grpc_client.predict`` (each call
opens its own connection, as the command-line client does) at batch 1 and 128.
The two transports are interleaved: each round times ``--calls`` calls of one, then
of the other, the order alternating between rounds, so a change of machine load
falls on both. Prints, per batch size, each transport's median over all calls and
the REST/gRPC ratio of the round medians (median, min, max). The stand-in is not TF
Serving: the figures compare the transports and their encoding, not TF Serving.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before the protos load TensorFlow

from keras_resnet_cifar import cli
from keras_resnet_cifar.deploy import grpc_client, rest_client

flags.DEFINE_string("model_path", None, "exports/<name> (or a version folder) to serve.")
flags.DEFINE_integer("calls", 30, "Timed calls per transport per round.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Interleaved rounds.", lower_bound=1)
flags.DEFINE_list("batch_sizes", ["1", "128"], "Batch sizes to time.")
flags.DEFINE_boolean("trust_savedmodel", False, "Passed to serve_local.")


def _time(call, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    command = [sys.executable, "-m", "keras_resnet_cifar.serve_local",
               f"--model_path={FLAGS.model_path}", "--rest_port=0", "--grpc_port=0"]
    if FLAGS.trust_savedmodel:
        command.append("--trust_savedmodel")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        lines = [server.stdout.readline() for _ in range(4)]
        if not lines[3].startswith("gRPC "):
            raise SystemExit(f"error: the stand-in did not start: {lines}")
        name = lines[1].split()[1]
        urls = {"rest": lines[2].split()[1], "grpc": lines[3].split()[1]}
        calls = {"rest": rest_client.predict, "grpc": grpc_client.predict}
        rng = np.random.default_rng(0)
        print(f"stand-in: {lines[1].strip()}; {FLAGS.rounds} rounds x {FLAGS.calls} calls")
        for size in map(int, FLAGS.batch_sizes):
            pixels = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
            ask = {t: (lambda t=t: calls[t](urls[t], name, pixels)) for t in calls}
            for t in calls:  # warm-up: first connections, the signature's first run
                _time(ask[t], 3)
            times = {t: [] for t in calls}
            ratios = []
            for r in range(FLAGS.rounds):
                order = ("rest", "grpc") if r % 2 == 0 else ("grpc", "rest")
                medians = {}
                for t in order:
                    run = _time(ask[t], FLAGS.calls)
                    times[t] += run
                    medians[t] = statistics.median(run)
                ratios.append(medians["rest"] / medians["grpc"])
            print(f"batch {size:>4}: REST median {statistics.median(times['rest']):8.2f} ms, "
                  f"gRPC median {statistics.median(times['grpc']):8.2f} ms; REST/gRPC ratio "
                  f"{statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    cli.run(main, required={"model_path": "the export to serve, exports/<name>"})
