"""tf.data pipelines over in-memory CIFAR-10 splits, with He et al.'s augmentation.

He et al. (2016), section 4.2: "4 pixels are padded on each side, and a 32x32 crop
is randomly sampled from the padded image or its horizontal flip."

Elements are ``(images, labels)``: float32 (B, 32, 32, 3) raw pixel values in
[0, 255] (the model normalises them itself) and int64 (B,).

Augmentation works on whole batches after ``.batch()``: one zero-pad of the
batch, then a single gather whose index arithmetic does each image's crop and
flip at once. Per-image ``map`` calls would spend most of their time in tf.data
overhead rather than in pixels.

Randomness is stateless: each batch gets its own seed from
``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``, and the
shuffle is seeded too. Two pipelines built with the same ``seed`` therefore yield
the same batches, epoch after epoch (each pass over a dataset is a new epoch, with
a new order and new crops). Like every seeded TF op, the sequence also depends on
TF's global seed when one is set (``tf.random.set_seed``).
"""

from __future__ import annotations

import tensorflow as tf

from keras_resnet_cifar.datasets import Split

PAD = 4  # pixels of zeros on each side before the random 32x32 crop
SIZE = 32


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Zero-pads by ``PAD``, crops a random 32x32 window and flips half, per image.

    Args:
        images: (B, 32, 32, C), any dtype (the pipeline passes uint8).
        seed: int32/int64 shape [2], the seed of this batch's stateless draws.

    Returns:
        (B, 32, 32, C), same dtype: image i is the window of its padded copy at
        row ``dy[i]``, column ``dx[i]`` (each uniform in 0..2*PAD), mirrored left
        to right with probability 1/2.
    """
    batch = tf.shape(images)[0]
    offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform([batch, 2], offset_seed, minval=0,
                                          maxval=2 * PAD + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([batch], flip_seed) < 0.5

    padded = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])  # zeros
    steps = tf.range(SIZE)
    rows = offsets[:, :1] + steps                                    # (B, 32)
    # A flipped crop is the same window read right to left.
    cols = offsets[:, 1:] + tf.where(flip[:, None], SIZE - 1 - steps, steps)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)              # (B, 32, 40, C)
    return tf.gather(out, cols, axis=2, batch_dims=1)                # (B, 32, 32, C)


def train_dataset(split: Split, batch_size: int, *, seed: int, augment: bool = True,
                  shuffle: bool = True, drop_remainder: bool = False) -> tf.data.Dataset:
    """The training pipeline: shuffle all, batch, augment, cast to float32, prefetch.

    Args:
        split: the training images (uint8) and labels, held in memory once.
        batch_size: images per batch.
        seed: seed of the shuffle and of the augmentation.
        augment: pad-crop-flip as He et al.; False yields the images unchanged.
        shuffle: reshuffle the whole split every epoch (buffer = the split size).
        drop_remainder: drop a last, smaller batch.

    Returns:
        A finite dataset of one epoch; iterating it again gives the next epoch.
    """
    _check(split, batch_size)
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment:
        # One [2]-shaped seed per batch, different every epoch, same for a given seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, batch_seed: (augment_batch(batch[0], batch_seed), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(ds)


def eval_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    """The evaluation pipeline: in order, unaugmented, batched, float32."""
    _check(split, batch_size)
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    return _finish(ds.batch(batch_size))


def _finish(ds: tf.data.Dataset) -> tf.data.Dataset:
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check(split: Split, batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if split.images.shape[1:] != (SIZE, SIZE, 3) or len(split.images) != len(split.labels):
        raise ValueError(f"Expected images (N, 32, 32, 3) and N labels; got "
                         f"{split.images.shape} and {split.labels.shape}.")
