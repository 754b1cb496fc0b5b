"""The study (the library): train every run, evaluate each, publish the small files, report.

:func:`run_study` is the whole study for a :class:`StudySpec`; its steps are
usable alone: :func:`train_all` (with per-layer statistics and intra-epoch
learning-curve points recorded by callbacks), :func:`evaluate_all` and
:func:`publish_runs`. Nothing here reads flags or prints; progress goes to
``absl.logging``. The command line is :mod:`keras_resnet_cifar.study`.

Each run lives in ``<out>/runs/<model>-seed<seed>`` (:func:`run_dir`, a normal
run directory, see :mod:`keras_resnet_cifar.run_files`). Calling again resumes:
finished runs are skipped, an interrupted one continues from its last completed
epoch, evaluations are redone only when their model changed. The report folder
gets a copy of each run's small files
(:data:`keras_resnet_cifar.run_files.SMALL_FILES`, never the models) in its
``runs/`` folder, so that it can be committed as it is and rebuilt from itself;
its report covers every run published there (:func:`report_runs`), so seeds
trained by separate calls end up in one report.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from absl import logging

from keras_resnet_cifar import run_files  # no Keras here: TensorFlow loads when training starts
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import plural

SEED_MODELS = ("plain20", "resnet20", "plain56", "resnet56")
# He et al.'s Figure 6: plain and residual nets of 20, 32, 44 and 56 layers.
SWEEP_MODELS = ("plain20", "plain32", "plain44", "plain56",
                "resnet20", "resnet32", "resnet44", "resnet56")
CURVE_SUBSET_SEED = 0  # which test images the curve points use (the same for every run)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What a study trains: the models, the seeds, and one shared training recipe."""

    models: tuple[str, ...] = SEED_MODELS
    seeds: tuple[int, ...] = (0,)
    base: TrainConfig = TrainConfig()          # model and seed are overridden per run
    layer_stats_epochs: tuple[float, ...] = ()  # whole or fractional epochs; 0: at init
    layer_stats_batch: int = 256
    curve_points_per_epoch: int = 0            # 0: no intermediate curve points
    curve_test_images: int = 2000              # the fixed test subset of the curve points

    def configs(self) -> list[TrainConfig]:
        """One config per (model, seed), the shallow and plain nets first."""
        return [dataclasses.replace(self.base, model=m, seed=s)
                for s in self.seeds for m in self.models]


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` did: the run directories and the report, if any."""

    run_dirs: list[Path]
    report: Path | None  # report.md; None when no report was asked for


def run_dir(out: str | os.PathLike, config: TrainConfig) -> Path:
    """Where a study keeps the run of ``config``."""
    return Path(out) / "runs" / f"{config.model}-seed{config.seed}"


class DataCache:
    """Loads each data set a study uses once, for all its runs and evaluations.

    CIFAR-10 is the same for every run; synthetic data depends on the seed.
    """

    def __init__(self):
        self._loaded: dict[tuple[Any, ...], Any] = {}

    def get(self, config: TrainConfig):
        """The :class:`keras_resnet_cifar.data.datasets.Cifar10` of ``config``."""
        from keras_resnet_cifar.data import datasets

        seed = config.seed if config.dataset == "synthetic" else 0
        sizes = (config.synthetic_train_size, config.synthetic_test_size)
        key = (config.dataset, config.data_dir, seed, sizes)
        if key not in self._loaded:
            self._loaded[key] = datasets.load(config.dataset, config.data_dir, seed=seed,
                                              synthetic_sizes=sizes)
        return self._loaded[key]


def train_all(spec: StudySpec, out: str | os.PathLike, verbose: int | str = "auto",
              data: DataCache | None = None) -> list[Path]:
    """Trains (or resumes, or skips when finished) every run of ``spec``.

    Args:
        spec: what to train.
        out: the study folder.
        verbose: progress output (loop.train_and_evaluate's ``verbose``).
        data: the loaded data sets (shared with :func:`evaluate_all`).

    Each run directory ends with its curves.png
    (:mod:`keras_resnet_cifar.analysis.run_curves`).

    Returns:
        The run directories, in training order.
    """
    import keras

    from keras_resnet_cifar.analysis import curve_points, layer_stats, run_curves
    from keras_resnet_cifar.training import distribution, loop

    data = data or DataCache()
    dirs = []
    for config in spec.configs():
        workdir = run_dir(out, config)
        loaded = data.get(config)
        callbacks = []
        if spec.layer_stats_epochs:
            # The same batch for every model (and on CIFAR-10 every seed): comparable runs.
            images, labels = layer_stats.fixed_batch(loaded.train, spec.layer_stats_batch,
                                                     seed=0)
            callbacks.append(layer_stats.LayerStatsRecorder(
                workdir, images, labels, spec.layer_stats_epochs))
        if spec.curve_points_per_epoch:
            # The same test images for every point and every model: the curves differ
            # only by the networks, and the last point's subset error is comparable.
            images, labels = layer_stats.fixed_batch(loaded.test, spec.curve_test_images,
                                                     seed=CURVE_SUBSET_SEED)
            callbacks.append(curve_points.CurveRecorder(
                workdir, images, labels, spec.curve_points_per_epoch,
                batch_size=max(config.batch_size, 256), subset_seed=CURVE_SUBSET_SEED))
        logging.info("study: training %s (seed %d) in %s", config.model, config.seed, workdir)
        keras.backend.clear_session()
        # The curve points evaluate the test set during every epoch: a per-epoch
        # evaluation of the whole test set on top would repeat it (~15% of the time).
        loop.train_and_evaluate(config, workdir, callbacks=callbacks, verbose=verbose,
                                data=loaded,
                                evaluate_every_epoch=not spec.curve_points_per_epoch)
        if distribution.is_chief_process(config.distribute):  # the chief writes the run
            run_curves.write(workdir)
        dirs.append(workdir)
    return dirs


def evaluate_all(dirs: Sequence[Path], base: TrainConfig, batch_size: int = 256,
                 data: DataCache | None = None) -> None:
    """Evaluates each run's final model on the whole test set (skips up-to-date ones)."""
    from keras_resnet_cifar.deploy import evaluation, predictor

    data = data or DataCache()
    for workdir in dirs:
        if evaluation.is_current(workdir):
            continue
        config = TrainConfig.from_dict(run_files.read_config(workdir) or
                                       dataclasses.asdict(base))
        loaded = data.get(config)
        result = evaluation.evaluate_split(predictor.load(workdir), loaded.test.images,
                                           loaded.test.labels, loaded.class_names, batch_size)
        result.update(model=str(run_files.path(workdir, run_files.MODEL)), model_kind="keras",
                      checkpoint="final", data_source=loaded.source)
        evaluation.write_results(result, workdir)
        logging.info("study: %s test accuracy %.4f on %s", workdir,
                     result["accuracy"], plural(result["images"], "image"))


def publish_runs(dirs: Sequence[Path], report_dir: str | os.PathLike) -> list[Path]:
    """Copies each run's small files into ``<report_dir>/runs/<run name>/`` (no models).

    Returns:
        The copies' run directories, in the order of ``dirs``.
    """
    copies = []
    for workdir in dirs:
        copy = Path(report_dir) / "runs" / Path(workdir).name
        run_files.copy_small_files(workdir, copy)
        copies.append(copy)
    return copies


def run_study(spec: StudySpec, out: str | os.PathLike, *,
              report_dir: str | os.PathLike | None = None,
              reference_dirs: Sequence[str | os.PathLike] = (),
              accuracy_levels: Sequence[float] | None = None,
              command: str | None = None, verbose: int | str = "auto") -> StudyResult:
    """The whole study: trains, evaluates, then (with ``report_dir``) publishes and reports.

    The data sets are loaded once for all runs and their evaluations.

    Args:
        spec: what to train.
        out: the study folder (its runs go to ``<out>/runs``).
        report_dir: where the report and the copies of the runs' small files go;
            None: no report.
        reference_dirs: run directories of the reference PyTorch trainer for the
            report's "Reference trainer" section.
        accuracy_levels: the report's "epochs to X%" levels; None chooses them
            from the runs.
        command: the command line to record in report.md.
        verbose: progress output (loop.train_and_evaluate's ``verbose``).

    Returns:
        The run directories and report.md's path.
    """
    data = DataCache()
    dirs = train_all(spec, out, verbose=verbose, data=data)
    evaluate_all(dirs, spec.base, data=data)
    if report_dir is None:
        return StudyResult(run_dirs=dirs, report=None)
    from keras_resnet_cifar import fileio
    from keras_resnet_cifar.analysis.results import build

    fileio.make_dir(report_dir)
    publish_runs(dirs, report_dir)
    written = build.write_report(report_runs(dirs, report_dir), report_dir,
                                  reference_dirs=reference_dirs,
                                  accuracy_levels=accuracy_levels, command=command)
    return StudyResult(run_dirs=dirs, report=written)


def report_runs(dirs: Sequence[Path], report_dir: str | os.PathLike) -> list[Path]:
    """The runs a study's report covers: this call's runs, and every run published
    earlier into ``<report_dir>/runs/`` (e.g. the seeds of an earlier ``--seeds=0``
    when this call trains ``--seeds=1``), so the report is always over all of them."""
    names = {Path(d).name for d in dirs}
    published = Path(report_dir) / "runs"
    earlier = sorted(d for d in published.iterdir()
                     if d.name not in names and run_files.is_run_dir(d)) \
        if published.is_dir() else []
    return [*dirs, *earlier]
