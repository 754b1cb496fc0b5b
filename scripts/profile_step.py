r"""Where the time of a training step goes, by op category, from TensorFlow's profiler.

Builds the model as training does (every training flag that bears on speed, as
the benchmark's), warms it up with one untimed fit, then records --steps steps
of model.fit with tf.profiler.experimental and prints the time per step of each
category (Conv2D forward and backward, BatchNorm, optimizer, dense and loss,
element-wise, other ops, waiting for the input pipeline) and the time no op ran
(framework overhead); see keras_resnet_cifar/analysis/step_profile.py.

    python scripts/profile_step.py --model=resnet56 --steps=20 --logdir=/tmp/prof
    python scripts/profile_step.py --model=resnet20 --mixed_precision=mixed_bfloat16 --json

The .xplane.pb under --logdir also opens in TensorBoard's profile plugin
(pip install tensorboard-plugin-profile; tensorboard --logdir=...), which this
script does not need. Profiling slows the step: compare categories, not rates.
"""

from __future__ import annotations

import json
import tempfile

from absl import flags

from keras_resnet_cifar import cli, train_flags  # no TensorFlow before the flags
from keras_resnet_cifar.config import TrainConfig

train_flags.define_config_flags(
    defaults=TrainConfig(dataset="synthetic", synthetic_train_size=2560, synthetic_test_size=128),
    exclude=tuple(f for f in ("epochs", "lr_boundaries", "lr_decay", "warmup_epochs",
                              "warmup_learning_rate", "steps_per_epoch", "eval_steps",
                              "validation_split")))
flags.DEFINE_integer("steps", 20, "Training steps to record (after a warm-up of as many); "
                     "the first call's are left out of the summary.")
flags.DEFINE_string("logdir", None, "Where the profile goes (default: a temporary folder).")
flags.DEFINE_boolean("json", False, "Print the summary as JSON.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from keras_resnet_cifar.errors import UserError

    config = train_flags.config_from_flags(FLAGS)
    if not 2 * config.steps_per_execution <= FLAGS.steps <= 10_000 or (
            FLAGS.steps % config.steps_per_execution):
        raise UserError(f"--steps must be a multiple of --steps_per_execution in "
                        f"[{2 * config.steps_per_execution}, 10,000], got {FLAGS.steps}.")
    from keras_resnet_cifar.analysis import speed, step_profile
    from keras_resnet_cifar.data import datasets, pipeline

    data = datasets.load(config.dataset, config.data_dir, seed=0, synthetic_sizes=(
        config.synthetic_train_size, config.synthetic_test_size))
    model, _ = speed.build(config)
    speed.warm_up(config.model, model, config, data.train, steps=FLAGS.steps)
    dataset = pipeline.train_dataset(data.train, config.batch_size, seed=config.seed).repeat()
    logdir = FLAGS.logdir or tempfile.mkdtemp(prefix="profile_step-")
    xplane = step_profile.record(model, dataset, steps=FLAGS.steps, logdir=logdir)
    summary = {"model": config.model, "batch_size": config.batch_size,
               "mixed_precision": config.mixed_precision, "jit_compile": config.jit_compile,
               "xplane": str(xplane), **step_profile.summarize(xplane, config.steps_per_execution)}
    if FLAGS.json:
        print(json.dumps(summary, indent=2))
        return
    wall = summary["wall_ms"]
    print(f"{config.model}, batch {config.batch_size}, {config.mixed_precision}, "
          f"jit_compile={config.jit_compile}: {wall:.1f} ms per step under the profiler "
          f"(mean of {summary['steps']}); profile: {xplane}")
    rows = [*summary["categories"].items(), ("outside any op (framework)",
                                             summary["outside_ops_ms"])]
    for name, ms in rows:
        print(f"  {name:28s} {ms:8.2f} ms  {100 * ms / wall:5.1f}% of the step")
    print("  longest op types: " + ", ".join(f"{t} {ms:.1f} ms"
                                             for t, ms in summary["top_ops"]))
    print("  (ops of a step may overlap: categories can add up to more than 100%)")


if __name__ == "__main__":
    cli.run(main, trains=True)
