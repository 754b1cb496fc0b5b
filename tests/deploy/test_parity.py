"""keras_resnet_cifar.deploy.parity: agreement and latency of exports against their source."""

from __future__ import annotations

import numpy as np

from keras_resnet_cifar.deploy import parity

REFERENCE = np.array([[0.7, 0.3], [0.501, 0.499], [0.2, 0.8]])


def test_compare_by_hand():
    exported = np.array([[0.6, 0.4], [0.49, 0.51], [0.1, 0.9]])  # flips the near tie only
    row = parity.compare(REFERENCE, exported, np.array([0, 0, 0]))
    assert row["top1_agreement"] == 2 / 3
    assert (row["disagreements"], row["close_disagreements"]) == (1, 1)
    assert np.isclose(row["max_prob_diff"], 0.1)
    assert row["accuracy"] == 1 / 3
    assert parity.compare(REFERENCE, REFERENCE)["accuracy"] is None


def test_report_measures_every_variant():
    calls = []
    variants = {"keras": {"predict": lambda x: REFERENCE, "predict_one": lambda x: x},
                "tflite_int8": {"predict": lambda x: REFERENCE[:, ::-1],
                                "predict_one": lambda x: calls.append(len(x)),
                                "size_bytes": 10, "file": "model_int8.tflite"}}
    images = np.zeros((3, 32, 32, 3), np.uint8)
    report = parity.report(REFERENCE, variants, images, None, latency_runs=4,
                           progress=calls.append)
    assert report["images"] == 3 and report["labelled"] is False
    assert report["variants"]["keras"]["top1_agreement"] == 1.0
    assert report["variants"]["tflite_int8"]["top1_agreement"] == 0.0
    assert report["variants"]["tflite_int8"]["latency_ms"]["runs"] == 4
    assert calls == ["keras", "tflite_int8"] + [1] * 14  # 10 warm-up and 4 timed calls
    assert parity.report(REFERENCE, variants, images, None,
                         latency_runs=0)["variants"]["keras"]["latency_ms"] is None
