"""tf.data pipelines over in-memory CIFAR-10 splits, with He et al.'s augmentation.

He et al. (2016), section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip." Elements: float32 (B, 32, 32, 3) raw pixels
in [0, 255] and int64 labels (B,). Augmentation works on whole batches (one pad, one gather):
per-image map calls spend their time in tf.data overhead. Randomness is stateless, keyed by (seed,
epoch), nothing else: epoch e has the same order and crops whether or not epochs 0..e-1 ran in this
process (an interrupted run resumes bit for bit).
"""

from __future__ import annotations

import tensorflow as tf

from keras_resnet_cifar.data.datasets import Split, batches

PAD = 4  # pixels of zeros on each side before the random 32x32 crop
SIZE = 32


def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per image: the 32x32 window at a uniform offset (0..2*PAD each way) of its zero-padded
    copy, mirrored with probability 1/2. `seed` is the [2] key of this batch's draws."""
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


def epoch_key(seed: int, epoch, pass_=0) -> tf.Tensor:
    """The [2] key of every draw (order, crops, flips) of pass `pass_` in 0-based `epoch`."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_fold_in(key, tf.cast(pass_, tf.int64))


def train_dataset(split: Split, batch_size: int, *, seed: int, first_epoch: int = 0,
                  last_epoch: int | None = None, steps_per_epoch: int | None = None,
                  augment: bool = True, shuffle: bool = True,
                  drop_remainder: bool = False) -> tf.data.Dataset:
    """The batches of 0-based epochs `first_epoch` to `last_epoch - 1` (default: one epoch). Epoch e
    is one pass in an order drawn from (seed, e), or exactly `steps_per_epoch` batches continuing
    into further passes (keys (seed, e, 1), ...). Iterating again gives the same batches."""
    _check(split, batch_size)
    last_epoch = first_epoch + 1 if last_epoch is None else last_epoch
    if last_epoch <= first_epoch:
        raise ValueError(f"last_epoch must be > first_epoch; got {first_epoch}, {last_epoch}.")
    n = len(split.labels)
    per_pass = batches(n, batch_size, drop_remainder)
    if per_pass == 0:
        raise ValueError(f"A pass over {n} images with drop_remainder has no batch of "
                         f"{batch_size}.")
    passes = -(-steps_per_epoch // per_pass) if steps_per_epoch else 1
    images, labels = tf.constant(split.images), tf.constant(split.labels)

    def one_pass(epoch, pass_):
        order_key, augment_key = tf.unstack(
            tf.random.experimental.stateless_split(epoch_key(seed, epoch, pass_), 2))
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, order_key)
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size,
                                                            drop_remainder=drop_remainder)

        def load(index, batch):
            x = tf.gather(images, batch)
            if augment:  # one [2]-shaped key per batch
                x = augment_batch(x, tf.random.experimental.stateless_fold_in(augment_key, index))
            return x, tf.gather(labels, batch)

        return ds.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def one_epoch(epoch):
        ds = tf.data.Dataset.range(passes).flat_map(lambda p: one_pass(epoch, p))
        return ds.take(steps_per_epoch) if steps_per_epoch else ds

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
    # flat_map hides the length; Keras needs it to end an epoch without a warning.
    ds = ds.apply(tf.data.experimental.assert_cardinality(
        (last_epoch - first_epoch) * (steps_per_epoch or per_pass)))
    return _finish(ds)


def eval_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    """In order, unaugmented, batched, float32."""
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
