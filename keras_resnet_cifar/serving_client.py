"""A small client for TF Serving's REST predict API, for the exported SavedModel.

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
Only the standard library and numpy are used.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np
from absl import app, flags

from keras_resnet_cifar import images as images_lib
from keras_resnet_cifar import predict as predict_lib
from keras_resnet_cifar.errors import UserError, run_cli
from keras_resnet_cifar.labels import CIFAR10_CLASSES, top_k

INPUT_KEY = "image"
OUTPUT_KEYS = ("probabilities", "class_id", "class_name")


def predict_url(base_url: str, model_name: str, version: int | None = None) -> str:
    """``<base_url>/v1/models/<model_name>[/versions/<version>]:predict``."""
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"--url must start with http:// or https://; got {base_url!r}.")
    if not model_name or "/" in model_name:
        raise UserError(f"Bad model name {model_name!r}.")
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
    return base_url.rstrip("/") + path + ":predict"


def build_request(pixels: np.ndarray, *, signature: str | None = None,
                  columnar: bool = False) -> dict:
    """The JSON body for uint8 pixels (N, 32, 32, 3): row or columnar format."""
    pixels = np.asarray(pixels, np.uint8)
    body = {"signature_name": signature} if signature else {}
    if columnar:
        body["inputs"] = {INPUT_KEY: pixels.tolist()}
    else:
        body["instances"] = [{INPUT_KEY: image.tolist()} for image in pixels]
    return body


def parse_response(body: dict, count: int) -> list[dict]:
    """TF Serving's answer -> one {"probabilities", "class_id", "class_name"} per image.

    Raises:
        UserError: the answer is an error, or not a predict response for
            ``count`` images with this model's outputs.
    """
    if not isinstance(body, dict):
        raise UserError("TF Serving's answer is not a JSON object.")
    if "error" in body:
        raise UserError(f"TF Serving: {body['error']}")
    if "predictions" in body:
        rows = body["predictions"]
    elif "outputs" in body and isinstance(body["outputs"], dict):
        columns = body["outputs"]
        if not all(isinstance(columns.get(k), list) for k in OUTPUT_KEYS):
            raise UserError(f"TF Serving's outputs lack one of {', '.join(OUTPUT_KEYS)}.")
        rows = [dict(zip(OUTPUT_KEYS, values)) for values in
                zip(*(columns[k] for k in OUTPUT_KEYS))]
    else:
        raise UserError("TF Serving's answer has neither 'predictions' nor 'outputs'.")
    if not isinstance(rows, list) or len(rows) != count:
        raise UserError(f"TF Serving answered {len(rows) if isinstance(rows, list) else 'no'} "
                        f"predictions for {count} images.")
    for row in rows:
        if not isinstance(row, dict) or any(k not in row for k in OUTPUT_KEYS):
            raise UserError("TF Serving's predictions are not objects with "
                            f"{', '.join(OUTPUT_KEYS)}: is this model's signature the "
                            "one keras_resnet_cifar.export writes?")
    return [{"probabilities": [float(p) for p in row["probabilities"]],
             "class_id": int(row["class_id"]), "class_name": str(row["class_name"])}
            for row in rows]


def predict(base_url: str, model_name: str, pixels: np.ndarray, *,
            version: int | None = None, signature: str | None = None,
            columnar: bool = False, timeout: float = 30.0) -> list[dict]:
    """Asks a TF Serving model about uint8 pixels (N, 32, 32, 3).

    Returns:
        One {"probabilities", "class_id", "class_name"} per image.

    Raises:
        UserError: the server is unreachable, times out, or answers an error
            or something that is not a predict response.
    """
    url = predict_url(base_url, model_name, version)
    data = json.dumps(build_request(pixels, signature=signature, columnar=columnar)).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        raise UserError(f"TF Serving at {url} answered HTTP {e.code}: "
                        f"{_error_message(e.read())}") from None
    except urllib.error.URLError as e:
        raise UserError(f"Cannot reach TF Serving at {url}: {e.reason}.") from None
    except (socket.timeout, TimeoutError):
        raise UserError(f"TF Serving at {url} did not answer within {timeout:g} s.") from None
    except OSError as e:  # connection reset mid-answer and the like
        raise UserError(f"The connection to TF Serving at {url} failed: {e}.") from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise UserError(f"TF Serving at {url} answered something that is not JSON.") from None
    return parse_response(body, len(pixels))


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]).strip().splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        text = raw.decode("utf-8", "replace").strip()
        return text.splitlines()[0][:200] if text else "(empty body)"


def rank(results: Sequence[dict], names: Sequence[str], k: int) -> list[dict]:
    """Top-``k`` of each result, in the format of ``predict.classify``."""
    probabilities = np.array([r["probabilities"] for r in results], np.float64)
    if probabilities.shape[1] != len(names):
        names = [str(i) for i in range(probabilities.shape[1])]
    return [{"top": [{"class": c, "probability": p} for c, p in ranked],
             "class_name": r["class_name"]}
            for r, ranked in zip(results, top_k(probabilities, names, k))]


# --- Command line -----------------------------------------------------------------

def define_flags() -> None:
    flags.DEFINE_string("url", "http://localhost:8501", "TF Serving's REST address.")
    flags.DEFINE_string("model_name", None, "TF Serving MODEL_NAME.", required=True)
    flags.DEFINE_integer("model_version", None, "A specific version; default: the latest.")
    flags.DEFINE_string("signature", None, "Signature name; default: serving_default.")
    flags.DEFINE_boolean("columnar", False, "Send the columnar 'inputs' form.")
    flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the answer.")
    flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
    flags.DEFINE_integer("top_k", 3, "How many classes to show per image.")
    flags.DEFINE_boolean("strict", False, "Refuse images that are not 32x32.")


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) < 2:
        raise UserError("Nothing to classify: give image or .npy files.")
    loaded, errors = images_lib.load_files(argv[1:], strict=FLAGS.strict)
    for item in loaded:
        for warning in item.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    predictions = []
    if loaded:
        pixels = np.concatenate([item.pixels for item in loaded])
        results = predict(FLAGS.url, FLAGS.model_name, pixels, version=FLAGS.model_version,
                          signature=FLAGS.signature, columnar=FLAGS.columnar,
                          timeout=FLAGS.timeout)
        names = [n for item in loaded for n in item.names]
        predictions = [{"input": n, **r} for n, r in
                       zip(names, rank(results, CIFAR10_CLASSES, FLAGS.top_k))]
    if FLAGS.json:
        print(json.dumps({"predictions": predictions, "errors": [str(e) for e in errors]},
                         indent=2))
    elif predictions:
        print(predict_lib.format_table(predictions))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
