r"""Trains plain and residual nets one after another, evaluates them, writes the report.

    python -m keras_resnet_cifar.study --data_dir=~/data/cifar10 --out=runs/study
    python -m keras_resnet_cifar.study --flagfile=flags/study/three_passes.cfg \
        --data_dir=~/data/cifar10 --out=runs/three_passes --report_dir=docs/study

The full study is train's default recipe for plain-20, ResNet-20, plain-56 and ResNet-56;
--depth_sweep adds the 32- and 44-layer nets of He et al.'s Figure 6, --seeds=0,1,2 repeats
each. Every flag of train is a flag here, but --model and --seed (here --models, --seeds).
Each run is <out>/runs/<model>-seed<seed>; the same command again resumes (finished runs are
skipped). The report goes to <out>/report (or --report_dir) with a copy of each run's small
files, so it can be committed and rebuilt from itself; it covers every run published there
(runs of another recipe are refused). The library is analysis/depth_study.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags, logging

from keras_resnet_cifar import cli, fileio, train_flags
from keras_resnet_cifar.analysis import depth_study
from keras_resnet_cifar.config import ConfigError, as_epoch
from keras_resnet_cifar.errors import UserError

# --quick: a schedule that runs in minutes per model on a CPU (curves, not accuracy).
QUICK = dict(epochs=10, steps_per_epoch=10, eval_steps=8, lr_boundaries=(7,))
# TrainConfig fields the study sets per run rather than taking as flags.
PER_RUN = ("model", "seed")
# The fixed batch of the layer statistics is run through the model at once.
MAX_LAYER_STATS_BATCH = 10_000


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    train_flags.define_config_flags(flag_values, exclude=PER_RUN)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("out", "runs/study", "Study folder: runs/ and report/ go there.", **fv)
    flags.DEFINE_list("models", list(depth_study.SEED_MODELS), "Models to train.", **fv)
    flags.DEFINE_boolean("depth_sweep", False, "Train plain/resnet 20, 32, 44 and 56 "
                         "(He et al., Figure 6) instead of --models.", **fv)
    flags.DEFINE_list("seeds", ["0"], "Random seeds; each model is trained once per seed.", **fv)
    flags.DEFINE_boolean("quick", False, "Reduced schedule: "
                         + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                         + " (explicit flags still win).", **fv)
    flags.DEFINE_list("layer_stats_epochs", [], "Epochs at which to record per-layer response "
                      "std and gradient norms (0 = at initialisation; fractions such as 1.5 "
                      "are measured at the step that reaches them).", **fv)
    flags.DEFINE_integer("layer_stats_batch", 256, "Training images in the fixed batch of the "
                         "layer statistics.", lower_bound=1, upper_bound=MAX_LAYER_STATS_BATCH,
                         **fv)
    flags.DEFINE_integer("curve_points_per_epoch", 0, "Learning-curve points per epoch (curve."
                         "json): the training error of the steps since the previous point and "
                         "the test error on --curve_test_images fixed test images; 0: none.",
                         lower_bound=0, **fv)
    flags.DEFINE_integer("curve_test_images", 2000, "Test images (a fixed random subset, the "
                         "same for every point and run) of the curve points' test error.",
                         lower_bound=1, **fv)
    flags.DEFINE_list("accuracy_levels", [], "Test accuracies (e.g. 0.5,0.8) whose first epoch the "
                      "report gives (convergence speed); default: chosen so that every run that "
                      "learned reaches them.", **fv)
    flags.DEFINE_string("report_dir", None, "Where the report goes (default <out>/report), "
                        "with a copy of each run's small files in its runs/ folder.", **fv)
    flags.DEFINE_string("reference_dir", None, "Runs of the reference PyTorch trainer (scripts/"
                        "train_reference_pytorch.py --report_dir), e.g. docs/study/reference: "
                        "the report sets them beside the study's runs of the same recipe.", **fv)
    flags.DEFINE_boolean("skip_report", False, "Train and evaluate only.", **fv)


def _epochs(flag_values: flags.FlagValues, name: str) -> tuple[int | float, ...]:
    values = flag_values[name].value
    try:
        epochs = tuple(sorted({as_epoch(v) for v in values}))
    except ValueError:
        raise UserError(f"--{name} must be numbers of epochs, got {','.join(values)}.") from None
    if any(e < 0 for e in epochs):
        raise UserError(f"--{name} must not be negative, got {','.join(values)}.")
    return epochs


def spec_from_flags(flag_values: flags.FlagValues) -> depth_study.StudySpec:
    models = depth_study.SWEEP_MODELS if flag_values.depth_sweep else tuple(flag_values.models)
    if not models:
        raise UserError("--models is empty: name the models to train, e.g. "
                        "--models=plain20,resnet20.")
    quick = {k: v for k, v in QUICK.items() if flag_values.quick and not flag_values[k].present}
    try:
        seeds = tuple(int(v) for v in flag_values.seeds)
    except ValueError:
        raise UserError(f"--seeds must be integers, got {','.join(flag_values.seeds)}.") from None
    if not seeds:
        raise UserError("--seeds is empty: give at least one random seed, e.g. --seeds=0.")
    try:  # every run's TrainConfig, so every model and seed is checked before training
        base = train_flags.config_from_flags(flag_values, model=models[0], seed=seeds[0], **quick)
        spec = depth_study.StudySpec(models=models, seeds=seeds, base=base,
                                     layer_stats_epochs=_epochs(flag_values, "layer_stats_epochs"),
                                     layer_stats_batch=flag_values.layer_stats_batch,
                                     curve_points_per_epoch=flag_values.curve_points_per_epoch,
                                     curve_test_images=flag_values.curve_test_images)
        spec.configs()
    except ConfigError as e:  # cli prints its argument as --argument, a flag study has...
        if e.argument in PER_RUN:  # ...but for model and seed (--models, --seeds): prose
            raise UserError(str(e)) from None
        raise
    too_late = [e for e in spec.layer_stats_epochs if e > base.epochs]
    if too_late:
        raise UserError(f"--layer_stats_epochs {', '.join(map(str, too_late))} lie beyond "
                        f"--epochs={base.epochs}.")
    return spec


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    spec = spec_from_flags(FLAGS)
    from keras_resnet_cifar.analysis.results import markdown, runs as report_runs

    levels = report_runs.parse_levels(FLAGS.accuracy_levels)  # before hours of training
    references = (report_runs.expand_run_paths([FLAGS.reference_dir])
                  if FLAGS.reference_dir and not FLAGS.skip_report else [])
    report_dir = None if FLAGS.skip_report else (FLAGS.report_dir or Path(FLAGS.out) / "report")
    for flag, folder in (("out", FLAGS.out), ("report_dir", report_dir)):
        if folder is not None:  # before hours of training
            fileio.check_can_make_dir(folder, what=f"--{flag} {folder}")
    if report_dir is not None:  # the report's other runs, read now rather than after training
        planned = [depth_study.run_dir(FLAGS.out, c) for c in spec.configs()]
        for run in [*depth_study.report_runs(planned, report_dir)[len(planned):], *references]:
            report_runs.load_run(run)
    command = markdown.portable_command(["python", "-m", "keras_resnet_cifar.study", *sys.argv[1:]])
    result = depth_study.run_study(spec, FLAGS.out, report_dir=report_dir, command=command,
                                   reference_dirs=references, accuracy_levels=levels)
    if result.report is not None:
        logging.info("study: report written to %s", result.report)


if __name__ == "__main__":
    define_flags()
    cli.run(main, trains=True)
