"""Trains a plain or residual CIFAR-10 network (default: He et al.'s optimiser, the
reproduction paper's 200-epoch schedule; see keras_resnet_cifar/config.py).

    python -m keras_resnet_cifar.train --model=plain56
    python -m keras_resnet_cifar.train --flagfile=flags/resnet56.cfg --data_dir=~/data/cifar10
    python -m keras_resnet_cifar.train --flagfile=flags/smoke.cfg

Every TrainConfig field is a flag of the same name and default. The same command again
resumes an interrupted run from its last completed epoch; at the end it draws curves.png.
"""

from __future__ import annotations

import os

from absl import flags, logging

# No Keras or TensorFlow in these: flags, paths and the lock answer at once.
from keras_resnet_cifar import cli, environment, train_flags
from keras_resnet_cifar.data import cifar_files
from keras_resnet_cifar.training import lock
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError


# Logical CPU devices a test of distribution may split the CPU into (each one a replica).
MAX_CPU_DEVICES = 64


def define_flags() -> None:
    train_flags.define_config_flags()
    flags.DEFINE_string("model_dir", None, "Run directory (default runs/<model>-seed<seed>).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (to test "
                         "MirroredStrategy without GPUs).", lower_bound=0,
                         upper_bound=MAX_CPU_DEVICES)
    flags.DEFINE_enum("progress", "auto", ["auto", "0", "1", "2"],
                      "Progress on stderr: auto (a line per epoch, and progress inside it: in "
                      "place on a terminal, every 60 s otherwise), 0 (the line per epoch only), "
                      "1 or 2 (Keras' own progress bar or line per epoch as well, on stdout).")



def check_before_loading(config: TrainConfig, model_dir: str) -> None:
    """Refuses, before TensorFlow and the data load (tens of seconds), a --data_dir without
    CIFAR-10 and a --model_dir that is busy or holds another recipe's run (multi-worker
    runs share theirs: not checked). The lock is only probed; training takes it later."""
    if config.dataset == "cifar10" and config.data_dir:
        cifar_files.detect_format(config.data_dir)  # DataError (a UserError) when it is not one
    if config.distribute == "multi_worker" or not os.path.exists(model_dir):
        return
    if not os.path.isdir(model_dir):
        raise UserError(f"Cannot write to --model_dir {model_dir}: not a directory.")
    lock.ensure_unlocked(model_dir)
    lock.plan(model_dir, config)  # a run of another recipe is refused here


def bfloat16_hint(config: TrainConfig) -> str | None:
    found = environment.bfloat16_support()  # a hint for float32 runs on such a CPU
    if config.mixed_precision != "float32" or not found:
        return None
    return (f"hint: this CPU computes bfloat16 natively ({', '.join(found)}): "
            "--mixed_precision=mixed_bfloat16 may train faster (docs/performance.md); "
            "this run stays float32.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    config = train_flags.config_from_flags(FLAGS)  # UserError on a bad value
    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.model}-seed{config.seed}")
    check_before_loading(config, model_dir)
    if hint := bfloat16_hint(config):
        logging.info(hint)
    if FLAGS.cpu_devices:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
    from keras_resnet_cifar.training import distribution, loop  # TensorFlow loads here

    verbose = "auto" if FLAGS.progress == "auto" else int(FLAGS.progress)
    loop.train_and_evaluate(config, model_dir, verbose=verbose)  # its last line: the result
    if distribution.is_chief_process(config.distribute):  # the chief writes the run dir
        from keras_resnet_cifar.analysis import plots  # matplotlib: only once trained
        plots.save_run_curves(model_dir)


if __name__ == "__main__":
    define_flags()
    cli.run(main, trains=True)
