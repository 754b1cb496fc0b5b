"""A client (standard library and numpy only) for TF Serving's REST predict API.

    POST <url>/v1/models/<name>[/versions/<N> | /labels/<label>]:predict
    {"signature_name": "serving_default", "instances": [{"image": [[[r, g, b], ...]]}, ...]}
    -> {"predictions": [{"probabilities": [...], "class_id": 3, "class_name": "cat"}, ...]}

The columnar form ({"inputs": ...} -> {"outputs": ...}) works too. An error answer, an
unreachable server or anything but a predict response raise UserError; the timeout bounds
the whole exchange, from connecting to the last byte.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import socket
import threading
import time
import urllib.parse

import numpy as np

from keras_resnet_cifar.deploy.contract import INPUT_KEY, OUTPUT_KEYS
from keras_resnet_cifar.errors import UserError, first_line, plural, printable

MAX_ANSWER_BYTES = 256 << 20  # far beyond any answer for a batch of 32x32 images
# An answer is bounded by the images asked about before json.loads (which costs up to 20
# times the text): a prediction of 10 classes is ~300 bytes, one object and one list;
# 16 KiB and 8 of them per image leave room for a model of a thousand classes.
ANSWER_BYTES_PER_IMAGE = 16 << 10
ANSWER_NESTS_PER_IMAGE = 8
URL_SCHEMES = ("http://", "https://")  # what a server address must start with
# One path segment of the predict URL: "a?b", "a#b", "a/b" would reach another endpoint.
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_TIMEOUT_S = 86400.0  # a day; Python's timers overflow on far larger values


def url_problem(base_url: str) -> str | None:
    """What is wrong with a server address (`http(s)://host[:port][/prefix]`), or None."""
    if not base_url.startswith(URL_SCHEMES):
        return f"must start with {' or '.join(URL_SCHEMES)}"
    if any(c.isspace() or not c.isprintable() for c in base_url):
        return "holds spaces or control characters"
    if "?" in base_url or "#" in base_url:
        return "must not hold a query (?...) or fragment (#...): the predict path follows it"
    return split_address(base_url)[1]


def split_address(url: str) -> tuple[urllib.parse.SplitResult | None, str | None]:
    """`url` split, or what is wrong with its host and port (both transports' check)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError as e:
        return None, f"is malformed ({first_line(e)})"
    if not parts.hostname:
        return None, "has no host name"
    return parts, None


def name_problem(model_name: str) -> str | None:
    if not model_name or not MODEL_NAME.fullmatch(model_name) or model_name in (".", ".."):
        return "must be letters, digits, '.', '_' or '-' (one path segment of the URL)"
    return None


def timeout_problem(timeout) -> str | None:
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        return "must be a positive number of seconds"
    if timeout > MAX_TIMEOUT_S:
        return f"must be at most {MAX_TIMEOUT_S:g} seconds (a day)"
    return None


def check_timeout(timeout) -> None:
    if problem := timeout_problem(timeout):
        raise UserError(f"The timeout {problem}, got {timeout!r}.")


def check_names(model_name: str, label: str | None) -> None:
    for what, value in (("model name", model_name), ("version label", label)):
        problem = name_problem(value) if value is not None or what == "model name" else None
        if problem:
            raise UserError(f"The {what} {problem}, got {value!r}.")


def predict_url(base_url: str, model_name: str, version: int | None = None,
                label: str | None = None) -> str:
    if problem := url_problem(base_url):
        raise UserError(f"The server URL {problem}, got {base_url!r}.")
    check_names(model_name, label)
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version
                                         else f"/labels/{label}" if label else "")
    return base_url.rstrip("/") + path + ":predict"


def build_request(pixels: np.ndarray, *, signature: str | None = None,
                  columnar: bool = False) -> dict:
    pixels = np.asarray(pixels, np.uint8)
    body = {"signature_name": signature} if signature else {}
    if columnar:
        return {**body, "inputs": {INPUT_KEY: pixels.tolist()}}
    return {**body, "instances": [{INPUT_KEY: image.tolist()} for image in pixels]}


def parse_response(body: dict, count: int) -> list[dict]:
    """TF Serving's answer -> one {"probabilities", "class_id", "class_name"} per image,
    checked: what a server returns is untrusted, over REST or gRPC."""
    if not isinstance(body, dict):
        raise UserError("TF Serving's answer is not a JSON object.")
    if "error" in body:
        raise UserError(f"TF Serving: {printable(first_line(body['error']))}")
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
        answered = len(rows) if isinstance(rows, list) else 0
        raise UserError(f"TF Serving answered {plural(answered, 'prediction')} for "
                        f"{plural(count, 'image')}.")
    first = rows[0].get("probabilities") if rows and isinstance(rows[0], dict) else None
    width = len(first) if isinstance(first, list) else None
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in OUTPUT_KEYS):
            raise UserError("TF Serving's predictions are not objects with "
                            f"{', '.join(OUTPUT_KEYS)}: is this model's signature the "
                            "one keras_resnet_cifar.export writes?")
        _check_row(row, i, width=width)
    return [{"probabilities": [float(p) for p in row["probabilities"]],
             "class_id": int(row["class_id"]), "class_name": printable(row["class_name"])}
            for row in rows]


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int of hundreds of digits
        return False


def _check_row(row: dict, i: int, width: int | None) -> None:
    p = row["probabilities"]
    if not isinstance(p, list) or not p or not all(_is_number(v) for v in p):
        raise UserError(f"TF Serving's prediction {i} has probabilities that are not a "
                        "list of finite numbers.")
    if not all(0 <= v <= 1 for v in p):
        raise UserError(f"TF Serving's prediction {i} has probabilities outside [0, 1]: "
                        "not this model's softmax.")
    if len(p) != width:
        raise UserError(f"TF Serving's predictions are ragged: prediction {i} has {len(p)} "
                        f"probabilities, prediction 0 has {width}.")
    class_id = row["class_id"]
    if not (_is_number(class_id) and float(class_id).is_integer() and 0 <= class_id < len(p)):
        raise UserError(f"TF Serving's prediction {i} has class_id {str(class_id)[:40]!r}, "
                        f"not an integer in [0, {len(p)}).")
    if not isinstance(row["class_name"], str):
        raise UserError(f"TF Serving's prediction {i} has a class_name that is not a string.")


def predict(base_url: str, model_name: str, pixels: np.ndarray, *,
            version: int | None = None, label: str | None = None,
            signature: str | None = None, columnar: bool = False,
            timeout: float = 30.0) -> list[dict]:
    """One {"probabilities", "class_id", "class_name"} per image of uint8 `pixels`; the
    model's latest version unless `version` or a `label` of its config picks one."""
    check_timeout(timeout)
    url = predict_url(base_url, model_name, version, label)
    data = json.dumps(build_request(pixels, signature=signature, columnar=columnar)).encode()
    count = len(pixels)
    status, raw = _post(url, data, timeout,
                        min(MAX_ANSWER_BYTES, (64 << 10) + ANSWER_BYTES_PER_IMAGE * count))
    if 300 <= status < 400:  # http.client follows no redirect: its body is not the answer
        raise UserError(f"TF Serving at {url} answered HTTP {status}, a redirect: give the "
                        "server's own address.")
    if not 200 <= status < 300:
        raise UserError(f"TF Serving at {url} answered HTTP {status}: {_error_message(raw)}")
    nests = raw.count(b"[") + raw.count(b"{")
    if nests > 16 + ANSWER_NESTS_PER_IMAGE * count:
        raise UserError(f"TF Serving at {url} answered something that is not JSON of a predict "
                        f"response ({nests:,} lists and objects for {plural(count, 'image')}).")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." thousands deep
        raise UserError(f"TF Serving at {url} answered something that is not JSON.") from None
    return parse_response(body, count)


def _post(url: str, data: bytes, timeout: float,
          max_bytes: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
    """(status, body) of a JSON POST. A watchdog shuts the connection down at the
    deadline, which ends any read or write however slowly the server sends."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    deadline = time.monotonic() + timeout
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()

    def stop():
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", parts.path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        chunks, size = [], 0
        while chunk := response.read1(1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise UserError(f"TF Serving at {url} answered more than {max_bytes:,} "
                                "bytes; stopped reading.")
            if time.monotonic() > deadline:
                raise TimeoutError
        if expired.is_set():
            raise TimeoutError
        return response.status, b"".join(chunks)
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, ConnectionRefusedError):
            raise UserError(f"Cannot reach TF Serving at {url}: connection refused.") from None
        if expired.is_set() or isinstance(e, TimeoutError):  # socket.timeout is TimeoutError
            raise UserError(f"TF Serving at {url} did not answer within {timeout:g} s.") from None
        if isinstance(e, socket.gaierror):
            raise UserError(f"Cannot reach TF Serving at {url}: {e.strerror or e}.") from None
        raise UserError(f"The connection to TF Serving at {url} failed: {e}.") from None
    finally:
        watchdog.cancel()
        conn.close()


def _error_message(raw: bytes) -> str:
    try:
        text = str(json.loads(raw)["error"]).strip()
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        text = raw.decode("utf-8", "replace").strip()
    return printable(text.splitlines()[0]) if text else "(empty body)"
