"""The study runner: trains the seed's models one after another, evaluates, reports.

    python -m keras_resnet_cifar.study --data_dir=~/cifar10 --out=runs/study
    python -m keras_resnet_cifar.study --flagfile=flags/study_cpu.cfg --data_dir=... --out=...
    python -m keras_resnet_cifar.study --quick --data_dir=... --out=...

The full study is the paper's recipe (200 epochs, lr 0.1 / 10 after epochs 80 and
120) for plain-20, ResNet-20, plain-56 and ResNet-56; ``--depth_sweep`` adds the
32- and 44-layer nets of He et al.'s Figure 6 and ``--seeds=0,1,2`` repeats
every configuration. ``--quick`` (or a flag file such as flags/study_cpu.cfg)
runs a reduced schedule.

Each run lives in ``<out>/runs/<model>-seed<seed>`` (a normal run directory, see
:mod:`keras_resnet_cifar.training`) and also records per-layer statistics
(:mod:`keras_resnet_cifar.layer_stats`) at ``--layer_stats_epochs``. Running the
same command again resumes: finished runs are skipped, an interrupted one
continues from its last completed epoch, evaluations are redone only when their
model changed. The report goes to ``<out>/report``.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from absl import app, flags, logging

from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError, run_cli

SEED_MODELS = ("plain20", "resnet20", "plain56", "resnet56")
SWEEP_MODELS = ("plain20", "plain32", "plain44", "plain56",
                "resnet20", "resnet32", "resnet44", "resnet56")
# --quick: a schedule that runs in minutes per model on a CPU (curves, not accuracy).
QUICK = dict(epochs=10, steps_per_epoch=10, eval_steps=8, lr_boundaries=(7,))


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What a study trains: the models, the seeds, and one shared training recipe."""

    models: tuple[str, ...] = SEED_MODELS
    seeds: tuple[int, ...] = (0,)
    base: TrainConfig = TrainConfig()          # model and seed are overridden per run
    layer_stats_epochs: tuple[int, ...] = ()
    layer_stats_batch: int = 256

    def configs(self) -> list[TrainConfig]:
        """One config per (model, seed), the shallow and plain nets first."""
        return [dataclasses.replace(self.base, model=m, seed=s)
                for s in self.seeds for m in self.models]


def run_dir(out: str | os.PathLike, config: TrainConfig) -> Path:
    """Where a study keeps the run of ``config``."""
    return Path(out) / "runs" / f"{config.model}-seed{config.seed}"


def train_all(spec: StudySpec, out: str | os.PathLike, verbose: int | str = 2) -> list[Path]:
    """Trains (or resumes, or skips when finished) every run of ``spec``.

    Returns:
        The run directories, in training order.
    """
    import keras

    from keras_resnet_cifar import datasets, layer_stats, training

    dirs = []
    for config in spec.configs():
        workdir = run_dir(out, config)
        callbacks = []
        if spec.layer_stats_epochs:
            data = datasets.load(config.dataset, config.data_dir, seed=config.seed,
                                 synthetic_sizes=(config.synthetic_train_size,
                                                  config.synthetic_test_size))
            # The same batch for every model (and on CIFAR-10 every seed): comparable runs.
            images, labels = layer_stats.fixed_batch(data.train, spec.layer_stats_batch, seed=0)
            callbacks.append(layer_stats.LayerStatsRecorder(
                workdir, images, labels, spec.layer_stats_epochs))
        logging.info("study: training %s (seed %d) in %s", config.model, config.seed, workdir)
        keras.backend.clear_session()
        training.train_and_evaluate(config, workdir, callbacks=callbacks, verbose=verbose)
        dirs.append(workdir)
    return dirs


def evaluate_all(dirs: Sequence[Path], base: TrainConfig, batch_size: int = 256) -> None:
    """Evaluates each run's final model on the whole test set (skips up-to-date ones)."""
    from keras_resnet_cifar import datasets, evaluate

    data = None
    for workdir in dirs:
        if evaluate.is_current(workdir):
            continue
        data = data or datasets.load(base.dataset, base.data_dir, synthetic_sizes=(
            base.synthetic_train_size, base.synthetic_test_size))
        result = evaluate.evaluate_split(evaluate.load_predictor(workdir), data.test.images,
                                         data.test.labels, data.class_names, batch_size)
        result.update(model=str(workdir / "model.keras"), model_kind="keras",
                      checkpoint="final", data_source=data.source)
        evaluate.write_results(result, workdir)
        logging.info("study: %s test accuracy %.4f on %d images", workdir,
                     result["accuracy"], result["images"])


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The study's flags: what to train, the shared recipe, where to write."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("out", "runs/study", "Study folder: runs/ and report/ go there.", **fv)
    flags.DEFINE_list("models", list(SEED_MODELS), "Models to train.", **fv)
    flags.DEFINE_boolean("depth_sweep", False, "Train plain/resnet 20, 32, 44 and 56 "
                         "(He et al., Figure 6) instead of --models.", **fv)
    flags.DEFINE_list("seeds", ["0"], "Seeds; each model is trained once per seed.", **fv)
    flags.DEFINE_boolean("quick", False, "Reduced schedule: "
                         + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                         + " (explicit flags still win).", **fv)
    flags.DEFINE_string("data_dir", None, "Local CIFAR-10 copy (see train --helpfull).", **fv)
    flags.DEFINE_string("dataset", "cifar10", "cifar10 or synthetic.", **fv)
    flags.DEFINE_integer("epochs", 200, "Epochs per run.", **fv)
    flags.DEFINE_integer("batch_size", 128, "Global batch size.", **fv)
    flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate.", **fv)
    flags.DEFINE_list("lr_boundaries", ["80", "120"], "Epochs after which lr *= 0.1.", **fv)
    flags.DEFINE_integer("warmup_epochs", 0, "Epochs at --warmup_learning_rate first.", **fv)
    flags.DEFINE_float("warmup_learning_rate", 0.01, "Learning rate during warm-up.", **fv)
    flags.DEFINE_integer("steps_per_epoch", None, "Cap on training steps per epoch: each "
                         "epoch then sees steps x batch shuffled images of all 50,000.", **fv)
    flags.DEFINE_integer("eval_steps", None, "Cap on per-epoch test batches.", **fv)
    flags.DEFINE_integer("synthetic_train_size", 5000, "--dataset=synthetic only.", **fv)
    flags.DEFINE_integer("synthetic_test_size", 1000, "--dataset=synthetic only.", **fv)
    flags.DEFINE_list("layer_stats_epochs", [], "Epochs at which to record per-layer "
                      "response std and gradient norms (0 = at initialisation).", **fv)
    flags.DEFINE_integer("layer_stats_batch", 256, "Training images in the fixed batch "
                         "of the layer statistics.", **fv)
    flags.DEFINE_list("accuracy_levels", ["0.5", "0.8", "0.9"], "Test accuracies whose "
                      "first epoch the report gives (convergence speed).", **fv)
    flags.DEFINE_string("report_dir", None, "Where the report goes (default <out>/report).", **fv)
    flags.DEFINE_boolean("skip_report", False, "Train and evaluate only.", **fv)


def spec_from_flags(flag_values: flags.FlagValues) -> StudySpec:
    """The StudySpec of the parsed flags (raises ValueError on a bad value)."""
    def value(name):
        f = flag_values[name]
        if flag_values.quick and name in QUICK and not f.present:
            return QUICK[name]
        return f.value

    def ints(name):
        try:
            return tuple(int(v) for v in value(name))
        except ValueError:
            raise ValueError(f"--{name} must be integers, got {value(name)}.") from None

    base = TrainConfig(
        dataset=flag_values.dataset, data_dir=flag_values.data_dir,
        epochs=value("epochs"), batch_size=flag_values.batch_size,
        learning_rate=flag_values.learning_rate, lr_boundaries=ints("lr_boundaries"),
        warmup_epochs=flag_values.warmup_epochs,
        warmup_learning_rate=flag_values.warmup_learning_rate,
        steps_per_epoch=value("steps_per_epoch"), eval_steps=value("eval_steps"),
        synthetic_train_size=flag_values.synthetic_train_size,
        synthetic_test_size=flag_values.synthetic_test_size)
    models = SWEEP_MODELS if flag_values.depth_sweep else tuple(flag_values.models)
    if not models:
        raise ValueError("--models is empty.")
    spec = StudySpec(models=models, seeds=ints("seeds"), base=base,
                     layer_stats_epochs=ints("layer_stats_epochs"),
                     layer_stats_batch=flag_values.layer_stats_batch)
    for config in spec.configs():  # checks every model name before anything trains
        TrainConfig.from_dict(dataclasses.asdict(config))
    return spec


def main(argv):
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    spec = spec_from_flags(FLAGS)
    dirs = train_all(spec, FLAGS.out)
    evaluate_all(dirs, spec.base)
    if not FLAGS.skip_report:
        from keras_resnet_cifar import report

        try:
            levels = tuple(float(v) for v in FLAGS.accuracy_levels)
        except ValueError:
            raise UserError(f"--accuracy_levels must be numbers, got "
                            f"{FLAGS.accuracy_levels}.") from None
        command = shlex.join(["python", "-m", "keras_resnet_cifar.study", *sys.argv[1:]])
        written = report.write_report(dirs, FLAGS.report_dir or Path(FLAGS.out) / "report",
                                      accuracy_levels=levels, command=command)
        logging.info("study: report written to %s", written)


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
