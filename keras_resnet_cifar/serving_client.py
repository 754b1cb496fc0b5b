r"""A small client for TF Serving's predict API, over REST or gRPC, for the exported SavedModel.

    python -m keras_resnet_cifar.serving_client --url=http://localhost:8501 \
        --model_name=resnet20 cat.png batch.npy
    python -m keras_resnet_cifar.serving_client --url=grpc://localhost:8500 \
        --model_name=resnet20 --model_label=stable cat.png

http(s):// sends POST <url>/v1/models/<name>[/versions/<N>]:predict in the row ("instances")
form (--columnar: "inputs"); grpc://host:port calls PredictionService/Predict with a uint8
tensor (needs the serving extra). Both check the answer the same way.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.deploy import grpc_client, rest_client
from keras_resnet_cifar.data import images as images_lib
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES, top_k


def define_flags() -> None:
    flags.DEFINE_string("url", "http://localhost:8501", "TF Serving's address: http(s)://host:"
                        "8501 for REST, grpc://host:8500 for gRPC.")
    flags.DEFINE_string("model_name", None, "TF Serving MODEL_NAME.")
    flags.DEFINE_integer("model_version", None, "A specific version; default: the latest.",
                         lower_bound=1)
    flags.DEFINE_string("model_label", None, "A version label (e.g. stable, canary) instead of "
                        "--model_version.")
    flags.DEFINE_string("signature", None, "Signature name; default: serving_default.")
    flags.DEFINE_boolean("columnar", False, "Send the columnar 'inputs' form (REST only).")
    flags.DEFINE_float("timeout", 30.0, "Seconds the whole request may take, from connecting to "
                       "the last byte of the answer.")
    flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
    flags.DEFINE_integer("top_k", 3, "How many classes to show per image.", lower_bound=1)
    flags.DEFINE_boolean("strict", False, "Refuse images that are not 32x32.")


def _rank(results: Sequence[dict], names: Sequence[str], k: int) -> list[dict]:
    probabilities = np.array([r["probabilities"] for r in results], np.float64)
    if probabilities.shape[1] != len(names):
        names = [str(i) for i in range(probabilities.shape[1])]
    return [{"top": [{"class": c, "probability": p} for c, p in ranked],
             "class_name": r["class_name"]}
            for r, ranked in zip(results, top_k(probabilities, names, k))]


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise UserError("Nothing to classify: give image or .npy files.")
    # Checked before any image is read (the library's messages name values, not flags).
    grpc = grpc_client.is_grpc(FLAGS.url)
    url_problem = (grpc_client.address_problem if grpc else rest_client.url_problem)(FLAGS.url)
    for flag, problem in (("timeout", rest_client.timeout_problem(FLAGS.timeout)),
                          ("url", url_problem),
                          ("model_name", rest_client.name_problem(FLAGS.model_name)),
                          ("model_label", FLAGS.model_label is not None
                           and rest_client.name_problem(FLAGS.model_label))):
        if problem:
            raise UserError(f"--{flag} {problem}, got {FLAGS[flag].value!r}.")
    if FLAGS.model_label is not None and FLAGS.model_version is not None:
        raise UserError("Give --model_version or --model_label, not both.")
    if grpc and FLAGS.columnar:
        raise UserError("--columnar is a REST request form; gRPC always sends one tensor.")
    if grpc:
        grpc_client.apis()  # a missing extra is said before any image is read
    loaded, errors = images_lib.load_files(argv[1:], strict=FLAGS.strict)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    predictions = []
    if loaded.names:
        ask = dict(version=FLAGS.model_version, label=FLAGS.model_label,
                   signature=FLAGS.signature, timeout=FLAGS.timeout)
        results = (grpc_client.predict(FLAGS.url, FLAGS.model_name, loaded.pixels, **ask) if grpc
                   else rest_client.predict(FLAGS.url, FLAGS.model_name, loaded.pixels,
                                            columnar=FLAGS.columnar, **ask))
        predictions = [{"input": n, **r} for n, r in
                       zip(loaded.names, _rank(results, CIFAR10_CLASSES, FLAGS.top_k))]
    cli.print_ranked(predictions, errors, as_json=FLAGS.json)


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_files=True, required={"model_name": "TF Serving's MODEL_NAME"})
