"""Trains a plain or residual CIFAR-10 network with the paper's recipe.

    python -m keras_resnet_cifar.train --model=plain56
    python -m keras_resnet_cifar.train --flagfile=flags/resnet56.cfg --data_dir=~/cifar10
    python -m keras_resnet_cifar.train --flagfile=flags/smoke.cfg

Every field of :class:`keras_resnet_cifar.config.TrainConfig` is a flag with the
same name and default; the run directory is ``--model_dir`` (default
``runs/<model>-seed<seed>``). Running the same command again resumes an
interrupted run from its last completed epoch.
"""

from __future__ import annotations

import os
import platform

# Before TensorFlow loads (keras_resnet_cifar.config imports Keras): TF reads this
# once. Its oneDNN CPU kernels are off by default on x86 CPUs without AVX-512
# VNNI/BF16/AMX (e.g. AVX2-only AMD EPYC), where TF's own convolution gradients
# then run as thousands of tiny GEMMs: oneDNN trains ResNet-20 ~1.8x faster there
# (docs/performance.md). It only changes CPU kernels; TF_ENABLE_ONEDNN_OPTS=0 wins.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags, logging  # noqa: E402

from keras_resnet_cifar import train_flags  # noqa: E402
from keras_resnet_cifar.errors import run_cli  # noqa: E402
from keras_resnet_cifar.train_flags import config_from_flags  # noqa: E402


def define_flags() -> None:
    """One flag per TrainConfig field (keras_resnet_cifar.train_flags), plus run options."""
    train_flags.define_config_flags()
    flags.DEFINE_string("model_dir", None, "Run directory (default runs/<model>-seed<seed>).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices "
                         "(to exercise MirroredStrategy on a machine without GPUs).")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"],
                      "Keras progress output: auto, 0 (none), 1 (bar), 2 (a line per epoch).")


def _split_cpu(n: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    config = config_from_flags(FLAGS)
    if FLAGS.cpu_devices:
        _split_cpu(FLAGS.cpu_devices)
    from keras_resnet_cifar import training  # TensorFlow loads here, after the checks

    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.model}-seed{config.seed}")
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    metrics = training.train_and_evaluate(config, model_dir, verbose=verbose)
    logging.info("final %s accuracy on %d test images: %.4f", config.model,
                 metrics["test_images"], metrics["test_accuracy"])


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
