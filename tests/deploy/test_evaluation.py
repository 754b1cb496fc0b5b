"""keras_resnet_cifar.deploy.evaluation: the metrics of probabilities against labels (the
command's tests, with the table: tests/test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.deploy import evaluation


def test_metrics_and_the_clipped_loss():
    probabilities = np.array([[0.9, 0.1], [0.0, 1.0], [0.6, 0.4]])
    result = evaluation.metrics_from_probabilities(probabilities, np.array([0, 0, 1]), "ab")
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["confusion_matrix"] == [[1, 1], [1, 0]]
    assert [r["recall"] for r in result["per_class"]] == [0.5, 0.0]
    assert result["loss_clipped_images"] == 1  # p = 0 for its true class
    assert result["loss"] == pytest.approx(-(np.log(0.9) + np.log(1e-12) + np.log(0.4)) / 3)


def test_evaluate_split_runs_the_predictor_in_batches():
    seen = []

    def predict(images, batch_size):
        seen.append(batch_size)
        return np.tile([0.2, 0.8], (len(images), 1))

    result = evaluation.evaluate_split(predict, np.zeros((4, 32, 32, 3), np.uint8),
                                       np.array([1, 1, 0, 1]), "ab", batch_size=2)
    assert seen == [2] and result["accuracy"] == 0.75 and result["eval_seconds"] >= 0
