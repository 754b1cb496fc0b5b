"""A stand-in for TF Serving on the loopback, serving one exported SavedModel over REST and
gRPC: for trying the client without Docker, and for the tests. NOT a server to deploy: no
batching, model config, version polling, labels, warm-up or TLS; one version; 127.0.0.1
only. It speaks the part of TF Serving's APIs the client uses, with its wire formats and
error wording ("Servable not found for request: ..."):

    REST  POST /v1/models/<name>[/versions/<N>]:predict   rows ("instances") or columns
    gRPC  tensorflow.serving.PredictionService/Predict
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import threading
from concurrent import futures
from pathlib import Path

import numpy as np

from keras_resnet_cifar.deploy import contract, grpc_client
from keras_resnet_cifar.deploy.contract import DEFAULT_SIGNATURE
from keras_resnet_cifar.errors import UserError, first_line

HOST = "127.0.0.1"  # the loopback only: a stand-in is never reachable from elsewhere
MAX_REQUEST_BYTES = 64 << 20  # a batch of ~4,000 images as JSON; TF Serving has its own
_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(?:/labels/([^/:]+))?:predict")


class BadRequest(Exception):
    """What TF Serving answers with INVALID_ARGUMENT (REST 400) or NOT_FOUND (404)."""

    def __init__(self, message: str, not_found: bool = False):
        super().__init__(message)
        self.not_found = not_found


def model_version(path: str | os.PathLike) -> tuple[Path, int]:
    """(version folder, version) of a version folder, or of a base path's highest version."""
    path = Path(path)
    if (path / contract.SAVED_MODEL_GRAPH).is_file():
        return path, int(path.name) if path.name.isdigit() else 1
    versions = sorted((int(p.name) for p in path.glob("*") if p.name.isdigit()
                       and (p / contract.SAVED_MODEL_GRAPH).is_file()), reverse=True)
    if not versions:
        raise UserError(f"{path} is neither a SavedModel folder nor a model base path with "
                        "numbered version folders (exports/<name>).")
    return path / str(versions[0]), versions[0]


class Servable:
    """One loaded SavedModel version, answering predict requests as TF Serving does."""

    def __init__(self, folder: str | os.PathLike, name: str, version: int, *,
                 trust_savedmodel: bool = False):
        contract.check_trusted(folder, trust_savedmodel)
        import tensorflow as tf

        try:
            self._loaded = tf.saved_model.load(os.fspath(folder))
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise UserError(f"{folder} is not a loadable SavedModel ({first_line(e)}).") from None
        self.name, self.version = name, version
        self.signatures = dict(self._loaded.signatures)

    def check(self, name: str, version: int | None, label: str | None) -> None:
        if label:
            raise BadRequest(f"Servable not found for request: Label({name}, {label}) "
                             "(this stand-in serves no version labels)", not_found=True)
        if name != self.name or (version is not None and version != self.version):
            asked = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise BadRequest(f"Servable not found for request: {asked}", not_found=True)

    def run(self, signature: str | None, inputs: dict) -> dict[str, np.ndarray]:
        import tensorflow as tf

        name = signature or DEFAULT_SIGNATURE
        function = self.signatures.get(name)
        if function is None:
            raise BadRequest(f'Serving signature name: "{name}" not found in signature def')
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise BadRequest(f"Expected inputs {sorted(specs)}, got {sorted(inputs)}")
        tensors = {}
        for key, spec in specs.items():
            value = np.asarray(inputs[key])
            if value.dtype == object or not spec.shape.is_compatible_with(value.shape):
                raise BadRequest(f"input {key} must be {spec.dtype.name} of shape "
                                 f"{spec.shape}, got shape {list(value.shape)}")
            # TF Serving takes JSON numbers as the signature's type; out-of-range ones fail.
            if spec.dtype.is_integer and value.size and (
                    not np.all(np.isfinite(value.astype(np.float64)))
                    or value.min() < spec.dtype.min or value.max() > spec.dtype.max):
                raise BadRequest(f"input {key} holds values outside {spec.dtype.name}")
            tensors[key] = tf.constant(value.astype(spec.dtype.as_numpy_dtype))
        try:
            outputs = function(**tensors)
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise BadRequest(first_line(e)) from None
        return {k: v.numpy() for k, v in outputs.items()}


def _json_outputs(outputs: dict[str, np.ndarray]) -> dict[str, list]:
    text = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])
    return {k: (text(v) if v.dtype == object else v).tolist() for k, v in outputs.items()}


def _rest_answer(servable: Servable, path: str, body) -> dict:
    match = _PATH.fullmatch(path)
    if not match:
        raise BadRequest(f"Malformed request: POST {path[:100]}", not_found=True)
    name, version, label = match.groups()
    servable.check(name, None if version is None else int(version), label)
    if not isinstance(body, dict):
        raise BadRequest("JSON Value: not an object")
    signature = body.get("signature_name")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise BadRequest("'instances' must be a non-empty list")
        if all(isinstance(r, dict) for r in rows):
            if any(set(r) != set(rows[0]) for r in rows):
                raise BadRequest("instances do not all have the same named inputs")
            inputs = {k: [r[k] for r in rows] for k in rows[0]}
        else:  # the single-input short form: a list of bare tensors
            specs = servable.signatures.get(signature or DEFAULT_SIGNATURE)
            inputs = {next(iter(specs.structured_input_signature[1])) if specs else "": rows}
        columns = _json_outputs(servable.run(signature, inputs))
        return {"predictions": [{k: v[i] for k, v in columns.items()}
                                for i in range(len(rows))]}
    if isinstance(body.get("inputs"), dict):
        return {"outputs": _json_outputs(servable.run(signature, body["inputs"]))}
    raise BadRequest("Missing 'inputs' or 'instances' key")


def _rest_handler(servable: Servable):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "keras-resnet-cifar-stand-in"

        def log_message(self, *args):  # quiet: the command prints the addresses only
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's name)
            try:
                size = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                size = -1
            if not 0 <= size <= MAX_REQUEST_BYTES:
                self.close_connection = True
                return self._send(413, {"error": f"A request body of at most "
                                                 f"{MAX_REQUEST_BYTES} bytes is taken"})
            try:
                body = json.loads(self.rfile.read(size))
                self._send(200, _rest_answer(servable, self.path, body))
            except (ValueError, RecursionError) as e:
                self._send(400, {"error": f"JSON Parse error: {first_line(e)}"})
            except BadRequest as e:
                self._send(404 if e.not_found else 400, {"error": str(e)})

    return Handler


def _grpc_servicer(servable: Servable):
    grpc, predict_pb2, service, _ = grpc_client.apis()
    import tensorflow as tf

    class Servicer(service.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the proto's name)
            spec = request.model_spec
            try:
                servable.check(spec.name, spec.version.value if spec.HasField("version")
                               else None, spec.version_label or None)
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                outputs = servable.run(spec.signature_name or None, inputs)
            except BadRequest as e:
                context.abort(grpc.StatusCode.NOT_FOUND if e.not_found
                              else grpc.StatusCode.INVALID_ARGUMENT, str(e))
            except (ValueError, TypeError) as e:  # a TensorProto make_ndarray refuses
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, first_line(e))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    return grpc, service, Servicer()


@dataclasses.dataclass
class Running:
    rest_url: str
    grpc_url: str
    _stop: list

    def close(self) -> None:
        for stop in self._stop:
            stop()


def _port_in_use(what: str, port: int) -> UserError:
    return UserError(f"Cannot listen for {what} on {HOST}:{port}: the port is in use "
                     "(give another, or 0 for any free one).")


def serve(servable: Servable, *, rest_port: int = 8501, grpc_port: int = 8500,
          threads: int = 4) -> Running:
    """Starts the REST and gRPC servers in background threads (port 0: any free one);
    `threads` are gRPC's, REST takes one per connection."""
    grpc, service, servicer = _grpc_servicer(servable)
    try:
        httpd = http.server.ThreadingHTTPServer((HOST, rest_port), _rest_handler(servable))
    except OSError:
        raise _port_in_use("REST", rest_port) from None
    httpd.daemon_threads = True
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads),
                         options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                                  ("grpc.so_reuseport", 0)])
    service.add_PredictionServiceServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(f"{HOST}:{grpc_port}")
    except RuntimeError:
        port = 0
    if not port:
        httpd.server_close()
        raise _port_in_use("gRPC", grpc_port)
    server.start()
    threading.Thread(target=httpd.serve_forever, name="stand-in REST", daemon=True).start()
    return Running(f"http://{HOST}:{httpd.server_address[1]}", f"grpc://{HOST}:{port}",
                   [httpd.shutdown, httpd.server_close, lambda: server.stop(grace=None).wait()])

