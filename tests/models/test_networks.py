"""Golden tests of the builders: exact parameter counts, topology, padding alignment."""

import numpy as np
import pytest
import keras

from keras_resnet_cifar.models import arch, networks

REFERENCE_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_the_reference_implementation(depth):
    plain = networks.build_model(f"plain{depth}")
    resnet = networks.build_model(f"resnet{depth}")
    option_b = networks.build_model(f"resnet{depth}", shortcut="B")
    assert networks.count_trainable_params(plain) == REFERENCE_PARAMS[depth]
    assert networks.count_trainable_params(resnet) == REFERENCE_PARAMS[depth]
    # Two 1x1 projections (16->32, 32->64) with BN: 512 + 64 + 2048 + 128 = 2,752 more.
    assert networks.count_trainable_params(option_b) == REFERENCE_PARAMS[depth] + 2_752


@pytest.mark.parametrize("depth", [20, 56])
def test_additions_only_in_residual_nets(depth):
    n = (depth - 2) // 6
    count = lambda m: sum(isinstance(l, keras.layers.Add) for l in m.layers)
    assert count(networks.build_model(f"plain{depth}")) == 0
    assert count(networks.build_model(f"resnet{depth}")) == 3 * n
    convs = [l for l in networks.build_model(f"resnet{depth}").layers
             if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) + 1 == depth  # depth counts the conv layers and the dense one


def test_layer_names_are_deterministic_and_documented():
    a = [l.name for l in networks.build_model("resnet20").layers]
    b = [l.name for l in networks.build_model("resnet20").layers]
    assert a == b
    for name in ("image", "normalize", "stem_conv", "stage2_block1_pad",
                 "stage2_block1_shortcut_subsample", "stage3_block3_add", "pool",
                 "logits", "probabilities"):
        assert name in a


def test_bad_shortcut_option():
    with pytest.raises(ValueError, match="shortcut"):
        networks.build_model("resnet20", shortcut="C")


def test_the_spec_the_builder_follows_is_the_keras_free_one():
    """The builder builds what the Keras-free arch module specifies."""
    spec = arch.parse_name("plain14")
    assert (spec.residual, spec.depth, spec.blocks_per_stage) == (False, 14, 2)
    model = networks.build_model("plain14")
    blocks = {l.name.split("_")[1] for l in model.layers if l.name.startswith("stage3_")}
    assert blocks == {f"block{b}" for b in range(1, spec.blocks_per_stage + 1)}
    assert model.get_layer("stage3_block1_conv1").filters == spec.widths[-1]


def test_exactness_settings():
    model = networks.build_model("resnet20")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert not layer.use_bias
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == 1e-5 and layer.momentum == 0.9
    # A stride-2 conv sees an explicitly padded input and pads nothing itself.
    assert model.get_layer("stage2_block1_conv1").padding == "valid"
    assert model.get_layer("stage2_block1_pad").padding == ((1, 1), (1, 1))


def test_normalisation_lives_in_the_model():
    model = networks.build_model("plain20")
    norm = keras.Model(model.input, model.get_layer("normalize").output)
    pixels = np.broadcast_to(np.asarray(arch.CIFAR10_MEAN, np.float32), (1, 32, 32, 3))
    np.testing.assert_allclose(norm(pixels), 0.0, atol=1e-4)
    one_std = pixels + np.asarray(arch.CIFAR10_STD, np.float32)
    np.testing.assert_allclose(norm(one_std), 1.0, atol=1e-4)


def _numpy_conv3x3_stride2_pad1(x, w):
    """Reference arithmetic: pad 1 on every side, then sample every second pixel."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h = (x.shape[1] + 2 - 3) // 2 + 1
    out = np.zeros((x.shape[0], h, h, w.shape[-1]), np.float64)
    for i in range(h):
        for j in range(h):
            patch = xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def test_stride2_block_matches_numpy_arithmetic():
    """The strided conv and the option-A shortcut look at the same pixels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    inp = keras.Input((8, 8, 4))
    out = networks.basic_block(inp, 8, 2, True, "A", "b")
    block = keras.Model(inp, out)
    w1 = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    w2 = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    block.get_layer("b_conv1").set_weights([w1])
    block.get_layer("b_conv2").set_weights([w2])
    # BN in inference mode with identity statistics (eps 1e-5 aside) -> exact check.
    got = block(x, training=False).numpy()

    bn = lambda t: t / np.sqrt(1 + 1e-5)
    y = np.maximum(bn(_numpy_conv3x3_stride2_pad1(x, w1)), 0)
    y = bn(np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0))))
    y2 = np.zeros((2, 4, 4, 8))
    for i in range(4):
        for j in range(4):
            y2[:, i, j, :] = np.tensordot(y[:, i:i + 3, j:j + 3, :], w2, axes=([1, 2, 3], [0, 1, 2]))
    y2 = bn(y2)
    shortcut = np.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (2, 2)))
    want = np.maximum(y2 + shortcut, 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The asymmetric "same" padding would sample odd pixels: it must not match.
    same = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
    same.build((None, 8, 8, 4))
    same.set_weights([w1])
    assert not np.allclose(same(x).numpy(), _numpy_conv3x3_stride2_pad1(x, w1), atol=1e-3)


def test_option_a_pads_channels_half_before_half_after():
    inp = keras.Input((4, 4, 2))
    out = networks._shortcut(inp, 6, 2, "A", "s", 0.0)
    x = np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2) + 1
    got = keras.Model(inp, out)(x).numpy()
    assert got.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(got[..., :2], 0)
    np.testing.assert_array_equal(got[..., 2:4], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(got[..., 4:], 0)


@pytest.mark.parametrize("scope", ["all", "kernels"])
def test_weight_decay_is_half_lambda_l2_on_every_parameter_by_default_or_on_kernels(scope):
    """Default scope "all" (as the reference trainers): every trainable weight, BatchNorm's
    gamma and beta and the dense bias included; "kernels": conv and dense kernels only."""
    model = networks.build_model("resnet8", weight_decay=1e-4, weight_decay_scope=scope)
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:  # beta and the bias start at 0: make every one count
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    decayed = [w for w in model.trainable_weights
               if scope == "all" or w.path.endswith("kernel")]
    assert len(decayed) == (len(model.trainable_weights) if scope == "all" else 8)  # 7 conv + dense
    # lambda / 2 * ||w||^2 summed over exactly those weights: its gradient is lambda * w.
    expected = 1e-4 / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in decayed)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert not networks.build_model("resnet8", weight_decay=0,
                                    weight_decay_scope=scope).losses


def test_keras_file_loads_in_safe_mode(tmp_path):
    model = networks.build_model("resnet8")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert not any(isinstance(l, keras.layers.Lambda) for l in loaded.layers)
