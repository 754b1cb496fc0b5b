r"""Measures, on this machine, how fast the project trains, reads data, evaluates and serves.

    python -m keras_resnet_cifar.benchmark --models=resnet20 --peer=~/venvs/torch-peer/bin/python
    python -m keras_resnet_cifar.benchmark --model_path=exports/resnet20/1 --out=bench.json

Prints a table (--json: JSON instead; --out: also writes the JSON) of training images/s on
the real training path (every speed flag of train is a flag here; --variants times
precisions / XLA in turn, each with its ratio to the first), the input pipeline alone,
evaluation images/s and, with --model_path, batch-1 latency and batch-128 images/s of each
model named (--model_path alone trains nothing). Each figure is the median of --repeats timed
repeats after an uncounted warm-up, with its spread. --peer=<python> runs the PyTorch peer
after each timed training repeat, so the two alternate, and gives the ratio pair by pair.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from absl import flags

from keras_resnet_cifar import cli, fileio, train_flags
from keras_resnet_cifar.analysis import peer, speed, speed_table
from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.config import TrainConfig, check_steps_per_execution
from keras_resnet_cifar.errors import UserError

# The PyTorch peer ships with the repository, not with the installed package.
PEER_SCRIPT = "scripts/torch_peer.py"


def define_flags() -> None:
    train_flags.define_config_flags(defaults=TrainConfig(
        dataset="synthetic", synthetic_train_size=10000, synthetic_test_size=2000),
        exclude=speed.NOT_SPEED)
    defaults = speed.Plan(base=TrainConfig())
    flags.DEFINE_list("models", list(defaults.models), "Models to train: plainN / resnetN "
                      "(none when only --model_path is given).")
    flags.DEFINE_integer("steps", defaults.steps, "Training steps per timed repeat.")
    flags.DEFINE_integer("repeats", defaults.repeats, "Timed repeats of every measurement.")
    flags.DEFINE_integer("pipeline_batches", defaults.pipeline_batches,
                         "Batches per timed repeat of the input pipeline alone.")
    flags.DEFINE_list("model_path", [], "Models to time at inference: run directories, "
                      ".keras files, SavedModel folders, .tflite files. Without --models, "
                      "only these are measured.")
    flags.DEFINE_boolean("trust_savedmodel", False, predictor.TRUST_HELP)
    flags.DEFINE_integer("inference_runs", defaults.inference_runs,
                         "Timed batch-1 calls per --model_path model.")
    threads = dict(lower_bound=0, upper_bound=predictor.MAX_THREADS)
    flags.DEFINE_integer("num_threads", defaults.num_threads,
                         "CPU threads for a .tflite model (0: every core).", **threads)
    flags.DEFINE_string("peer", None, "Python of the PyTorch peer's environment (see scripts/"
                        "torch_peer.py), run after each timed training repeat.")
    flags.DEFINE_string("peer_script", PEER_SCRIPT, "The peer's script (the default is relative "
                        "to a checkout of the repository, where it ships).")
    flags.DEFINE_list("peer_modes", list(defaults.peer_modes), "The peer's configurations to run "
                      "(its --mode), each labelled: default, channels_last, compile, channels_"
                      "last+compile for torch_peer.py (channels_last is its fastest on CPU).")
    flags.DEFINE_list("variants", list(defaults.variants), "Training variants to time in turn, "
                      "repeat by repeat: a precision (float32, mixed_bfloat16, mixed_float16), "
                      "+xla for XLA, e.g. float32,mixed_bfloat16,float32+xla; ratios are to the "
                      "first; empty: the one of --mixed_precision and --jit_compile.")
    flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF's default).",
                         **threads)
    flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF's default).",
                         **threads)
    flags.DEFINE_string("out", None, "Also write the figures as JSON to this file.")
    flags.DEFINE_boolean("json", False, "Print the figures as JSON instead of a table.")


def plan_from_flags(flag_values: flags.FlagValues) -> speed.Plan:
    """Checked (the peer run once) before TensorFlow loads."""
    models = tuple(flag_values.models)
    if flag_values.model_path and not flag_values["models"].present:
        models = ()  # --model_path alone: time those models, train nothing
    if flag_values.out and Path(flag_values.out).is_dir():
        raise UserError(f"--out={flag_values.out} is a folder: give the JSON file to write.")
    python = flag_values.peer
    if python and not (Path(python).is_file() or shutil.which(python)):
        raise UserError(f"--peer={python} is not a Python interpreter that exists.")
    if python and not Path(flag_values.peer_script).is_file():
        raise UserError(f"No peer script at {flag_values.peer_script} (run from a checkout "
                        "of the repository, or set --peer_script).")
    if flag_values.variants and any(flag_values[name].present
                                    for name in ("mixed_precision", "jit_compile")):
        raise UserError("--variants names the precisions and XLA to time: give it or "
                        "--mixed_precision / --jit_compile, not both.")
    steps = flag_values.steps
    if steps > 0:  # before TrainConfig's check, which would suggest a steps_per_epoch
        check_steps_per_execution(steps, flag_values.steps_per_execution, other="steps")
    # A timed repeat is one Keras epoch of --steps steps.
    base = train_flags.config_from_flags(flag_values, model=models[0] if models else "resnet20",
                                         steps_per_epoch=steps if steps > 0 else None)
    plan = speed.Plan(
        base=base, models=models, steps=flag_values.steps, repeats=flag_values.repeats,
        pipeline_batches=flag_values.pipeline_batches,
        model_paths=tuple(flag_values.model_path), inference_runs=flag_values.inference_runs,
        num_threads=flag_values.num_threads, trust_savedmodel=flag_values.trust_savedmodel,
        peer=(python, flag_values.peer_script) if python else (),
        peer_modes=tuple(flag_values.peer_modes), variants=tuple(flag_values.variants))
    speed.check_plan(plan)
    if plan.peer:  # one tiny step per mode: a broken peer fails now, not after training
        precisions = {c.mixed_precision for c in speed.variant_configs(plan).values()}
        peer.check(plan.peer, plan.peer_modes, sorted(precisions))
    return plan


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    plan = plan_from_flags(FLAGS)
    import tensorflow as tf

    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    report = speed.run(plan)
    text = json.dumps(report, indent=2) + "\n"
    if FLAGS.json:
        print(text, end="")
    else:
        print(speed_table.format_table(report))
    if FLAGS.out:
        try:
            fileio.write_text(Path(FLAGS.out), text)
        except OSError as e:  # the figures are printed above: only the file is lost
            raise UserError(f"Cannot write --out={FLAGS.out} ({e.strerror or e}).") from None
        print(f"wrote {FLAGS.out}", file=sys.stderr if FLAGS.json else sys.stdout)


if __name__ == "__main__":
    define_flags()
    cli.run(main, trains=True, paths=("peer", "peer_script"))
