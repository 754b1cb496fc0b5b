"""The gRPC client and the stand-in server (serve_local), on the loopback only.

Real predictions: the stand-in (built from tensorflow-serving-api's protos and
gRPC servicer) serves a SavedModel that serving.save wrote from a tiny random
resnet8, and both transports must return what the SavedModel computes. Hostile
servers: a PredictionService servicer defined here answers what each case asks,
and the client must refuse it in one line, as the REST client does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent import futures

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from keras_resnet_cifar.data.labels import CIFAR10_CLASSES  # noqa: E402
from keras_resnet_cifar.deploy import grpc_client, local_server, rest_client, serving  # noqa: E402
from keras_resnet_cifar.errors import UserError  # noqa: E402
from keras_resnet_cifar.models import networks  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """exports/tiny/3: a SavedModel of a random resnet8, as export writes it (no card)."""
    root = tmp_path_factory.mktemp("exports") / "tiny"
    serving.save(networks.build_model("resnet8"), root / "3", CIFAR10_CLASSES)
    return root


@pytest.fixture(scope="module")
def stand_in(saved_model):
    folder, version = local_server.model_version(saved_model)
    servable = local_server.Servable(folder, "tiny", version, trust_savedmodel=True)
    running = local_server.serve(servable, rest_port=0, grpc_port=0)
    yield running, serving.load_classifier(folder)
    running.close()


@pytest.fixture()
def pixels():
    return np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)


def test_grpc_and_rest_return_what_the_saved_model_computes(stand_in, pixels):
    running, classifier = stand_in
    expected = classifier.predict(pixels)
    over_grpc = grpc_client.predict(running.grpc_url, "tiny", pixels, timeout=30)
    over_rest = rest_client.predict(running.rest_url, "tiny", pixels, timeout=30)
    for results in (over_grpc, over_rest):
        np.testing.assert_allclose([r["probabilities"] for r in results], expected,
                                   rtol=0, atol=1e-6)
        assert [r["class_id"] for r in results] == expected.argmax(1).tolist()
        assert [r["class_name"] for r in results] == [CIFAR10_CLASSES[i]
                                                      for i in expected.argmax(1)]
    # The same answer, bit for bit in the class ids, whichever transport carried it.
    assert [r["class_id"] for r in over_grpc] == [r["class_id"] for r in over_rest]
    # The version it serves, by number; the float32 signature gives the same.
    again = grpc_client.predict(running.grpc_url, "tiny", pixels[:1], version=3,
                                signature="serving_float32")
    np.testing.assert_allclose(again[0]["probabilities"], expected[0], atol=1e-6)


def test_stand_in_refuses_as_tf_serving_words_it(stand_in, pixels):
    running, _ = stand_in
    for predict, url in ((grpc_client.predict, running.grpc_url),
                         (rest_client.predict, running.rest_url)):
        with pytest.raises(UserError, match=r"Servable not found for request: Latest\(nope\)"):
            predict(url, "nope", pixels[:1])
        with pytest.raises(UserError, match=r"Specific\(tiny, 4\)"):
            predict(url, "tiny", pixels[:1], version=4)
        with pytest.raises(UserError, match='signature name: "x" not found'):
            predict(url, "tiny", pixels[:1], signature="x")
    with pytest.raises(UserError, match="answered NOT_FOUND: Servable not found"):
        grpc_client.predict(running.grpc_url, "tiny", pixels[:1], label="stable")
    # A request of the wrong shape is the server's INVALID_ARGUMENT, in one line.
    with pytest.raises(UserError, match="answered INVALID_ARGUMENT: input image must be"):
        grpc_client.predict(running.grpc_url, "tiny", pixels[:, :16])


def test_addresses():
    assert grpc_client.target("grpc://localhost") == "localhost:8500"
    assert grpc_client.target("grpc://127.0.0.1:9000/") == "127.0.0.1:9000"
    assert grpc_client.target("grpc://[::1]:9000") == "[::1]:9000"
    for url, problem in (("http://h:8500", "must start with grpc://"),
                         ("grpc://h:8500/v1/models", "must be grpc://host[:port] with nothing after"),
                         ("grpc://h:99999", "is malformed"),
                         ("grpc://", "has no host name"),
                         ("grpc://h\x1b:1", "holds spaces or control characters")):
        with pytest.raises(UserError, match=re.escape(f"The gRPC address {problem}")):
            grpc_client.target(url)


# --- Hostile servers ---------------------------------------------------------------------

def _tensor(array, dtype=None):
    return tf.make_tensor_proto(np.asarray(array, dtype))


def _answer(kind: str, n: int):
    """The PredictResponse of one hostile case for n images (None: abort or stall)."""
    p = np.full((n, 10), 0.1, np.float32)
    ids = np.zeros(n, np.int64)
    names = np.array([b"airplane"] * n, object)
    response = predict_pb2.PredictResponse()
    outputs = {"probabilities": _tensor(p), "class_id": _tensor(ids),
               "class_name": _tensor(names)}
    if kind == "nan":
        p[0, 3] = np.nan
        outputs["probabilities"] = _tensor(p)
    elif kind == "negative":
        p[0] = [-5.0, 6.0] + [0.0] * 8
        outputs["probabilities"] = _tensor(p)
    elif kind == "short":  # one prediction fewer than images
        outputs = {"probabilities": _tensor(p[1:]), "class_id": _tensor(ids[1:]),
                   "class_name": _tensor(names[1:])}
    elif kind == "flat":  # probabilities of the wrong rank
        outputs["probabilities"] = _tensor(p.ravel())
    elif kind == "wrong_dtype":
        outputs["class_id"] = _tensor(np.array(["x"] * n, object))
    elif kind == "missing":
        del outputs["class_name"]
    elif kind == "class_id_range":
        outputs["class_id"] = _tensor(np.full(n, 12, np.int64))
    elif kind == "shape_bomb":  # one value standing for 10^12 (TensorProto allows it)
        bomb = outputs["probabilities"]
        bomb.ClearField("tensor_content")
        del bomb.tensor_shape.dim[:]
        bomb.tensor_shape.dim.add().size = n
        bomb.tensor_shape.dim.add().size = 10 ** 12
        bomb.float_val.append(0.5)
    elif kind == "escape":
        outputs["class_name"] = _tensor(np.array([b"cat\x1b[31m"] * n, object))
    elif kind == "huge":  # a valid answer padded past the client's limit
        outputs["padding"] = _tensor(np.zeros(2 << 20, np.uint8))
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(value)
    return response


class _Hostile(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers according to the model name of the request."""

    def Predict(self, request, context):  # noqa: N802
        kind = request.model_spec.name
        if kind == "status":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "model is not ready\x1b]0;pwned\x07\nsecond line")
        if kind == "slow":
            time.sleep(3)
        n = request.inputs["image"].tensor_shape.dim[0].size
        return _answer(kind, n)


@pytest.fixture(scope="module")
def hostile():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Hostile(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"grpc://127.0.0.1:{port}"
    server.stop(grace=None).wait()


@pytest.mark.parametrize("kind, message", [
    ("nan", "not a list of finite numbers"),
    ("negative", r"probabilities outside \[0, 1\]"),
    ("short", "answered 2 predictions for 3 images"),
    ("flat", "not a list of finite numbers"),
    ("wrong_dtype", "class_id is a DT_STRING tensor"),
    ("missing", "outputs lack class_name"),
    ("class_id_range", r"class_id '12', not an integer in \[0, 10\)"),
    ("shape_bomb", r"holds 1 values for shape \[3, 1000000000000\]"),
    ("status", "answered FAILED_PRECONDITION: model is not ready"),
])
def test_hostile_answers_are_refused_in_one_line(hostile, pixels, kind, message):
    with pytest.raises(UserError, match=message) as refused:
        grpc_client.predict(hostile, kind, pixels[:3], timeout=10)
    text = str(refused.value)
    assert "\n" not in text and "\x1b" not in text and "\x07" not in text


def test_escaped_names_huge_slow_and_dead_servers(hostile, pixels, monkeypatch):
    [result] = grpc_client.predict(hostile, "escape", pixels[:1], timeout=10)
    assert result["class_name"] == "cat\\x1b[31m"
    # The limit is the REST client's (256 MB); a smaller one here keeps the test small.
    monkeypatch.setattr(rest_client, "MAX_ANSWER_BYTES", 1 << 20)
    with pytest.raises(UserError, match="answered more than 1 MB; stopped reading"):
        grpc_client.predict(hostile, "huge", pixels[:1], timeout=10)
    started = time.monotonic()
    with pytest.raises(UserError, match="did not answer within 0.5 s"):
        grpc_client.predict(hostile, "slow", pixels[:1], timeout=0.5)
    assert time.monotonic() - started < 2.5  # the deadline, not the server, ended it
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"Cannot reach TF Serving at grpc://127.0.0.1:{port}"):
        grpc_client.predict(f"grpc://127.0.0.1:{port}", "m", pixels[:1], timeout=5)


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(UserError) as missing:
        grpc_client.predict("grpc://127.0.0.1:1", "m", np.zeros((1, 32, 32, 3), np.uint8))
    assert str(missing.value) == grpc_client.MISSING
    assert "pip install 'keras-resnet-cifar[serving]'" in grpc_client.MISSING


# --- The commands, as a user runs them ---------------------------------------------------

def test_cli_without_the_extra_says_what_to_install(tmp_path):
    """A fresh interpreter where grpc and tensorflow_serving do not import (the base install)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('grpc', 'tensorflow_serving'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    np.save(tmp_path / "batch.npy", np.zeros((1, 32, 32, 3), np.uint8))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-m", "keras_resnet_cifar.serving_client", "--url=grpc://127.0.0.1:1",
         "--model_name=m", "batch.npy"], cwd=tmp_path, capture_output=True, text=True,
        env={**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), repo])}, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {grpc_client.MISSING}"]


def test_serve_local_command_and_client_over_both_transports(saved_model, pixels, tmp_path):
    """serve_local in its own process on free ports; serving_client against it over both."""
    np.save(tmp_path / "batch.npy", pixels[:2])
    server = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet_cifar.serve_local", f"--model_path={saved_model}",
         "--rest_port=0", "--grpc_port=0", "--trust_savedmodel"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [server.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("stand-in for TF Serving"), (lines, server.poll())
        assert lines[1].startswith("serving tiny version 3 from ")
        rest = lines[2].split()[1]
        grpc_url = lines[3].split()[1]
        assert rest.startswith("http://127.0.0.1:") and grpc_url.startswith("grpc://127.0.0.1:")
        answers = {}
        for url in (rest, grpc_url):
            done = subprocess.run(
                [sys.executable, "-m", "keras_resnet_cifar.serving_client", f"--url={url}",
                 "--model_name=tiny", "--json", "--top_k=10", "batch.npy"],
                cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            answers[url] = json.loads(done.stdout)["predictions"]
        assert answers[rest] == answers[grpc_url]
        assert [p["input"] for p in answers[rest]] == ["batch.npy[0]", "batch.npy[1]"]
        bad = subprocess.run(
            [sys.executable, "-m", "keras_resnet_cifar.serving_client", f"--url={grpc_url}",
             "--model_name=tiny", "--columnar", "batch.npy"],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1
        assert bad.stderr.strip().splitlines() == [
            "error: --columnar is a REST request form; gRPC always sends one tensor."]
        server.send_signal(signal.SIGTERM)  # how a server is stopped: not an error
        out, err = server.communicate(timeout=60)
        assert server.returncode == 0 and out.strip() == "stopped", err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_serve_local_refuses_an_unvouched_saved_model(saved_model):
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.serve_local",
                           f"--model_path={saved_model}", "--rest_port=0", "--grpc_port=0"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "--trust_savedmodel" in line
