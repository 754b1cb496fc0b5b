"""Trains a plain or residual CIFAR-10 network with the paper's recipe.

    python -m keras_resnet_cifar.train --model=plain56
    python -m keras_resnet_cifar.train --flagfile=flags/resnet56.cfg --data_dir=~/data/cifar10
    python -m keras_resnet_cifar.train --flagfile=flags/smoke.cfg

Every field of :class:`keras_resnet_cifar.config.TrainConfig` is a flag with the
same name and default; the run directory is ``--model_dir`` (default
``runs/<model>-seed<seed>``). Running the same command again resumes an
interrupted run from its last completed epoch. The shared command-line
conventions (quiet output, ``--verbose``, ``~`` in paths, oneDNN on x86) are
:mod:`keras_resnet_cifar.cli`'s.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from keras_resnet_cifar import cli, train_flags  # no Keras: flags answer at once


def define_flags() -> None:
    """One flag per TrainConfig field (keras_resnet_cifar.train_flags), plus run options."""
    train_flags.define_config_flags()
    flags.DEFINE_string("model_dir", None, "Run directory (default runs/<model>-seed<seed>).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices "
                         "(to exercise MirroredStrategy on a machine without GPUs).")
    flags.DEFINE_enum("progress", "auto", ["auto", "0", "1", "2"],
                      "Keras progress output: auto (a bar on a terminal, else 2), 0 (none), "
                      "1 (bar), 2 (a line per epoch).")


def _split_cpu(n: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def main(argv):
    del argv  # cli.run refuses positional arguments
    FLAGS = flags.FLAGS
    config = train_flags.config_from_flags(FLAGS)  # UserError on a bad value
    if FLAGS.cpu_devices:
        _split_cpu(FLAGS.cpu_devices)
    from keras_resnet_cifar import training  # TensorFlow loads here, after the checks

    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.model}-seed{config.seed}")
    if FLAGS.progress == "auto":  # progress bars on a terminal, a line per epoch elsewhere
        verbose = 1 if sys.stdout.isatty() else 2
    else:
        verbose = int(FLAGS.progress)
    metrics = training.train_and_evaluate(config, model_dir, verbose=verbose)
    logging.info("final %s accuracy on %d test images: %.4f", config.model,
                 metrics["test_images"], metrics["test_accuracy"])


if __name__ == "__main__":
    define_flags()
    cli.run(main, trains=True, renamed=[cli.Renamed("verbose", "progress", values="auto|[012]")])
