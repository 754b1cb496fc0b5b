"""keras_resnet_cifar.deploy.rest_client: the request it sends and how it reads an answer
(against a server: tests/test_serving_client.py)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.deploy import rest_client
from keras_resnet_cifar.errors import UserError

ROW = {"probabilities": [0.25, 0.75], "class_id": 1, "class_name": "cat"}


def test_predict_url_names_a_version_or_a_label():
    url = rest_client.predict_url("http://h:8501/", "m")
    assert url == "http://h:8501/v1/models/m:predict"
    assert rest_client.predict_url("https://h", "m", version=3).endswith("/versions/3:predict")
    assert rest_client.predict_url("http://h", "m", label="stable").endswith(
        "/labels/stable:predict")
    with pytest.raises(UserError, match="'a/b'"):
        rest_client.predict_url("http://h", "a/b")


def test_build_request_in_rows_or_columns():
    pixels = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
    rows = rest_client.build_request(pixels, signature="serving_default")
    assert rows["signature_name"] == "serving_default"
    assert np.array_equal(rows["instances"][1]["image"], pixels[1])
    columns = rest_client.build_request(pixels, columnar=True)
    assert "signature_name" not in columns and np.array_equal(columns["inputs"]["image"], pixels)


def test_parse_response_reads_rows_and_columns_alike():
    rows = rest_client.parse_response({"predictions": [ROW, ROW]}, 2)
    columns = rest_client.parse_response({"outputs": {k: [v, v] for k, v in ROW.items()}}, 2)
    assert rows == columns == [ROW, ROW]


@pytest.mark.parametrize("body, found", [
    ({"error": "Servable not found"}, "Servable not found"),
    ({"predictions": [ROW]}, "1 prediction for 2 images"),
    ({"predictions": [ROW, {**ROW, "probabilities": [0.5, 1.5]}]}, "outside"),
    ({"predictions": [ROW, {**ROW, "probabilities": [1.0]}]}, "ragged"),
    ({"predictions": [ROW, {**ROW, "class_id": 2}]}, "class_id '2'"),
    ({"predictions": [ROW, {**ROW, "class_name": 7}]}, "class_name"),
    ({"outputs": {"probabilities": []}}, "lack one of"),
    ([], "not a JSON object")])
def test_answers_that_are_not_this_models_predictions_are_refused(body, found):
    with pytest.raises(UserError, match=found):
        rest_client.parse_response(body, 2)
