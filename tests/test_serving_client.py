"""The TF Serving REST client against a local stand-in server (loopback only)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar.deploy import rest_client
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES


def _fake_model(pixels: np.ndarray) -> np.ndarray:
    """Deterministic stand-in probabilities: peaked at (mean pixel) mod 10."""
    ids = pixels.reshape(len(pixels), -1).sum(1) % 10
    probabilities = np.full((len(pixels), 10), 0.02)
    probabilities[np.arange(len(pixels)), ids] = 0.82
    return probabilities


class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers as TF Serving's REST API does for a model named 'resnet20'."""

    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "body": body,
                              "content_type": self.headers["Content-Type"]})
        if self.path.startswith("/v1/models/broken"):
            return self._send(200, b"<html>not json</html>")
        if not self.path.startswith("/v1/models/resnet20") or not self.path.endswith(":predict"):
            return self._send(404, {"error": "Servable not found for request: Latest(nope)"})
        if body.get("signature_name", "serving_default") != "serving_default":
            return self._send(400, {"error": "Serving signature name: \"x\" not found in "
                                             "signature def"})
        if "instances" in body:
            pixels = np.array([i["image"] for i in body["instances"]], np.uint8)
        else:
            pixels = np.array(body["inputs"]["image"], np.uint8)
        if pixels.shape[1:] != (32, 32, 3):
            return self._send(400, {"error": "input must be 4-dimensional[1,2]"})
        p = _fake_model(pixels)
        ids = p.argmax(1)
        outputs = {"probabilities": p.tolist(), "class_id": ids.tolist(),
                   "class_name": [CIFAR10_CLASSES[i] for i in ids]}
        if "instances" in body:
            return self._send(200, {"predictions": [
                {k: v[i] for k, v in outputs.items()} for i in range(len(pixels))]})
        return self._send(200, {"outputs": outputs})


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    _StandIn.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _StandIn.requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def pixels():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_url():
    assert (rest_client.predict_url("http://h:8501/", "resnet20")
            == "http://h:8501/v1/models/resnet20:predict")
    assert (rest_client.predict_url("http://h:8501", "resnet20", 3)
            == "http://h:8501/v1/models/resnet20/versions/3:predict")
    # A version label of the model config (docs/deployment.md, models.config).
    assert (rest_client.predict_url("http://h:8501", "resnet20", label="canary")
            == "http://h:8501/v1/models/resnet20/labels/canary:predict")
    with pytest.raises(UserError, match="The version label must be letters"):
        rest_client.predict_url("http://h:8501", "resnet20", label="a/b")
    # A library: its messages name the value, not a command-line flag.
    with pytest.raises(UserError) as bad_url:
        rest_client.predict_url("h:8501", "resnet20")
    assert str(bad_url.value) == ("The server URL must start with http:// or https://, "
                                  "got 'h:8501'.")
    for name in ("", "a/b", "a?b", "a#b", "a b"):
        with pytest.raises(UserError) as bad_name:
            rest_client.predict_url("http://h:8501", name)
        assert str(bad_name.value) == ("The model name must be letters, digits, '.', '_' or "
                                       f"'-' (one path segment of the URL), got {name!r}.")
    # Issue 16, item 9: a query or fragment swallowed the predict path; bad ports and
    # hosts were tracebacks.
    assert (rest_client.predict_url("https://h/serving/", "m")
            == "https://h/serving/v1/models/m:predict")
    for url, problem in (("http://h:8501/?x=1#frag", "must not hold a query"),
                         ("http://h:8501#frag", "must not hold a query"),
                         ("http://127.0.0.1:99999", "is malformed (Port out of range"),
                         ("http://127.0.0.1:abc", "is malformed (Port could not be cast"),
                         ("http://[::1", "is malformed (Invalid IPv6 URL"),
                         ("http://", "has no host name"),
                         ("http://h\x1b[2J:1", "holds spaces or control characters")):
        with pytest.raises(UserError, match=re.escape(f"The server URL {problem}")):
            rest_client.predict_url(url, "m")


@pytest.mark.parametrize("columnar", [False, True])
def test_request_shape_and_response(server, pixels, columnar):
    url, requests = server
    results = rest_client.predict(url, "resnet20", pixels, columnar=columnar)
    request = requests[-1]
    assert request["path"] == "/v1/models/resnet20:predict"
    assert request["content_type"] == "application/json"
    if columnar:
        assert np.array_equal(np.array(request["body"]["inputs"]["image"]), pixels)
    else:
        assert [sorted(i) for i in request["body"]["instances"]] == [["image"]] * 3
        assert np.array_equal(np.array([i["image"] for i in request["body"]["instances"]]),
                              pixels)
    expected = _fake_model(pixels)
    assert [r["class_id"] for r in results] == expected.argmax(1).tolist()
    assert [r["class_name"] for r in results] == [CIFAR10_CLASSES[i] for i in
                                                  expected.argmax(1)]
    np.testing.assert_allclose([r["probabilities"] for r in results], expected)


def test_version_and_signature(server, pixels):
    url, requests = server
    rest_client.predict(url, "resnet20", pixels[:1], version=2,
                           signature="serving_default")
    assert requests[-1]["path"] == "/v1/models/resnet20/versions/2:predict"
    assert requests[-1]["body"]["signature_name"] == "serving_default"


def test_http_errors_are_one_clear_sentence(server, pixels):
    url, _ = server
    with pytest.raises(UserError, match="HTTP 404: Servable not found"):
        rest_client.predict(url, "nope", pixels)
    with pytest.raises(UserError, match="HTTP 400: Serving signature name"):
        rest_client.predict(url, "resnet20", pixels, signature="x")
    with pytest.raises(UserError, match="not JSON"):
        rest_client.predict(url, "broken", pixels)


def test_server_down(pixels):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="Cannot reach TF Serving"):
        rest_client.predict(f"http://127.0.0.1:{port}", "resnet20", pixels, timeout=5)


def test_malformed_answers():
    with pytest.raises(UserError, match="neither 'predictions' nor 'outputs'"):
        rest_client.parse_response({"result": []}, 1)
    with pytest.raises(UserError, match="answered 2 predictions for 1 image\\."):
        rest_client.parse_response({"predictions": [{}, {}]}, 1)
    with pytest.raises(UserError, match="not objects with"):
        rest_client.parse_response({"predictions": [[0.1] * 10]}, 1)
    with pytest.raises(UserError, match="TF Serving: boom"):
        rest_client.parse_response({"error": "boom"}, 1)


def test_malformed_predictions_get_a_clear_message():
    good = {"probabilities": [0.5, 0.5], "class_id": 0, "class_name": "a"}
    for rows, message in (
            ([{**good, "probabilities": "0.5 0.5"}], "not a list of finite numbers"),
            ([{**good, "probabilities": [0.5, "x"]}], "not a list of finite numbers"),
            ([{**good, "probabilities": [[0.5], [0.5]]}], "not a list of finite numbers"),
            ([good, {**good, "probabilities": [0.1, 0.2, 0.7]}], "ragged: prediction 1 has 3"),
            ([{**good, "class_id": "cat"}], "class_id 'cat', not an integer in \\[0, 2\\)"),
            ([{**good, "class_id": 7}], "class_id '7', not an integer"),
            ([{**good, "class_name": 3}], "class_name that is not a string")):
        with pytest.raises(UserError, match=message):
            rest_client.parse_response({"predictions": rows}, len(rows))
    columns = {"probabilities": [[0.5, 0.5], [1.0]], "class_id": [0, 0],
               "class_name": ["a", "a"]}
    with pytest.raises(UserError, match="ragged"):
        rest_client.parse_response({"outputs": columns}, 2)


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Answers what the path asks for: /<status>/<body kind>."""

    BODIES = {
        "huge_number": b'{"predictions": [{"probabilities": [1' + b"0" * 400 + b'], '
                       b'"class_id": 0, "class_name": "a"}]}',
        "deep": b"[" * 60000,
        "negative": json.dumps({"predictions": [{"probabilities": [-5.0, 6.0], "class_id": 1,
                                                 "class_name": "b"}]}).encode(),
        "escape": json.dumps({"error": "boom \x1b[2J\x1b]0;pwned\x07 done"}).encode(),
        "good": json.dumps({"predictions": [{"probabilities": [0.25, 0.75], "class_id": 1,
                                             "class_name": "b\x1b[31m"}]}).encode(),
    }

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        _, status, kind = self.path.split(":")[0].split("/")[:3]
        data = self.BODIES[kind]
        self.send_response(int(status))
        self.send_header("Location", "http://elsewhere/")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_hostile_answers_are_one_line_and_escaped(pixels):
    # Issue 16, item 9: OverflowError, RecursionError, "-500.0%", a 301 taken as the
    # answer, and escape sequences written raw to the terminal.
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    one = pixels[:1]
    try:
        for path, message in (("200/huge_number", "not a list of finite numbers"),
                              ("200/deep", "not JSON"),
                              ("200/negative", r"probabilities outside \[0, 1\]"),
                              ("301/good", "answered HTTP 301, a redirect"),
                              ("204/deep", "not JSON")):
            # The stand-in reads "<base>/<status>/<kind>/v1/models/m:predict".
            with pytest.raises(UserError, match=message):
                rest_client.predict(f"{base}/{path}", "m", one, timeout=10)
        with pytest.raises(UserError) as escaped:
            rest_client.predict(f"{base}/500/escape", "m", one, timeout=10)
        assert "\x1b" not in str(escaped.value) and "\x07" not in str(escaped.value)
        assert "boom \\x1b[2J\\x1b]0;pwned\\x07 done" in str(escaped.value)
        [result] = rest_client.predict(f"{base}/200/good", "m", one, timeout=10)
        assert result["class_name"] == "b\\x1b[31m"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Answers one byte every 0.2 s, for ever (until the client goes away)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        try:
            for _ in range(600):  # bounded: two minutes at most
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


def test_timeout_is_a_total_deadline(pixels):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        started = time.monotonic()
        with pytest.raises(UserError, match="did not answer within 1.5 s"):
            rest_client.predict(url, "resnet20", pixels, timeout=1.5)
        assert time.monotonic() - started < 5  # each byte arrives well within 1.5 s
    finally:
        httpd.shutdown()
        httpd.server_close()
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(UserError) as refused:
            rest_client.predict(url, "resnet20", pixels, timeout=bad)
        assert str(refused.value) == (f"The timeout must be a positive number of seconds, "
                                      f"got {bad!r}.")


def test_cli(server, pixels, tmp_path):
    url, requests = server
    Image.fromarray(pixels[0]).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.serving_client",
                           f"--url={url}", "--model_name=resnet20", "--json", "a.png",
                           "bad.png"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1  # bad.png failed, a.png was still classified
    out = json.loads(done.stdout)
    assert out["predictions"][0]["input"] == "a.png"
    assert out["predictions"][0]["class_name"] == CIFAR10_CLASSES[_fake_model(pixels[:1]).argmax()]
    assert "error: bad.png" in done.stderr and "Traceback" not in done.stderr
    assert len(requests) == 1 and len(requests[0]["body"]["instances"]) == 1
    down = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.serving_client",
                           f"--url={url}", "--model_name=nope", "a.png"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert down.returncode == 1
    assert down.stderr.strip().splitlines() == [
        f"error: TF Serving at {url}/v1/models/nope:predict answered HTTP 404: Servable not "
        "found for request: Latest(nope)"]


def test_serve_script_mounts_the_model_folder(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "serve.sh")
    (tmp_path / "ex" / "resnet20" / "1").mkdir(parents=True)
    env = {**os.environ, "DRY_RUN": "1", "REST_PORT": "9501", "PYTHON": sys.executable}
    done = subprocess.run(["bash", script, "resnet20", str(tmp_path / "ex")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    command = done.stdout.split()
    assert command[:3] == ["docker", "run", "--rm"]
    assert "9501:8501" in command and "MODEL_NAME=resnet20" in command
    assert (f"type=bind,source={tmp_path / 'ex' / 'resnet20'},target=/models/resnet20,"
            "readonly") in command
    missing = subprocess.run(["bash", script, "other", str(tmp_path / "ex")], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no ")
    # A docker client without its daemon: one line, not docker's own message.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text("#!/bin/sh\necho 'Cannot connect' >&2\nexit 1\n")
    (tmp_path / "bin" / "docker").chmod(0o755)
    env = {**env, "DRY_RUN": "0", "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    down = subprocess.run(["bash", script, "resnet20", str(tmp_path / "ex")], env=env,
                          capture_output=True, text=True)
    assert down.returncode == 1 and down.stderr.strip().splitlines() == [
        "error: docker cannot reach its daemon (is it running, and may this user use it? "
        "docker info says why)"], down.stderr


class _Lists(http.server.BaseHTTPRequestHandler):
    """Announces 250 MB of empty lists and sends up to 4 MB of them (a real 250 MB
    answer took 3 GB to parse)."""

    sent = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 250000000\r\n\r\n"
                         b'{"predictions": [')
        chunk = b"[]," * (1 << 14)
        try:
            while _Lists.sent < 4 << 20:
                self.wfile.write(chunk)
                _Lists.sent += len(chunk)
        except OSError:
            pass


@contextlib.contextmanager
def _serving(handler):
    """A stand-in server with ``handler`` on a free port; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_answers_are_bounded_by_the_images_asked_about(pixels):
    # Issue 29: a serving answer of 250 MB of empty lists took 3 GB to parse; the bound
    # (256 MB) was the answer's, not the request's.
    with _serving(_Lists) as url, pytest.raises(
            UserError, match=r"answered more than 81,920 bytes; stopped reading"):
        rest_client.predict(url, "m", pixels[:1], timeout=30)
    # Within the bytes, the nesting is bounded too: 5,000 lists for one image.
    _Hostile.BODIES["lists"] = b'{"predictions": [' + b"[]," * 4999 + b"[]]}"
    with _serving(_Hostile) as url, pytest.raises(
            UserError, match=r"not JSON of a predict response \(5,002 lists "
                             r"and objects for 1 image\)"):
        rest_client.predict(f"{url}/200/lists", "m", pixels[:1], timeout=30)
