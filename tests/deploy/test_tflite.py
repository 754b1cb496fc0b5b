"""keras_resnet_cifar.deploy.tflite: calibration images and refusals (conversions are run by
tests/deploy/test_edge.py and tests/test_export.py)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.errors import UserError


def test_representative_images_are_a_fixed_sorted_sample():
    from keras_resnet_cifar.deploy import tflite

    images = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 32, 32, 3),
                                                                           np.uint8)
    picked = tflite.representative_images(images, 10, seed=3)
    assert len(picked) == 10 and np.array_equal(picked,
                                                tflite.representative_images(images, 10, 3))
    assert list(picked[:, 0, 0, 0]) == sorted(set(picked[:, 0, 0, 0]))
    assert len(tflite.representative_images(images, 500)) == 50
    with pytest.raises(UserError, match="No images"):
        tflite.representative_images(images[:0])


def test_unknown_variants_and_int8_without_calibration_are_refused():
    from keras_resnet_cifar.deploy import tflite

    with pytest.raises(UserError, match="'int4'") as refused:
        tflite.convert(None, "int4")
    assert refused.value.argument == "variant"
    with pytest.raises(UserError, match="calibration"):
        tflite.convert(None, "int8", np.zeros((0, 32, 32, 3), np.uint8))
