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

import dataclasses
import os
import platform
import sys
import typing

# Before TensorFlow loads (keras_resnet_cifar.config imports Keras): TF reads this
# once. Its oneDNN CPU kernels are off by default on x86 CPUs without AVX-512
# VNNI/BF16/AMX (e.g. AVX2-only AMD EPYC), where TF's own convolution gradients
# then run as thousands of tiny GEMMs: oneDNN trains ResNet-20 ~1.8x faster there
# (docs/performance.md). It only changes CPU kernels; TF_ENABLE_ONEDNN_OPTS=0 wins.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags, logging  # noqa: E402

from keras_resnet_cifar.config import TrainConfig  # noqa: E402
from keras_resnet_cifar.errors import run_cli  # noqa: E402

_HELP = {
    "model": "plainN or resnetN with N = 6n+2: 20, 32, 44, 56, 110, ...",
    "shortcut": "Residual shortcut where the shape changes: A (zero-padded identity, "
                "the paper's CIFAR choice) or B (1x1 conv + BN projection).",
    "dataset": "cifar10 (tensorflow-datasets, or --data_dir) or synthetic.",
    "data_dir": "A local CIFAR-10 copy: cifar-10-batches-bin/, cifar-10-batches-py/, "
                "their .tar.gz archives, or a folder holding one of them.",
    "validation_split": "Hold this many training images out for model selection "
                        "(He et al.: 5000). 0: evaluate on the test set after each epoch.",
    "synthetic_train_size": "Training images of --dataset=synthetic.",
    "synthetic_test_size": "Test images of --dataset=synthetic.",
    "epochs": "Epochs to train (the paper's schedule: 200).",
    "batch_size": "Global batch size, split across replicas.",
    "learning_rate": "Initial learning rate.",
    "lr_boundaries": "Epochs after which the learning rate is multiplied by --lr_decay.",
    "lr_decay": "Learning-rate factor at each boundary.",
    "momentum": "SGD momentum.",
    "weight_decay": "Weight decay lambda, coupled as in torch.optim.SGD (gradient += lambda*w).",
    "weight_decay_scope": "Which weights are decayed: all (every parameter, as the reference "
                          "trainers) or kernels (conv and dense kernels only).",
    "warmup_epochs": "Epochs at --warmup_learning_rate first (He et al. did this for ResNet-110).",
    "warmup_learning_rate": "Learning rate during warm-up.",
    "steps_per_epoch": "Cap on training steps per epoch (short runs).",
    "eval_steps": "Cap on evaluation steps (short runs).",
    "seed": "Random seed (weights, shuffling, augmentation).",
    "deterministic": "Enable TensorFlow op determinism (slower).",
    "distribute": "auto (MirroredStrategy when there are several GPUs), none, mirrored, "
                  "or multi_worker (TF_CONFIG).",
    "mixed_precision": "float32, mixed_float16 (GPUs) or mixed_bfloat16.",
    "jit_compile": "Compile the train step with XLA.",
    "steps_per_execution": "Training steps per tf.function call.",
}


def define_flags() -> None:
    """One flag per TrainConfig field (same name, same default), plus run options."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        hint, default, help_ = hints[field.name], field.default, _HELP[field.name]
        if hint is bool:
            flags.DEFINE_boolean(field.name, default, help_)
        elif hint is int or hint == (int | None):
            flags.DEFINE_integer(field.name, default, help_)
        elif hint is float:
            flags.DEFINE_float(field.name, default, help_)
        elif hint == tuple[int, ...]:
            flags.DEFINE_list(field.name, [str(v) for v in default], help_)
        else:
            flags.DEFINE_string(field.name, default, help_)
    flags.DEFINE_string("model_dir", None, "Run directory (default runs/<model>-seed<seed>).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices "
                         "(to exercise MirroredStrategy on a machine without GPUs).")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"],
                      "Keras progress output: auto (a bar on a terminal, else 2), 0 (none), 1 (bar), "
                      "2 (a line per epoch).")


def config_from_flags(flag_values: flags.FlagValues) -> TrainConfig:
    """The frozen config of the parsed flags (raises ValueError on a bad value)."""
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = flag_values[field.name].value
        if field.name == "lr_boundaries":
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise ValueError(f"--lr_boundaries must be integers, got {value}.") from None
        values[field.name] = value
    return TrainConfig(**values)


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
    if FLAGS.verbose == "auto":  # progress bars on a terminal, a line per epoch elsewhere
        verbose = 1 if sys.stdout.isatty() else 2
    else:
        verbose = int(FLAGS.verbose)
    metrics = training.train_and_evaluate(config, model_dir, verbose=verbose)
    logging.info("final %s accuracy on %d test images: %.4f", config.model,
                 metrics["test_images"], metrics["test_accuracy"])


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
