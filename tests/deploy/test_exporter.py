"""keras_resnet_cifar.deploy.exporter: its checks before TensorFlow (the export itself is
exercised end to end by tests/test_export.py)."""

from __future__ import annotations

import pytest

from keras_resnet_cifar.deploy import exporter
from keras_resnet_cifar.errors import UserError


@pytest.mark.parametrize("options, argument, value", [
    ({"calibration_images": 0}, "calibration_images", "got 0"),
    ({"parity_images": -1}, "parity_images", "got -1"),
    ({"latency_runs": -5}, "latency_runs", "got -5"),
    ({"version": 0}, "version", "got 0"),
    ({"variants": ("float32", "bfloat8")}, "variants", "'bfloat8'")])
def test_check_options_names_the_argument_and_the_value(options, argument, value):
    with pytest.raises(UserError, match=value) as refused:
        exporter.check_options(**{"variants": (), **options})
    assert refused.value.argument == argument
    assert "--" not in str(refused.value)


def test_next_version_follows_the_largest_numbered_folder(tmp_path):
    assert exporter.next_version(tmp_path / "none") == 1
    for name in ("1", "7", ".8.tmp", "notes"):
        (tmp_path / name).mkdir()
    assert exporter.next_version(tmp_path) == 8
