"""A client for TF Serving's gRPC PredictionService (tensorflow-serving-api, the extra
"serving"). Output tensors are decoded strictly (dtype; values that fill the shape exactly)
into the REST API's columnar form, then checked by rest_client.parse_response: one check of
what a server returns, whatever the transport.
"""

from __future__ import annotations

import math
import urllib.parse

import numpy as np

from keras_resnet_cifar.deploy import rest_client
from keras_resnet_cifar.deploy.contract import DEFAULT_SIGNATURE, INPUT_KEY, OUTPUT_KEYS
from keras_resnet_cifar.errors import UserError, printable

SCHEME = "grpc://"
DEFAULT_PORT = 8500  # TF Serving's --port
MISSING = ("TF Serving's gRPC stubs and protos are not installed: pip install "
           "'keras-resnet-cifar[serving]' (tensorflow-serving-api and grpcio).")


def apis():
    """(grpc, predict_pb2, prediction_service_pb2_grpc, types_pb2), or a UserError naming
    the extra; not imported at the top: the REST client must not need them."""
    try:
        import grpc
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        raise UserError(MISSING) from None
    return grpc, predict_pb2, prediction_service_pb2_grpc, types_pb2


def is_grpc(url: str) -> bool:
    return url.startswith(SCHEME)


def address_problem(url: str) -> str | None:
    """What is wrong with a gRPC address (`grpc://host[:port]`, nothing after), or None."""
    if not is_grpc(url):
        return f"must start with {SCHEME}"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds spaces or control characters"
    parts, problem = rest_client.split_address(url)
    if problem or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return problem or "must be grpc://host[:port] with nothing after the port"
    return None


def target(url: str) -> str:
    """`host:port` of a `grpc://` address, as gRPC's channel takes it."""
    if problem := address_problem(url):
        raise UserError(f"The gRPC address {problem}, got {url!r}.")
    parts = urllib.parse.urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or DEFAULT_PORT}"


def build_request(model_name: str, pixels: np.ndarray, *, version: int | None = None,
                  label: str | None = None, signature: str | None = None):
    _, predict_pb2, _, types_pb2 = apis()
    pixels = np.ascontiguousarray(pixels, np.uint8)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature or DEFAULT_SIGNATURE
    if version is not None:
        request.model_spec.version.value = version
    elif label:
        request.model_spec.version_label = label
    tensor = request.inputs[INPUT_KEY]
    tensor.dtype = types_pb2.DT_UINT8
    for size in pixels.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = pixels.tobytes()
    return request


# How each output is read: the dtypes it may come as -> (numpy dtype, repeated field).
_DECODERS = {"DT_FLOAT": ("<f4", "float_val"), "DT_DOUBLE": ("<f8", "double_val"),
             "DT_INT64": ("<i8", "int64_val"), "DT_INT32": ("<i4", "int_val"),
             "DT_STRING": (None, "string_val")}
_EXPECTED = {"probabilities": ("DT_FLOAT", "DT_DOUBLE"), "class_id": ("DT_INT64", "DT_INT32"),
             "class_name": ("DT_STRING",)}


def _decode(key: str, tensor) -> list | object:
    """A TensorProto -> nested lists. Its values must fill its shape exactly: TensorProto lets
    one value stand for a whole tensor, and a hostile shape of 10^12 would be built here."""
    _, _, _, types_pb2 = apis()
    dtype = {v: k for k, v in types_pb2.DataType.items()}.get(tensor.dtype, str(tensor.dtype))
    if dtype not in _EXPECTED[key]:
        raise UserError(f"TF Serving's {key} is a {dtype} tensor, not "
                        f"{' or '.join(_EXPECTED[key])}: is this model's signature the one "
                        "keras_resnet_cifar.export writes?")
    if tensor.tensor_shape.unknown_rank or any(d.size < 0 for d in tensor.tensor_shape.dim):
        raise UserError(f"TF Serving's {key} has no definite shape.")
    shape = [d.size for d in tensor.tensor_shape.dim]
    count = math.prod(shape)
    numpy_dtype, field = _DECODERS[dtype]
    if numpy_dtype and tensor.tensor_content:
        if len(tensor.tensor_content) != count * np.dtype(numpy_dtype).itemsize:
            raise UserError(f"TF Serving's {key} holds {len(tensor.tensor_content)} bytes for "
                            f"shape {shape}: not a tensor.")
        values = np.frombuffer(tensor.tensor_content, numpy_dtype)
    else:
        repeated = getattr(tensor, field)
        if len(repeated) != count:
            raise UserError(f"TF Serving's {key} holds {len(repeated)} values for shape {shape}.")
        values = (np.array([v.decode("utf-8", "replace") for v in repeated], object)
                  if numpy_dtype is None else np.array(repeated, numpy_dtype))
    return values.reshape(shape).tolist()


def parse_response(response, count: int) -> list[dict]:
    missing = [k for k in OUTPUT_KEYS if k not in response.outputs]
    if missing:
        raise UserError(f"TF Serving's outputs lack {', '.join(missing)}: is this model's "
                        "signature the one keras_resnet_cifar.export writes?")
    columns = {k: _decode(k, response.outputs[k]) for k in OUTPUT_KEYS}
    return rest_client.parse_response({"outputs": columns}, count)


def predict(url: str, model_name: str, pixels: np.ndarray, *, version: int | None = None,
            label: str | None = None, signature: str | None = None,
            timeout: float = 30.0) -> list[dict]:
    """rest_client.predict over gRPC: `url` is `grpc://host[:port]` (8500 by default)."""
    rest_client.check_timeout(timeout)
    where = target(url)
    rest_client.check_names(model_name, label)
    grpc, _, service, _ = apis()
    request = build_request(model_name, pixels, version=version, label=label, signature=signature)
    options = [("grpc.max_receive_message_length", rest_client.MAX_ANSWER_BYTES),
               ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(where, options=options) as channel:
        try:
            response = service.PredictionServiceStub(channel).Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise UserError(_status_message(grpc, e, url, timeout)) from None
    return parse_response(response, len(pixels))


def _status_message(grpc, error, url: str, timeout: float) -> str:
    code = error.code() if hasattr(error, "code") else None
    lines = str((error.details() if hasattr(error, "details") else "") or "").strip().splitlines()
    details = printable(lines[0]) if lines else ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"TF Serving at {url} did not answer within {timeout:g} s."
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"Cannot reach TF Serving at {url}: {details or 'unavailable'}."
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""):
        return (f"TF Serving at {url} answered more than "
                f"{rest_client.MAX_ANSWER_BYTES >> 20} MB; stopped reading.")
    name = code.name if code is not None else "an unknown status"
    return f"TF Serving at {url} answered {name}: {details or '(no details)'}"
