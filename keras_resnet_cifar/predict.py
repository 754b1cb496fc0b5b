r"""Classifies images with a model: a run directory, a .keras file, a SavedModel or a .tflite file.

    python -m keras_resnet_cifar.predict --model_path=exports/resnet20/1 cat.png batch.npy
    python -m keras_resnet_cifar.predict --model_path=runs/resnet20-seed0 \
        --dataset=cifar10 --data_dir=~/data/cifar10

Prints the top classes of every PNG/JPEG/.npy input (--json: as JSON), or the test accuracy
with --dataset. An unreadable file is one error line, the others are still classified, and
the exit status is 1. A .tflite model runs on LiteRT alone, without TensorFlow (the edge
install).
"""

from __future__ import annotations

import sys

import numpy as np
from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.progress import Progress
from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.data import images as images_lib
from keras_resnet_cifar.errors import UserError


def define_flags() -> None:
    cli.define_model_flags()
    flags.DEFINE_boolean("json", False, "Print JSON instead of a table.")
    flags.DEFINE_integer("top_k", 3, "How many classes to show per image.", lower_bound=1)
    flags.DEFINE_boolean("strict", False, "Refuse, not resize, images that are not 32x32.")
    flags.DEFINE_integer("num_threads", 1, "CPU threads for a .tflite model.", lower_bound=1,
                         upper_bound=predictor.MAX_THREADS)
    flags.DEFINE_string("dataset", None, "Score the test split of this data set (cifar10 or "
                        "synthetic) instead of, or as well as, images.")
    flags.DEFINE_integer("max_images", 0, "With --dataset: score the first N test images (0: all).",
                         lower_bound=0)


# TFLite's int8 softmax always outputs in steps of 1/256 (scale 1/256, zero point -128);
# the model dequantises them to float32, where they stay exact multiples.
INT8_STEP = 1 / 256


def _quantised(predictions) -> bool:
    shown = np.array([t["probability"] for p in predictions for t in p["top"]])
    return bool(np.all(np.abs(shown / INT8_STEP - np.rint(shown / INT8_STEP)) < 1e-4))


def main(argv):
    FLAGS = flags.FLAGS
    paths = argv[1:]
    if not paths and not FLAGS.dataset:
        raise UserError("Nothing to classify: give image/.npy files or --dataset.")
    # The inputs first (no TensorFlow needed): a typo in a file name is said at once.
    loaded, errors = images_lib.load_files(paths, strict=FLAGS.strict)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not loaded.names and not FLAGS.dataset:
        cli.print_ranked([], errors, as_json=False)  # the errors, exit 1
    model = predictor.load(FLAGS.model_path, checkpoint=FLAGS.checkpoint,
                           num_threads=FLAGS.num_threads,
                           trust_savedmodel=FLAGS.trust_savedmodel)
    predictions = predictor.classify(model, loaded.pixels, loaded.names, FLAGS.top_k)
    scored = None
    if FLAGS.dataset:
        from keras_resnet_cifar.data import datasets

        # Only the test split is scored: do not generate a synthetic training split.
        test = datasets.load(FLAGS.dataset, FLAGS.data_dir, synthetic_sizes=(0, 10000)).test
        n = FLAGS.max_images or len(test)
        progress = Progress(f"scoring {FLAGS.dataset} test images")
        scored = {"dataset": FLAGS.dataset, "split": "test",
                  **predictor.score(model, test.images[:n], test.labels[:n], progress=progress)}
    footer = scored and (f"{scored['dataset']} {scored['split']}: accuracy "
                         f"{100 * scored['accuracy']:.2f}% "
                         f"({scored['correct']}/{scored['images']})")
    if model.kind == "tflite" and predictions and _quantised(predictions):
        note = (f"({model.path.name} is quantised: its probabilities come in steps of "
                f"{INT8_STEP:.4f} (1/256), so a confident answer shows as "
                f"{100 * (1 - INT8_STEP):.1f}%, not 100%)")
        footer = f"{footer}\n{note}" if footer else note
    cli.print_ranked(predictions, errors, as_json=FLAGS.json, footer=footer,
                     model=model.describe(), score=scored)


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_files=True, required={"model_path": cli.MODEL_PATH})
