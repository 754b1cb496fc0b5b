"""Evaluates a trained model on the CIFAR-10 test set: accuracy, per class, confusion.

    python -m keras_resnet_cifar.evaluate --model_path=runs/resnet20-seed0 --data_dir=~/data/cifar10
    python -m keras_resnet_cifar.evaluate --model_path=exports/resnet20/1 --out=runs/eval-r20

Prints a table, and writes evaluation.json, per_class.csv and confusion_matrix.csv into the
run directory (--model_path a run) or --out. Other models are written only with --out: an
export's version folder is what TF Serving polls. A class's accuracy is its recall.
"""

from __future__ import annotations

from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.progress import Progress
from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.errors import UserError


def define_flags() -> None:
    cli.define_model_flags()
    flags.DEFINE_string("dataset", "cifar10", "cifar10 or synthetic.")
    flags.DEFINE_integer("synthetic_test_size", 1000, "--dataset=synthetic only.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 256, "Images per prediction batch.", lower_bound=1)
    flags.DEFINE_integer("max_images", 0, "Evaluate only the first N test images (0: all).",
                         lower_bound=0)
    flags.DEFINE_integer("num_threads", 1, "CPU threads for a .tflite model.", lower_bound=1,
                         upper_bound=predictor.MAX_THREADS)
    flags.DEFINE_string("out", None, "Where to write the results (default: the run "
                        "directory; other models are only printed without --out).")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    try:  # the edge install (numpy, Pillow, absl-py, LiteRT) has no scikit-learn
        import sklearn.metrics  # noqa: F401
    except ImportError:
        raise UserError("evaluate needs scikit-learn (pip install scikit-learn); "
                        "predict --dataset=cifar10 gives the accuracy without it.") from None
    resolved = predictor.resolve(FLAGS.model_path, FLAGS.checkpoint,  # before TF loads
                                 trust_savedmodel=FLAGS.trust_savedmodel)
    from keras_resnet_cifar.data import datasets
    from keras_resnet_cifar.deploy import evaluation, evaluation_files
    out = FLAGS.out or resolved.run_dir
    if out:  # before the model and the data load
        evaluation_files.check_destination(out)
    model = predictor.load(resolved, num_threads=FLAGS.num_threads,
                           trust_savedmodel=FLAGS.trust_savedmodel)
    data = datasets.load(FLAGS.dataset, FLAGS.data_dir,
                         synthetic_sizes=(0, FLAGS.synthetic_test_size))
    n = FLAGS.max_images or len(data.test)
    result = evaluation.evaluate_split(model, data.test.images[:n], data.test.labels[:n],
                                       data.class_names, FLAGS.batch_size,
                                       progress=Progress("evaluating"))
    result.update(model=model.describe(), data_source=data.source)
    print(evaluation.format_table(result))
    if out:
        paths = evaluation_files.write_results(result, out)
        print(f"wrote {', '.join(str(p) for p in paths)}")
    else:
        print("(not written: give --out=FOLDER to keep the results)")


if __name__ == "__main__":
    define_flags()
    cli.run(main, required={"model_path": cli.MODEL_PATH})
