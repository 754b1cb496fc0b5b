r"""A small client for TF Serving's REST predict API, for the exported SavedModel.

    python -m keras_resnet_cifar.serving_client --url=http://localhost:8501 \
        --model_name=resnet20 cat.png batch.npy

sends ``POST <url>/v1/models/<name>[/versions/<N>]:predict`` with the row
("instances") format and the named input ``image``:

    {"signature_name": "serving_default",
     "instances": [{"image": [[[r, g, b], ...], ...]}, ...]}

and reads TF Serving's answer, one object per instance since the signature has
several named outputs:

    {"predictions": [{"probabilities": [...], "class_id": 3, "class_name": "cat"}, ...]}

(The columnar form, ``{"inputs": {"image": [...]}}`` answered by
``{"outputs": {"probabilities": [[...]], "class_id": [...], ...}}``, is also
supported.) Errors come back as ``{"error": "..."}`` with an HTTP error status.
Only the standard library and numpy are used (the client is
:mod:`keras_resnet_cifar.deploy.rest_client`).

``--timeout`` bounds the whole request, from connecting to the last byte of the
answer: a server that trickles its answer cannot hold the client longer.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.deploy import rest_client
from keras_resnet_cifar.data import images as images_lib
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES, top_k


def define_flags() -> None:
    flags.DEFINE_string("url", "http://localhost:8501", "TF Serving's REST address.")
    flags.DEFINE_string("model_name", None, "TF Serving MODEL_NAME.")
    flags.DEFINE_integer("model_version", None, "A specific version; default: the latest.")
    flags.DEFINE_string("signature", None, "Signature name; default: serving_default.")
    flags.DEFINE_boolean("columnar", False, "Send the columnar 'inputs' form.")
    flags.DEFINE_float("timeout", 30.0, "Seconds the whole request may take, from "
                       "connecting to the last byte of the answer.")
    flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
    flags.DEFINE_integer("top_k", 3, "How many classes to show per image.")
    flags.DEFINE_boolean("strict", False, "Refuse images that are not 32x32.")


def _rank(results: Sequence[dict], names: Sequence[str], k: int) -> list[dict]:
    """Top-``k`` of each result, as ``predict`` shows them (``labels.format_ranked``)."""
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
    # The address, name and timeout before any image is read; the library checks them
    # too, but its messages name values, not flags.
    for flag, problem in (("timeout", rest_client.timeout_problem(FLAGS.timeout)),
                          ("url", rest_client.url_problem(FLAGS.url)),
                          ("model_name", rest_client.name_problem(FLAGS.model_name))):
        if problem:
            raise UserError(f"--{flag} {problem}, got {FLAGS[flag].value!r}.")
    if FLAGS.top_k < 1:
        raise UserError(f"--top_k must be >= 1, got {FLAGS.top_k}.")
    if FLAGS.model_version is not None and FLAGS.model_version < 1:
        raise UserError(f"--model_version must be a positive integer, got "
                        f"{FLAGS.model_version}.")
    loaded, errors = images_lib.load_files(argv[1:], strict=FLAGS.strict)
    for item in loaded:
        for warning in item.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    predictions = []
    if loaded:
        pixels = np.concatenate([item.pixels for item in loaded])
        results = rest_client.predict(FLAGS.url, FLAGS.model_name, pixels,
                                      version=FLAGS.model_version, signature=FLAGS.signature,
                                      columnar=FLAGS.columnar, timeout=FLAGS.timeout)
        names = [n for item in loaded for n in item.names]
        predictions = [{"input": n, **r} for n, r in
                       zip(names, _rank(results, CIFAR10_CLASSES, FLAGS.top_k))]
    cli.print_ranked(predictions, errors, as_json=FLAGS.json)


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_files=True, required={"model_name": "TF Serving's MODEL_NAME"})
