"""keras_resnet_cifar.deploy.model_card: what the card says of the model's normalisation
(whole cards: tests/test_export.py)."""

from __future__ import annotations

import numpy as np

from keras_resnet_cifar.deploy import model_card
from keras_resnet_cifar.models import arch


def _model(mean, std):
    import keras

    x = keras.Input((32, 32, 3))
    y = keras.layers.Normalization(mean=mean, variance=np.square(std), name="normalize")(x)
    return keras.Model(x, keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(y)))


def test_the_reference_weights_imagenet_statistics_are_recognised():
    reference = _model(arch.IMAGENET_MEAN, arch.IMAGENET_STD)
    assert model_card.normalisation(reference)["mean"] == [123.675, 116.28, 103.53]
    assert model_card.uses_reference_normalisation(reference)
    cifar = _model((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))
    assert model_card.normalisation(cifar)["std"] == [63.0, 62.1, 66.7]
    assert not model_card.uses_reference_normalisation(cifar)
    assert model_card.normalisation(None) is None
    assert not model_card.uses_reference_normalisation(None)
