"""keras_resnet_cifar.deploy.tf_serving: TF Serving's model config and batching parameters."""

from __future__ import annotations

import pytest

from keras_resnet_cifar.deploy import tf_serving
from keras_resnet_cifar.errors import UserError


def test_batching_parameters_end_the_allowed_sizes_at_the_largest_batch():
    text = tf_serving.batching_parameters(max_batch_size=20, num_batch_threads=3)
    assert "max_batch_size { value: 20 }" in text
    assert "num_batch_threads { value: 3 }" in text
    assert [line for line in text.splitlines() if line.startswith("allowed")] == [
        "allowed_batch_sizes: 1", "allowed_batch_sizes: 8", "allowed_batch_sizes: 20"]


@pytest.mark.parametrize("argument, value", [("max_batch_size", 0),
                                             ("batch_timeout_micros", -1),
                                             ("max_enqueued_batches", 0)])
def test_batching_values_out_of_range_name_their_argument(argument, value):
    with pytest.raises(UserError, match=f"got {value}") as refused:
        tf_serving.batching_parameters(**{argument: value})
    assert refused.value.argument == argument


def test_versions_are_numbered_folders_in_order(tmp_path):
    assert tf_serving.versions(tmp_path / "none") == []
    for name in ("10", "2", "x"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert tf_serving.versions(tmp_path) == [2, 10]
