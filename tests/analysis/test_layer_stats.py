"""Per-layer statistics against answers computed by hand."""

import json

import keras
import numpy as np
import pytest

from keras_resnet_cifar import run_files
from keras_resnet_cifar.analysis import layer_stats
from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.models import networks


def _conv_bn_model(gamma=2.0, beta=0.5, eps=1e-5):
    """image -> 3x3 conv (centre tap 1: the identity) -> BN(gamma, beta, mean 0, var 1),
    plus a 1x1-conv branch with its own BN that must not count as a response."""
    x = keras.Input((6, 6, 1), name="image")
    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, name="conv")
    bn = keras.layers.BatchNormalization(epsilon=eps, name="bn")
    y = bn(conv(x))
    proj = keras.layers.Conv2D(1, 1, use_bias=False, name="proj")
    z = keras.layers.BatchNormalization(name="proj_bn")(proj(x))
    out = keras.layers.Add(name="add")([keras.layers.ReLU(name="relu")(y), z])
    model = keras.Model(x, out)
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1] = 1.0
    conv.set_weights([kernel])
    bn.set_weights([np.array([gamma]), np.array([beta]), np.zeros(1), np.ones(1)])
    return model


def test_response_layers_are_the_bns_after_3x3_convs():
    assert layer_stats.response_layers(_conv_bn_model()) == ["bn"]
    model = networks.build_model("resnet8", shortcut="B")
    assert layer_stats.response_layers(model) == [
        "stem_bn", "stage1_block1_bn1", "stage1_block1_bn2", "stage2_block1_bn1",
        "stage2_block1_bn2", "stage3_block1_bn1", "stage3_block1_bn2"]  # no shortcut_bn
    assert layer_stats.kernel_layers(networks.build_model("plain8"))[-1] == "logits"
    assert len(layer_stats.kernel_layers(networks.build_model("plain20"))) == 20


def test_response_std_is_gamma_times_input_std_in_inference_mode():
    eps = 1e-5
    model = _conv_bn_model(gamma=2.0, beta=0.5, eps=eps)
    images = np.random.default_rng(0).normal(3.0, 1.7, (8, 6, 6, 1)).astype(np.float32)
    std = layer_stats.response_std(model, images)
    # Inference BN: 2 * (x - 0) / sqrt(1 + eps) + 0.5; the identity conv passes x.
    expected = 2.0 * np.std(images.astype(np.float64)) / np.sqrt(1 + eps)
    assert list(std) == ["bn"]
    assert std["bn"] == pytest.approx(expected, rel=1e-5)


def test_gradient_norm_of_a_softmax_layer_matches_the_hand_computation():
    rng = np.random.default_rng(1)
    x_in = keras.Input((3,), name="x")
    dense = keras.layers.Dense(4, name="dense")
    model = keras.Model(x_in, keras.layers.Activation("softmax", name="p")(dense(x_in)))
    w, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    dense.set_weights([w, b])
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 3, 1, 1, 2])

    loss, norms = layer_stats.gradient_norms(model, x, y)

    z = x.astype(np.float64) @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(4)[y]
    # d mean(-log p_y) / dW = x^T (p - onehot) / batch
    grad = x.T @ (p - onehot) / len(x)
    assert loss == pytest.approx(np.mean(-np.log(p[np.arange(5), y])), rel=1e-5)
    assert list(norms) == ["dense"]
    assert norms["dense"] == pytest.approx(np.linalg.norm(grad), rel=1e-4)


def test_measuring_does_not_change_the_model():
    model = networks.build_model("resnet8")
    data = datasets.synthetic(32, 0)
    before = [v.numpy().copy() for v in model.variables]
    record = layer_stats.measure(model, data.train.images[:16], data.train.labels[:16])
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))
    assert len(record["response_std"]) == 7 and len(record["gradient_norm"]) == 8
    assert all(np.isfinite(record["response_std"])) and record["loss"] > 0


def test_the_fixed_batch_is_deterministic_and_without_repeats():
    """The recorder's batch (the study draws it with datasets.fixed_subset)."""
    ids = np.arange(100, dtype=np.uint8)
    split = datasets.Split(np.broadcast_to(ids[:, None, None, None], (100, 32, 32, 3)),
                           ids.astype(np.int64) % 10)
    a, la = datasets.fixed_subset(split, 20, 3)
    b, _ = datasets.fixed_subset(split, 20, 3)
    assert np.array_equal(a, b) and len(set(a[:, 0, 0, 0])) == 20
    assert np.array_equal(la, a[:, 0, 0, 0] % 10)
    assert len(datasets.fixed_subset(split, 500, 0)[1]) == 100


def test_recorder_writes_the_chosen_epochs_and_keeps_them_on_resume(tmp_path, monkeypatch):
    model = _conv_bn_model()
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 1)).astype(np.float32)
    target, labels = np.zeros((16, 6, 6, 1), np.float32), np.zeros(16, np.int64)
    calls = []

    def fake_measure(m, images, _):  # this model has no class probabilities to differentiate
        calls.append(1)
        return {"loss": 0.0, "response_layers": ["bn"],
                "response_std": [layer_stats.response_std(m, images)["bn"]],
                "gradient_layers": [], "gradient_norm": []}

    monkeypatch.setattr(layer_stats, "measure", fake_measure)
    recorder = layer_stats.LayerStatsRecorder(tmp_path, x, labels, epochs=(0, 2))
    model.fit(x, target, epochs=3, batch_size=8, verbose=0, callbacks=[recorder])
    saved = json.loads((tmp_path / "layer_stats.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0, 2] and len(calls) == 2
    assert saved["response_layers"] == ["bn"] and saved["batch_size"] == 16

    again = layer_stats.LayerStatsRecorder(tmp_path, x, labels, epochs=(0, 2, 3))
    model.fit(x, target, epochs=3, initial_epoch=2, batch_size=8, verbose=0, callbacks=[again])
    epochs = run_files.read_layer_stats(tmp_path)["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 2, 3] and len(calls) == 3
    assert epochs[0] == saved["epochs"][0]  # epoch 0 is not re-measured on resume


def test_recorder_on_a_real_model_records_both_statistics(tmp_path):
    model = networks.build_model("plain8", weight_decay=0)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    data = datasets.synthetic(32, 0)
    images, labels = datasets.fixed_subset(data.train, 8, 0)
    recorder = layer_stats.LayerStatsRecorder(tmp_path, images, labels, epochs=[1])
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=16,
              epochs=1, verbose=0, callbacks=[recorder])
    saved = run_files.read_layer_stats(tmp_path)
    assert [e["epoch"] for e in saved["epochs"]] == [1]
    assert len(saved["epochs"][0]["response_std"]) == len(saved["response_layers"]) == 7
    assert len(saved["epochs"][0]["gradient_norm"]) == len(saved["gradient_layers"]) == 8
    with pytest.raises(ValueError):
        layer_stats.LayerStatsRecorder(tmp_path, images, labels, epochs=[-1])


def test_recorder_measures_fractional_epochs_at_the_step_that_reaches_them(tmp_path, monkeypatch):
    model = _conv_bn_model()
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 1)).astype(np.float32)
    target, labels = np.zeros((32, 6, 6, 1), np.float32), np.zeros(32, np.int64)
    steps_done, at = [], []
    monkeypatch.setattr(layer_stats, "measure", lambda m, images, _: at.append(len(steps_done))
                        or {"loss": 0.0, "response_layers": [], "response_std": [],
                            "gradient_layers": [], "gradient_norm": []})
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps_done.append(b))
    recorder = layer_stats.LayerStatsRecorder(tmp_path, x, labels, epochs=(0, 0.5, 1.5, 2))
    # 4 steps per epoch; the counter runs first, so `at` holds the steps done at measuring.
    model.fit(x, target, epochs=2, batch_size=8, verbose=0, callbacks=[counter, recorder])
    assert [e["epoch"] for e in run_files.read_layer_stats(tmp_path)["epochs"]] == [0, 0.5, 1.5, 2]
    assert at == [0, 2, 6, 8]
