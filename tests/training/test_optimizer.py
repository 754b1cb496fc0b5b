"""ReferenceSGD is torch.optim.SGD's update, step by step, across lr changes and warm-up."""

import dataclasses

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_resnet_cifar.models import networks
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training.optimizer import ReferenceSGD, StepSchedule
from keras_resnet_cifar.training.loop import build_and_compile


def _reference(w, grads, lrs, momentum, weight_decay=0.0):
    """torch.optim.SGD(momentum, dampening=0, weight_decay) in NumPy, float64."""
    w, v, out = np.array(w, np.float64), np.zeros_like(w, np.float64), []
    for g, lr in zip(grads, lrs):
        v = momentum * v + g + weight_decay * w
        w = w - lr * v
        out.append(w.copy())
    return out


@pytest.mark.parametrize("optimizer_class,matches", [
    (ReferenceSGD, True),
    # Keras' own SGD keeps lr inside the velocity: the same rule only while lr is
    # constant. This is the difference ReferenceSGD exists for.
    (keras.optimizers.SGD, False),
])
def test_update_rule_across_lr_changes(optimizer_class, matches):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) for _ in range(8)]
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]  # two drops
    variable = keras.Variable(w0.astype(np.float32))
    optimizer = optimizer_class(learning_rate=lrs[0], momentum=0.9)
    got = []
    for g, lr in zip(grads, lrs):
        optimizer.learning_rate = lr
        optimizer.apply_gradients([(tf.constant(g, tf.float32), variable)])
        got.append(variable.numpy().astype(np.float64))
    expected = _reference(w0, grads, lrs, 0.9)
    close = [np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, expected)]
    assert all(close[:3])  # constant lr: both rules agree
    assert all(close) == matches, close


def _linear_model(weight_decay, w0):
    """A linear least-squares model whose gradients NumPy can compute exactly."""
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(
        3, use_bias=False, kernel_regularizer=keras.regularizers.L2(weight_decay / 2),
        name="dense")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("dense").set_weights([w0.astype(np.float32)])
    return model


def _fit_and_numpy(config, steps, batch=8, seed=1):
    """Weights after every step: model.fit with the run's schedule, and NumPy's rule.

    Returns (Keras weights per step, NumPy weights per step, the lr NumPy used per step,
    the lr the optimiser held at each step).
    """
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(4, 3))
    x = rng.normal(size=(config.epochs * steps, batch, 4))
    y = rng.normal(size=(config.epochs * steps, batch, 3))
    model = _linear_model(config.weight_decay, w0)
    model.compile(optimizer=ReferenceSGD(learning_rate_at(0, config), config.momentum),
                  loss="mse")
    seen, used = [], []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: used.append(
            float(model.optimizer.learning_rate.numpy())),
        on_train_batch_end=lambda b, logs: seen.append(model.get_weights()[0].copy()))
    data = tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float32), y.astype(np.float32)))
    model.fit(data, epochs=config.epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
              callbacks=[StepSchedule(config), record])

    lrs = [learning_rate_at(e + s / steps, config)
           for e in range(config.epochs) for s in range(steps)]
    w, v, expected = w0.copy(), np.zeros_like(w0), []
    for xb, yb, lr in zip(x, y, lrs):
        g = 2.0 / yb.size * xb.T @ (xb @ w - yb)  # d/dw mean((xw - y)^2)
        v = config.momentum * v + g + config.weight_decay * w
        w = w - lr * v
        expected.append(w.copy())
    return seen, expected, lrs, used


def _assert_same_steps(seen, expected):
    assert len(seen) == len(expected)
    for step, (a, b) in enumerate(zip(seen, expected)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"step {step}")


def test_training_path_matches_numpy_across_warmup_and_drop():
    """fit + the run's schedule callback + the L2 term == v = mu v + g + wd w; w -= lr v."""
    config = TrainConfig(model="resnet8", epochs=4, learning_rate=0.1, lr_boundaries=(2,),
                         lr_decay=0.1, warmup_epochs=1, warmup_learning_rate=0.01,
                         momentum=0.9, weight_decay=1e-2)
    steps = 3
    seen, expected, lrs, used = _fit_and_numpy(config, steps)
    # Whole-epoch boundaries: the rate of each step is its epoch's, as before.
    assert lrs == [learning_rate_at(e, config) for e in range(config.epochs)
                   for _ in range(steps)]
    assert lrs[:steps] == [0.01] * steps and lrs[-1] == pytest.approx(0.01)  # warm-up, drop
    np.testing.assert_allclose(used, lrs, rtol=1e-6)
    _assert_same_steps(seen, expected)


def test_fractional_boundaries_drop_at_the_step_they_name():
    """Drops after 40% and 60% of a 3-epoch run fall inside epochs: at steps 6 and 9 of 15."""
    config = TrainConfig(model="resnet8", epochs=3, learning_rate=0.1,
                         lr_boundaries=(1.2, 1.8), lr_decay=0.1, momentum=0.9,
                         weight_decay=1e-2)
    steps = 5
    seen, expected, lrs, used = _fit_and_numpy(config, steps, seed=2)
    assert lrs == pytest.approx([0.1] * 6 + [0.01] * 3 + [0.001] * 6)
    np.testing.assert_allclose(used, lrs, rtol=1e-6)  # what the optimiser really held
    _assert_same_steps(seen, expected)
    # The same run with the drops at whole epochs parts from it at step 6.
    whole = dataclasses.replace(config, lr_boundaries=(1, 2))
    seen_whole, _, _, _ = _fit_and_numpy(whole, steps, seed=2)
    np.testing.assert_allclose(seen_whole[4], seen[4], rtol=1e-6)
    assert not np.allclose(seen_whole[5], seen[5], rtol=1e-4)


def test_boundaries_keep_their_type_and_are_validated():
    assert TrainConfig(lr_boundaries=(80.0, 120)).lr_boundaries == (80, 120)
    assert TrainConfig(lr_boundaries=("1.2", 1.8)).lr_boundaries == (1.2, 1.8)
    assert TrainConfig.from_dict({"lr_boundaries": [1.2, 2]}).lr_boundaries == (1.2, 2)
    for bad in ((1.8, 1.2), (0,), (1.0, 1), ("x",)):
        with pytest.raises(UserError) as e:
            TrainConfig(lr_boundaries=bad)
        assert e.value.argument == "lr_boundaries" and repr(bad[0]) in str(e.value)


def test_build_and_compile_uses_reference_sgd_and_decay_scope():
    config = TrainConfig(model="resnet8", weight_decay=1e-4)
    model = build_and_compile(config)
    assert isinstance(model.optimizer, ReferenceSGD)
    assert model.optimizer.momentum == config.momentum
    assert model.get_layer("stem_bn").gamma_regularizer is not None
    assert model.get_layer("logits").bias_regularizer is not None
    kernels_only = build_and_compile(TrainConfig(model="resnet8",
                                                 weight_decay_scope="kernels"))
    assert kernels_only.get_layer("stem_bn").gamma_regularizer is None
    assert kernels_only.get_layer("logits").bias_regularizer is None
    assert kernels_only.get_layer("logits").kernel_regularizer is not None


@pytest.mark.parametrize("scope", ["all", "kernels"])
def test_weight_decay_scope_is_the_reference_l2_term(scope):
    """The penalty is wd/2 * sum ||w||^2 over exactly the scope's weights."""
    wd = 1e-2
    model = networks.build_model("resnet8", weight_decay=wd, weight_decay_scope=scope)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model(np.zeros((1, 32, 32, 3), np.float32))
    decayed = [w for w in model.trainable_weights
               if scope == "all" or w.path.endswith("kernel")]
    expected = wd / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in decayed)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    if scope == "all":
        assert len(decayed) == len(model.trainable_weights)  # every parameter, as torch
    # Parameter counts do not depend on the scope.
    assert networks.count_trainable_params(model) == networks.count_trainable_params(
        networks.build_model("resnet8", weight_decay=0))


def test_unknown_scope_is_refused():
    with pytest.raises(ValueError, match="weight_decay_scope"):
        networks.build_model("resnet8", weight_decay_scope="bn")
    with pytest.raises(ValueError, match="weight_decay_scope"):
        TrainConfig(weight_decay_scope="bn")


def test_saved_model_loads_in_safe_mode_with_its_optimizer_state(tmp_path):
    model = build_and_compile(TrainConfig(model="resnet8"))
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 10, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, ReferenceSGD)
    assert loaded.optimizer.momentum == pytest.approx(0.9)
    for a, b in zip(loaded.optimizer.velocities, model.optimizer.velocities):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
