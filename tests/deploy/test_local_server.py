"""keras_resnet_cifar.deploy.local_server: which version a path serves (the servers
themselves are exercised through tests/test_serving_client.py and test_serving_grpc.py)."""

from __future__ import annotations

import pytest

from keras_resnet_cifar.deploy import local_server
from keras_resnet_cifar.errors import UserError


def test_model_version_of_a_base_path_or_a_version_folder(tmp_path):
    for version in ("1", "3", "12"):
        (tmp_path / version).mkdir()
        if version != "12":  # no saved_model.pb: not a version to serve
            (tmp_path / version / "saved_model.pb").write_bytes(b"")
    assert local_server.model_version(tmp_path) == (tmp_path / "3", 3)
    assert local_server.model_version(tmp_path / "1") == (tmp_path / "1", 1)
    with pytest.raises(UserError, match="neither a SavedModel folder"):
        local_server.model_version(tmp_path / "12")
