"""The study (the library): train every run, evaluate each, publish the small files, report.

Each run lives in `<out>/runs/<model>-seed<seed>`. Calling again resumes: finished runs
are skipped, an interrupted one continues, evaluations are redone only when their model
changed. The report folder gets a copy of each run's small files (never the models), so
it can be committed and rebuilt from itself, and its report covers every run published
there: seeds trained by separate calls end up in one report."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from absl import logging

from keras_resnet_cifar import fileio, run_files  # no Keras: TensorFlow loads when training starts
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.data import datasets  # no TensorFlow on import
from keras_resnet_cifar.errors import plural

SEED_MODELS = ("plain20", "resnet20", "plain56", "resnet56")
# He et al.'s Figure 6: plain and residual nets of 20, 32, 44 and 56 layers.
SWEEP_MODELS = tuple(f"{net}{depth}" for net in ("plain", "resnet") for depth in (20, 32, 44, 56))
CURVE_SUBSET_SEED = 0  # which test images the curve points use (the same for every run)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    models: tuple[str, ...] = SEED_MODELS
    seeds: tuple[int, ...] = (0,)
    base: TrainConfig = TrainConfig()          # model and seed are overridden per run
    layer_stats_epochs: tuple[float, ...] = ()  # whole or fractional epochs; 0: at init
    layer_stats_batch: int = 256
    curve_points_per_epoch: int = 0            # 0: no intermediate curve points
    curve_test_images: int = 2000              # the fixed test subset of the curve points

    def configs(self) -> list[TrainConfig]:
        return [dataclasses.replace(self.base, model=m, seed=s)
                for s in self.seeds for m in self.models]


@dataclasses.dataclass(frozen=True)
class StudyResult:
    run_dirs: list[Path]
    report: Path | None  # report.md; None when no report was asked for


def run_dir(out: str | os.PathLike, config: TrainConfig) -> Path:
    return Path(out) / "runs" / f"{config.model}-seed{config.seed}"


class DataCache:
    """Loads each data set once for all runs and evaluations (synthetic data: per seed)."""

    def __init__(self):
        self._loaded: dict[tuple[Any, ...], Any] = {}

    def get(self, config: TrainConfig):
        seed = config.seed if config.dataset == "synthetic" else 0
        sizes = (config.synthetic_train_size, config.synthetic_test_size)
        key = (config.dataset, config.data_dir, seed, sizes)
        if key not in self._loaded:
            self._loaded[key] = datasets.load(config.dataset, config.data_dir, seed=seed,
                                              synthetic_sizes=sizes)
        return self._loaded[key]


def train_all(spec: StudySpec, out: str | os.PathLike, verbose: int | str = "auto",
              data: DataCache | None = None) -> list[Path]:
    """Trains (or resumes, or skips when finished) every run; each ends with its curves.png."""
    import keras

    from keras_resnet_cifar.analysis import curve_points, layer_stats, plots  # TF, matplotlib
    from keras_resnet_cifar.training import distribution, loop

    data = data or DataCache()
    dirs = []
    for config in spec.configs():
        workdir = run_dir(out, config)
        loaded = data.get(config)
        callbacks = []
        if spec.layer_stats_epochs:
            # The same batch for every model (and on CIFAR-10 every seed): comparable runs.
            images, labels = datasets.fixed_subset(loaded.train, spec.layer_stats_batch, 0)
            callbacks.append(layer_stats.LayerStatsRecorder(
                workdir, images, labels, spec.layer_stats_epochs))
        if spec.curve_points_per_epoch:
            # The same test images for every point and every model: the curves differ
            # only by the networks, and the last point's subset error is comparable.
            images, labels = datasets.fixed_subset(loaded.test, spec.curve_test_images,
                                                   CURVE_SUBSET_SEED)
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
            plots.save_run_curves(workdir)
        dirs.append(workdir)
    return dirs


def evaluate_all(dirs: Sequence[Path], base: TrainConfig, batch_size: int = 256,
                 data: DataCache | None = None) -> None:
    """Evaluates each run's final model on the whole test set (skips up-to-date ones)."""
    from keras_resnet_cifar.deploy import evaluation, evaluation_files, predictor

    data = data or DataCache()
    for workdir in dirs:
        if evaluation_files.is_current(workdir):
            continue
        config = TrainConfig.from_dict(run_files.read_config(workdir) or dataclasses.asdict(base))
        loaded = data.get(config)
        result = evaluation.evaluate_split(predictor.load(workdir), loaded.test.images,
                                           loaded.test.labels, loaded.class_names, batch_size)
        result.update(model=str(run_files.path(workdir, run_files.MODEL)), model_kind="keras",
                      checkpoint="final", data_source=loaded.source)
        evaluation_files.write_results(result, workdir)
        logging.info("study: %s test accuracy %.4f on %s", workdir,
                     result["accuracy"], plural(result["images"], "image"))


def run_study(spec: StudySpec, out: str | os.PathLike, *,
              report_dir: str | os.PathLike | None = None,
              reference_dirs: Sequence[str | os.PathLike] = (),
              accuracy_levels: Sequence[float] | None = None, command: str | None = None,
              verbose: int | str = "auto") -> StudyResult:
    """Trains, evaluates, then (with `report_dir`) publishes and reports.

    `reference_dirs` are runs of the reference PyTorch trainer for the report;
    `accuracy_levels` its "epochs to X%" levels (None: chosen from the runs)."""
    data = DataCache()
    dirs = train_all(spec, out, verbose=verbose, data=data)
    evaluate_all(dirs, spec.base, data=data)
    if report_dir is None:
        return StudyResult(run_dirs=dirs, report=None)
    from keras_resnet_cifar.analysis.results import build  # matplotlib

    fileio.make_dir(report_dir)
    run_files.publish_runs(dirs, report_dir)
    written = build.write_report(report_runs(dirs, report_dir), report_dir, command=command,
                                  reference_dirs=reference_dirs, accuracy_levels=accuracy_levels)
    return StudyResult(run_dirs=dirs, report=written)


def report_runs(dirs: Sequence[Path], report_dir: str | os.PathLike) -> list[Path]:
    """This call's runs and every run published earlier into `<report_dir>/runs/` (the
    seeds of an earlier call, say): the report is always over all of them."""
    names = {Path(d).name for d in dirs}
    published = Path(report_dir) / "runs"
    earlier = sorted(d for d in published.iterdir()
                     if d.name not in names and run_files.is_run_dir(d)) \
        if published.is_dir() else []
    return [*dirs, *earlier]
