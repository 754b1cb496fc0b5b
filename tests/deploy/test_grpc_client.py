"""keras_resnet_cifar.deploy.grpc_client: addresses, and the strict decoding of an answer's
tensors (against a server: tests/test_serving_grpc.py)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.deploy import grpc_client
from keras_resnet_cifar.errors import UserError


def test_target_of_a_grpc_address():
    assert grpc_client.target("grpc://localhost") == "localhost:8500"
    assert grpc_client.target("grpc://[::1]:9000") == "[::1]:9000"
    for url in ("http://h:8500", "grpc://h:8500/v1", "grpc://"):
        with pytest.raises(UserError, match="The gRPC address"):
            grpc_client.target(url)


def _response(probabilities, class_id, class_name):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_serving")
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    for key, value in (("probabilities", probabilities), ("class_id", class_id),
                       ("class_name", class_name)):
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response


def test_a_response_decodes_into_predictions():
    response = _response(np.array([[0.25, 0.75]], np.float32), np.array([1], np.int64),
                         np.array([b"cat"]))
    assert grpc_client.parse_response(response, 1) == [
        {"probabilities": [0.25, 0.75], "class_id": 1, "class_name": "cat"}]


def test_a_tensor_that_declares_more_values_than_it_carries_is_refused():
    response = _response(np.array([[0.25, 0.75]], np.float32), np.array([1], np.int64),
                         np.array([b"cat"]))
    response.outputs["probabilities"].tensor_shape.dim[0].size = 10**12
    with pytest.raises(UserError, match="probabilities holds 8 bytes for shape"):
        grpc_client.parse_response(response, 1)
    response = _response(np.array([[0.25, 0.75]], np.float32), np.array([1.0], np.float32),
                         np.array([b"cat"]))
    with pytest.raises(UserError, match="class_id is a DT_FLOAT tensor"):
        grpc_client.parse_response(response, 1)
