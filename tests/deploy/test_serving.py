"""keras_resnet_cifar.deploy.serving: the SavedModel's two signatures (served end to end:
tests/test_export.py, tests/test_serving_*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.errors import UserError


def test_both_signatures_and_the_classifier(tmp_path):
    import keras

    from keras_resnet_cifar.deploy import serving

    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 3))
    model = keras.Model(x, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(x))))
    with pytest.raises(UserError, match="3 outputs but 2 class names"):
        serving.save(model, tmp_path / "bad", ["a", "b"])
    serving.save(model, tmp_path / "m", ["a", "b", "c"])
    assert {"serving_default", "serving_float32"} <= set(serving.signature_names(tmp_path / "m"))
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "m"))
    for name in ("serving_default", "serving_float32"):
        assert list(loaded.signatures[name].structured_input_signature[1]) == ["image"]
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), np.uint8)
    np.testing.assert_allclose(serving.load_classifier(tmp_path / "m").predict(pixels, 2),
                               model(pixels.astype(np.float32)), atol=1e-6)
    with pytest.raises(UserError, match="not a loadable SavedModel"):
        serving.signature_names(tmp_path)
