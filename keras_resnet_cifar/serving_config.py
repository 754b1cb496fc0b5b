r"""Writes TF Serving's model config and batching parameters beside an export's versions.

    python -m keras_resnet_cifar.serving_config --model_name=resnet20 [--out=exports] \
        [--stable=1] [--canary=2]

writes <out>/<name>/models.config (the versions served, labelled stable and canary) and
<out>/<name>/batching.config, and prints their paths; scripts/serve.sh runs it before it
starts TF Serving (docs/deployment.md), which ignores these files when it polls versions.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from keras_resnet_cifar import cli, fileio
from keras_resnet_cifar.deploy import rest_client, tf_serving
from keras_resnet_cifar.errors import UserError


def define_flags() -> None:
    flags.DEFINE_string("out", "exports", "The export folder (holds <name>/<version>/).")
    flags.DEFINE_string("model_name", None, "The model name (a folder of --out).")
    flags.DEFINE_string("base_path", None, "Where TF Serving sees the model's folder; default: "
                        "/models/<name>, where scripts/serve.sh mounts it.")
    flags.DEFINE_integer("stable", None, "The version labelled stable; default: the highest.")
    flags.DEFINE_integer("canary", None, "A version labelled canary, served beside stable.")
    flags.DEFINE_integer("max_batch_size", tf_serving.BATCH_SIZES[-1], "Largest batch formed.")
    flags.DEFINE_integer("batch_timeout_micros", 1000, "Microseconds a batch waits to fill.")
    flags.DEFINE_integer("num_batch_threads", None, "Threads running batches; default: the CPUs.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    problem = rest_client.name_problem(FLAGS.model_name)
    if problem:
        raise UserError(f"--model_name {problem}, got {FLAGS.model_name!r}.")
    root = Path(FLAGS.out) / FLAGS.model_name
    if not root.is_dir():
        raise UserError(f"No {root}: run python -m keras_resnet_cifar.export first.")
    texts = {
        tf_serving.MODEL_CONFIG: tf_serving.model_config(
            FLAGS.model_name, FLAGS.base_path or f"/models/{FLAGS.model_name}",
            tf_serving.versions(root), stable=FLAGS.stable, canary=FLAGS.canary),
        tf_serving.BATCHING_CONFIG: tf_serving.batching_parameters(
            max_batch_size=FLAGS.max_batch_size,
            batch_timeout_micros=FLAGS.batch_timeout_micros,
            num_batch_threads=FLAGS.num_batch_threads),
    }
    for name, text in texts.items():
        fileio.write_text(root / name, text)
        print(root / name)


if __name__ == "__main__":
    define_flags()
    cli.run(main, required={"model_name": "the model's folder under --out"})
