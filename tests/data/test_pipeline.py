"""input_pipeline: element specs, He et al.'s pad-crop-flip, determinism, evaluation order."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet_cifar.data import pipeline
from keras_resnet_cifar.data.datasets import Split, synthetic

PAD = pipeline.PAD


def _epoch(ds):
    """One pass over ``ds`` as numpy (images, labels)."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _coordinate_split(n):
    """n copies of an image whose pixel (y, x) is (y + 1, x + 1, 200): never 0."""
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([y + 1, x + 1, np.full_like(y, 200)], axis=-1).astype(np.uint8)
    return Split(np.repeat(image[None], n, axis=0), np.arange(n, dtype=np.int64)), image


def _windows(image):
    """{(dy, dx, flipped): 32x32 crop of the zero-padded image, flipped if asked}."""
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    out = {}
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            crop = padded[dy:dy + 32, dx:dx + 32]
            out[dy, dx, False], out[dy, dx, True] = crop, crop[:, ::-1]
    return out


def test_elements():
    split = synthetic(100, 0, seed=0).train
    ds = pipeline.train_dataset(split, 32, seed=0)
    assert ds.element_spec == (tf.TensorSpec((None, 32, 32, 3), tf.float32),
                               tf.TensorSpec((None,), tf.int64))
    sizes = [int(y.shape[0]) for _, y in ds]
    assert sizes == [32, 32, 32, 4] and ds.cardinality() == 4
    x, _ = _epoch(ds)
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 1  # raw pixels, not [0, 1]
    assert np.array_equal(x, np.round(x))
    dropped = pipeline.train_dataset(split, 32, seed=0, drop_remainder=True)
    assert dropped.element_spec[0].shape == (32, 32, 32, 3)
    assert [int(y.shape[0]) for _, y in dropped] == [32, 32, 32]


def test_every_output_is_a_window_of_the_zero_padded_image():
    split, image = _coordinate_split(512)
    ds = pipeline.train_dataset(split, 128, seed=1, shuffle=False)
    x, y = _epoch(ds)
    np.testing.assert_array_equal(y, split.labels)  # no shuffle: order kept
    windows = _windows(image)
    keys = list(windows)
    stack = np.stack([windows[k] for k in keys]).astype(np.float32)  # (162, 32, 32, 3)
    found = []
    for out in x:
        match = np.flatnonzero((stack == out).all(axis=(1, 2, 3)))
        assert match.size, "an output is not a 32x32 window of the padded image"
        found.append(keys[match[0]])
    dy, dx, flipped = map(np.array, zip(*found))
    assert 0.35 < flipped.mean() < 0.65  # both flipped and unflipped, about half each
    assert {dy.min(), dy.max(), dx.min(), dx.max()} == {0, 2 * PAD}  # edge offsets occur
    border = (dy != PAD) | (dx != PAD)
    assert border.any()
    # Off-centre crops bring in zero rows / columns; the centre crop has none.
    zero_pixels = (x == 0).all(axis=-1).sum(axis=(1, 2))
    assert (zero_pixels[border] > 0).all() and (zero_pixels[~border] == 0).all()


def test_augment_batch_is_a_function_of_its_seed():
    images = tf.constant(synthetic(16, 0, seed=0).train.images)
    a = pipeline.augment_batch(images, tf.constant([3, 4], tf.int64))
    b = pipeline.augment_batch(images, tf.constant([3, 4], tf.int64))
    c = pipeline.augment_batch(images, tf.constant([3, 5], tf.int64))
    assert a.dtype == tf.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _labelled(n):
    split = synthetic(n, 0, seed=0).train
    return Split(split.images, np.arange(n, dtype=np.int64))  # labels = identities


def test_each_epoch_is_a_function_of_seed_and_epoch():
    split = _labelled(300)
    epochs_a = [_epoch(pipeline.train_dataset(split, 64, seed=7, first_epoch=e))
                for e in range(2)]
    epochs_b = [_epoch(pipeline.train_dataset(split, 64, seed=7, first_epoch=e))
                for e in range(2)]
    for (xa, ya), (xb, yb) in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert sorted(ya) == list(range(300))  # every example once per epoch
    (x1, y1), (x2, y2) = epochs_a
    assert not np.array_equal(y1, y2)  # a new order
    # New crops too, not just the new order: compare the same examples.
    assert not np.array_equal(x1[np.argsort(y1)], x2[np.argsort(y2)])
    other = _epoch(pipeline.train_dataset(split, 64, seed=8))
    assert not np.array_equal(other[1], y1)
    # Iterating a dataset again gives the same batches (nothing carries over).
    ds = pipeline.train_dataset(split, 64, seed=7)
    np.testing.assert_array_equal(_epoch(ds)[0], _epoch(ds)[0])


def test_a_resumed_stream_is_the_tail_of_the_uninterrupted_one():
    split = _labelled(200)
    kwargs = dict(seed=5, last_epoch=4, steps_per_epoch=5)  # a pass is 4 batches of 64
    ds = pipeline.train_dataset(split, 64, first_epoch=0, **kwargs)
    whole = list(ds)
    assert len(whole) == 4 * 5 == ds.cardinality()  # Keras reads the length
    for first in (1, 3):
        tail = list(pipeline.train_dataset(split, 64, first_epoch=first, **kwargs))
        assert len(tail) == (4 - first) * 5
        for (xa, ya), (xb, yb) in zip(whole[first * 5:], tail, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # An epoch longer than a pass goes on into a second, differently ordered pass.
    first_pass = np.concatenate([y for _, y in whole[:4]])
    second_pass = np.concatenate([y for _, y in whole[4:5]])
    assert sorted(first_pass) == list(range(200))
    assert not np.array_equal(second_pass, first_pass[:64])


def test_the_pipeline_ignores_tf_global_random_state():
    split = _labelled(100)
    tf.random.set_seed(1)
    a = _epoch(pipeline.train_dataset(split, 32, seed=2, first_epoch=3))
    tf.random.set_seed(2)
    tf.random.uniform([5])
    b = _epoch(pipeline.train_dataset(split, 32, seed=2, first_epoch=3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_without_augmentation_or_shuffle_is_identity():
    split = synthetic(50, 0, seed=0).train
    x, y = _epoch(pipeline.train_dataset(split, 16, seed=0, augment=False,
                                               shuffle=False))
    np.testing.assert_array_equal(x, split.images.astype(np.float32))
    np.testing.assert_array_equal(y, split.labels)


def test_eval_is_unaugmented_and_ordered():
    split = synthetic(0, 70, seed=2).test
    ds = pipeline.eval_dataset(split, 32)
    assert ds.element_spec[0].dtype == tf.float32
    for _ in range(2):
        x, y = _epoch(ds)
        np.testing.assert_array_equal(x, split.images.astype(np.float32))
        np.testing.assert_array_equal(y, split.labels)


def test_bad_arguments():
    split = synthetic(10, 0, seed=0).train
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        pipeline.train_dataset(split, 0, seed=0)
    with pytest.raises(ValueError, match="last_epoch must be > first_epoch"):
        pipeline.train_dataset(split, 4, seed=0, first_epoch=2, last_epoch=2)
    with pytest.raises(ValueError, match=r"Expected images \(N, 32, 32, 3\)"):
        pipeline.eval_dataset(Split(split.images[:, :16], split.labels), 4)
