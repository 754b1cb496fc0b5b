#!/usr/bin/env python3
r"""How far a trained model's BatchNorm running averages lag its own weights.

For each Keras model given (a run directory's model.keras, or any .keras file of
this project): the test accuracy with the saved running averages; the same after
re-estimating every BatchNorm layer's running mean and variance from 60
augmented training batches of 128 with the final weights (training-mode forward
passes, no weight change: with momentum 0.9 the old averages keep 0.9^60 = 0.2%
of their weight); and the lag itself, over the BatchNorm layers, as the mean of

    lag_mean          rms over channels of (saved mean - re-estimated mean) / re-estimated std
    lag_log_variance  mean over channels of |log(saved variance / re-estimated variance)|

These are the figures ``scripts/train_reference_pytorch.py`` records for the
reference PyTorch trainer after every pass (its history.json), with the same
definitions, so a one-pass ResNet-20 of each trainer can be put side by side
(docs/fidelity.md, "BatchNorm running statistics"). The re-estimation draws its
batches with the project's input pipeline, keyed by ``--seed``.

    python -m keras_resnet_cifar.train --model=resnet20 --epochs=1 --seed=1 \
        --data_dir=~/data/cifar10 --model_dir=runs/one-pass-seed1
    python scripts/measure_batch_norm_lag.py --data_dir=~/data/cifar10 runs/one-pass-seed*
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_resnet_cifar import cli

cli.use_onednn_by_default()  # as the train CLI: the same kernels as training
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_resnet_cifar.errors import UserError, exit_with, message_of  # noqa: E402

BATCHES = 60
BATCH_SIZE = 128


def recalibration_batches(train, seed: int):
    """``BATCHES`` augmented training batches of ``BATCH_SIZE`` from the project's pipeline."""
    from keras_resnet_cifar.data import pipeline

    return [images.numpy() for images, _ in pipeline.train_dataset(
        train, BATCH_SIZE, seed=seed, first_epoch=10_000, steps_per_epoch=BATCHES)]


def lag(saved, fresh) -> dict:
    """The two lag figures from [(mean, variance)] pairs per BatchNorm layer (module doc)."""
    means = [np.sqrt(np.mean((m - fm) ** 2 / fv)) for (m, _), (fm, fv) in zip(saved, fresh)]
    variances = [np.mean(np.abs(np.log(v / fv))) for (_, v), (_, fv) in zip(saved, fresh)]
    return {"bn_lag_mean": float(np.mean(means)),
            "bn_lag_log_variance": float(np.mean(variances))}


def measure(model, test_images, test_labels, batches) -> dict:
    """The saved-statistics accuracy, the re-estimated one and the lag (see the module doc).

    ``batches``: the re-estimation's training batches (raw pixels, NHWC); the
    model's running averages are replaced by theirs.
    """
    import keras

    def accuracy():
        logits = model.predict(np.asarray(test_images, np.float32), batch_size=500, verbose=0)
        return float(np.mean(logits.argmax(axis=1) == test_labels))

    def averages():
        return [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
                for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)]

    saved, before = averages(), accuracy()
    for images in batches:
        model(np.asarray(images, np.float32), training=True)  # the running averages only
    return {"test_accuracy": before, "bn_recalibrated_test_accuracy": accuracy(),
            **lag(saved, averages())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="Run directories (their model.keras) or .keras files.")
    p.add_argument("--data_dir", required=True, help="A local CIFAR-10 copy (as train's).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the re-estimation batches.")
    a = p.parse_args()
    paths = []
    for given in a.models:
        path = Path(os.path.expanduser(given))
        path = path / "model.keras" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"{given}: no model.keras there (a finished run directory or a "
                            ".keras file)")
        paths.append(path)
    with cli.native_logs_muted():
        import keras

        from keras_resnet_cifar.data import datasets
        from keras_resnet_cifar.training import optimizer  # noqa: F401 (registers ReferenceSGD)
    data = datasets.load("cifar10", os.path.expanduser(a.data_dir))
    print(f"{'model':<40} {'test acc':>9} {'re-estimated':>13} {'gain':>7} "
          f"{'lag_mean':>9} {'lag_log_var':>12}")
    for path in paths:
        model = keras.saving.load_model(path, compile=False)
        r = measure(model, data.test.images, data.test.labels,
                    recalibration_batches(data.train, a.seed))
        print(f"{str(path):<40} {r['test_accuracy']:>9.4f} "
              f"{r['bn_recalibrated_test_accuracy']:>13.4f} "
              f"{100 * (r['bn_recalibrated_test_accuracy'] - r['test_accuracy']):>+6.1f}p "
              f"{r['bn_lag_mean']:>9.3f} {r['bn_lag_log_variance']:>12.3f}", flush=True)


if __name__ == "__main__":
    with cli.native_logs_muted():
        try:
            main()
        except UserError as e:
            exit_with(message_of(e))
