r"""Exports a trained classifier for TF Serving and for edge devices, with proof.

    python -m keras_resnet_cifar.export --model_path=runs/resnet20-seed0 --data_dir=~/data/cifar10
    python -m keras_resnet_cifar.export --weights=resnet56.npz --data_dir=~/data/cifar10

writes, atomically, one new version <out>/<name>/<version>/ in TF Serving's layout: the
SavedModel with warm-up requests, the TFLite models, model_card.json and parity.json
(exports/README.md). Without data, int8 calibration and the parity report use synthetic
images, and the export says so: the int8 model's accuracy on real images is then unknown.
"""

from __future__ import annotations

from absl import flags

# None of these imports TensorFlow or Keras: mistakes answer at once.
from keras_resnet_cifar import cli
from keras_resnet_cifar.deploy import exporter, parity, sources
from keras_resnet_cifar.deploy.contract import TFLITE_VARIANTS as VARIANTS
from keras_resnet_cifar.errors import UserError


def define_flags() -> None:
    cli.define_model_flags()
    flags.DEFINE_string("weights", None, "Export the reference ResNet built from these resnetN.npz "
                        "weights instead of --model_path.")
    flags.DEFINE_string("out", "exports", "Where <name>/<version>/ goes (TF Serving's model base "
                        "path is <out>/<name>).")
    flags.DEFINE_string("name", None, "TF Serving's MODEL_NAME; default: the architecture.")
    flags.DEFINE_integer("version", None, "Version number; default: the next free one.")
    flags.DEFINE_string("dataset", None, "cifar10 or synthetic, for calibration and "
                        "parity; default: cifar10 when --data_dir is given, else synthetic.")
    flags.DEFINE_list("tflite", list(VARIANTS), "TFLite variants to write.")
    flags.DEFINE_integer("calibration_images", 500, "Training images for int8 calibration.")
    flags.DEFINE_integer("parity_images", 10000, "Test images for the parity report (0: none).")
    flags.DEFINE_integer("latency_runs", 100, "Timed batch-1 calls per variant.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if bool(FLAGS.model_path) == bool(FLAGS.weights):
        raise UserError("Give exactly one of --model_path (run directory, .keras file or "
                        "SavedModel) and --weights (reference resnetN.npz).")
    # The options and the source are checked before TensorFlow loads (with the model).
    exporter.check_options(variants=FLAGS.tflite, parity_images=FLAGS.parity_images,
                           latency_runs=FLAGS.latency_runs, version=FLAGS.version,
                           calibration_images=FLAGS.calibration_images)
    source = (sources.load_reference(FLAGS.weights) if FLAGS.weights
              else sources.load_source(FLAGS.model_path, checkpoint=FLAGS.checkpoint,
                                       trust_savedmodel=FLAGS.trust_savedmodel))
    data = sources.eval_data(FLAGS.dataset, FLAGS.data_dir,
                             calibration_images=FLAGS.calibration_images)
    done = exporter.export(source, FLAGS.out, name=FLAGS.name, data=data,
                           version=FLAGS.version, variants=FLAGS.tflite,
                           parity_images=FLAGS.parity_images, latency_runs=FLAGS.latency_runs)
    if done.parity:
        print(parity.format_table(done.parity))
    if done.card["licence"]:
        print(done.card["licence"])
    params = done.card["params_trainable"]
    print(f"exported {done.card['architecture'] or 'the model'}"
          + (f" ({params:,} parameters)" if params is not None else "") + f" to {done.folder}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
