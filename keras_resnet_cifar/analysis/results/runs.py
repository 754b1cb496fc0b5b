"""Loading run directories, the per-run numbers a report aggregates, the accuracy levels.

Final test accuracy: evaluation.json's (whole test set) when the run was evaluated,
else metrics.json's. Best test accuracy: the highest per-epoch accuracy on the set
metrics.json's best.chosen_on names (optimistic when that is the test set). "Passes
to X%" come from one source for all runs of a report (convergence_source), never a mix.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar.data import cifar_files  # no TensorFlow in the report
from keras_resnet_cifar.models import arch
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError, printable

CHANCE_ACCURACY = 1 / cifar_files.NUM_CLASSES
CHANCE_ERROR = 1 - CHANCE_ACCURACY
PROJECT_TRAINER = "keras_resnet_cifar"
# Where "time to X%" is measured (convergence_source).
CURVE_POINTS, PER_EPOCH = "curve points", "per-epoch evaluations"


@dataclasses.dataclass(frozen=True)
class Run:
    """What a run directory holds that a report uses; each field is run_files.read_<field>."""

    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    layer_stats: dict[str, Any] | None
    curve: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def trainer(self) -> str:  # this project's, or e.g. "pytorch-reference"
        return self.config.get("trainer", PROJECT_TRAINER)

    @property
    def evaluated_every_epoch(self) -> bool:
        return any(r.get("val_accuracy") is not None for r in self.history)

    @property
    def final_test(self) -> tuple[float | None, int | None, str]:
        """(final test accuracy, images it was measured on, the file it comes from)."""
        metrics = self.metrics or {}
        if self.evaluation:
            return self.evaluation["accuracy"], self.evaluation["images"], run_files.EVALUATION
        if metrics.get("test_accuracy") is not None:
            return metrics["test_accuracy"], metrics.get("test_images"), run_files.METRICS
        last = self.history[-1] if self.history else {}
        return (last.get("val_accuracy"), self.eval_images,
                f"{run_files.HISTORY_JSON} (unfinished, {self.eval_set} set)")

    @property
    def eval_images(self) -> int | None:
        """Images of each per-epoch evaluation when eval_steps capped it, else None."""
        steps = self.config.get("eval_steps")
        return steps * self.config["batch_size"] if steps else None

    @property
    def final_test_error(self) -> float | None:
        return None if self.final_test[0] is None else 1 - self.final_test[0]

    @property
    def last_point(self) -> dict[str, Any] | None:
        return self.curve_points[-1] if self.curve_points else None

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def spec(self) -> arch.ArchSpec:
        return arch.parse_name(self.model)

    @property
    def eval_set(self) -> str:  # as TrainConfig.eval_set
        return "validation" if self.config.get("validation_split") else "test"

    @property
    def images_per_epoch(self) -> int | None:
        """Training images per epoch when steps_per_epoch capped it, else None."""
        steps = self.config.get("steps_per_epoch")
        return steps * self.config["batch_size"] if steps else None

    @property
    def train_set_size(self) -> int:
        return train_set_size(self.config)

    @property
    def images_seen(self) -> int:
        return (self.images_per_epoch or self.train_set_size) * len(self.history)

    @property
    def steps_per_epoch(self) -> int:
        return (self.config.get("steps_per_epoch")
                or math.ceil(self.train_set_size / self.config["batch_size"]))

    @property
    def passes_per_epoch(self) -> float:
        return (self.images_per_epoch or self.train_set_size) / self.train_set_size

    @property
    def passes(self) -> float:
        return self.passes_per_epoch * len(self.history)

    @property
    def iterations(self) -> int:
        return self.steps_per_epoch * len(self.history)

    @property
    def curve_points(self) -> list[dict[str, Any]]:
        return sorted((self.curve or {}).get("points", []), key=lambda p: p["step"])


def train_set_size(config: dict[str, Any]) -> int:
    return cifar_files.train_images(config.get("dataset"),
                                    int(config.get("synthetic_train_size", 0)),
                                    config.get("validation_split") or 0)


# What a report reads from each file of a run and what each value must be, by the Run
# field (and run_files reader) that holds it. A key ending in "!" must be present; others
# may be absent or null; [kind]: a list of them.
_KINDS = {
    "count": ("an integer in [1, 2**53]", lambda v: _integer(v) and 1 <= v <= 2**53),
    "index": ("an integer in [0, 2**53]", lambda v: _integer(v) and 0 <= v <= 2**53),
    "number": ("a finite number", lambda v: _finite(v)),
    "fraction": ("a finite number in [0, 1]", lambda v: _finite(v) and 0 <= v <= 1),
    "text": ("a string", lambda v: isinstance(v, str)),
}
_HISTORY_ROW = {"epoch!": "count", "accuracy": "fraction", "val_accuracy": "fraction",
                **{k: "number" for k in run_files.HISTORY_FIELDS
                   if k not in ("epoch", "accuracy", "val_accuracy")}}
_SCHEMA = {
    "config": (run_files.CONFIG, {
        "batch_size!": "count", "epochs!": "count", "seed": "index", "steps_per_epoch": "count",
        "eval_steps": "count", "validation_split": "index", "synthetic_train_size": "count",
        "lr_boundaries": ["number"], "trainer": "text"}),
    "history": (run_files.HISTORY_JSON, [_HISTORY_ROW]),
    "metrics": (run_files.METRICS, {
        "test_accuracy": "fraction", "test_images": "count", "params_trainable": "count",
        "wall_time_s": "number", "train_images_per_sec": "number",
        "load_average_1min_at_end": "number",
        "best": {"epoch": "count", "value": "fraction", "chosen_on": "text"}}),
    "evaluation": (run_files.EVALUATION, {
        "accuracy!": "fraction", "images!": "count", "class_names": ["text"],
        "confusion_matrix": [["index"]],
        "per_class": [{"class!": "text", "recall": "fraction", "precision": "fraction",
                       "support": "index"}]}),
    "curve": (run_files.CURVE, {
        "points_per_epoch!": "count", "steps_per_epoch!": "count",
        "points!": [{"step!": "index", "epoch!": "number", "test_error!": "fraction",
                     "train_error!": "fraction", "train_error_se": "number",
                     "test_images": "count"}]}),
    "layer_stats": (run_files.LAYER_STATS, {
        "response_layers!": ["text"], "gradient_layers!": ["text"],
        "epochs!": [{"epoch!": "number", "response_std!": ["number"],
                     "gradient_norm!": ["number"]}]}),
}


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    except OverflowError:  # an integer beyond a float's range
        return False


def _mismatch(value: Any, schema: Any, where: str) -> str | None:
    """Where `value` departs from `schema` (see _SCHEMA), or None."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{where or 'the file'} is not an object"
        for key, inner in schema.items():
            name = key.rstrip("!")
            inside = f"{where}.{name}" if where else name
            if value.get(name) is None:
                if key.endswith("!"):
                    return f"{inside} is missing"
                continue
            problem = _mismatch(value[name], inner, inside)
            if problem:
                return problem
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{where} is not a list"
        return next(filter(None, (_mismatch(v, schema[0], f"{where}[{i}]")
                                  for i, v in enumerate(value))), None)
    what, ok = _KINDS[schema]
    return None if ok(value) else f"{where} is {printable(repr(value), 60)}, not {what}"


def check_run(run: Run) -> None:
    """Refuses a run whose files hold values a report cannot publish as figures (UserError
    naming the file and the value: a string where a number belongs, NaN, a missing key)."""
    for field, (name, schema) in _SCHEMA.items():
        content = getattr(run, field)
        if content is None:
            continue
        # history.json's rows sit under "epochs" (run_files.read_history returns them).
        problem = _mismatch(content, schema, "epochs" if field == "history" else "")
        if problem is None and field == "history":
            epochs = [r["epoch"] for r in run.history]
            if epochs != list(range(1, len(epochs) + 1)):
                problem = f"its epochs are not 1, 2, ... in order (got {epochs[:10]})"
        if problem is None and field == "config" and train_set_size(run.config) < 1:
            problem = "validation_split leaves no training image"
        if problem:
            raise UserError(f"{run_files.path(run.path, name)}: {problem}: a report never "
                            "publishes it; restore the file or leave the run out.")


def load_run(path: str | os.PathLike) -> Run:
    """Reads a run directory (config.json at least; history.json once an epoch is done)
    and checks it."""
    path = Path(path)
    config = run_files.read_config(path)
    if config is None:
        raise UserError(f"{path} is not a run directory: it needs {run_files.CONFIG} "
                        "(written by keras_resnet_cifar.train).")
    try:
        arch.parse_name(config.get("model"))
    except ValueError as e:
        raise UserError(f"{path / run_files.CONFIG}: {e}") from None
    run = Run(path=path, config=config, **{field: getattr(run_files, f"read_{field}")(path)
                                           for field in _SCHEMA if field != "config"})
    check_run(run)
    return run


def convergence_source(runs: Sequence[Run]) -> tuple[str | None, str]:
    """Where "how fast" is measured for all of `runs`, and a sentence saying so: the curve
    points when every run has them, else the per-epoch evaluations when every run has
    them, else nothing (a mix would compare different test sets silently)."""
    if runs and all(r.curve_points for r in runs):
        images = sorted({p.get("test_images") for r in runs for p in r.curve_points} - {None})
        return CURVE_POINTS, (f"curve points (test accuracy on the fixed "
                              f"{'/'.join(f'{i:,}' for i in images)}-image test subset, in "
                              "passes over the training set)")
    if runs and all(r.evaluated_every_epoch for r in runs):
        return PER_EPOCH, f"per-epoch evaluations on the {runs[0].eval_set} set, in epochs"
    lacking = sorted(f"{r.model} seed {r.seed}" for r in runs
                     if not r.curve_points and not r.evaluated_every_epoch)
    return None, ("not measured: not every run has curve points, nor every run per-epoch "
                  "evaluations" + (f" ({', '.join(lacking)} have neither)" if lacking else
                                   " (the sets would differ between runs)"))


def accuracy_series(run: Run, source: str | None) -> list[tuple[float, float]]:
    """(passes or epochs, test accuracy) along the run."""
    if source == CURVE_POINTS:
        return [(p["epoch"] * run.passes_per_epoch, 1 - p["test_error"]) for p in run.curve_points]
    if source == PER_EPOCH:
        return [(float(r["epoch"]), r["val_accuracy"]) for r in run.history
                if r.get("val_accuracy") is not None]
    return []


def passes_to_train_error(run: Run, level: float) -> float | None:
    """Passes until the training error falls to `level`, or None: each curve point's
    training error (over the segment before it) sits at its pass, the run starts at
    chance, and the crossing is interpolated linearly."""
    points = [(0.0, CHANCE_ERROR)] + [(p["epoch"] * run.passes_per_epoch, p["train_error"])
                                      for p in run.curve_points]
    for (x0, e0), (x1, e1) in zip(points, points[1:]):
        if e1 <= level:
            if e0 <= level or e0 == e1:
                return x0 if e0 <= level else x1
            return x0 + (x1 - x0) * (e0 - level) / (e0 - e1)
    return None


def level_key(level: float) -> str:
    return f"to_{100 * level:g}pct"


def choose_levels(runs: Sequence[Run], count: int = 3,
                  margin: float = 0.05) -> tuple[tuple[float, ...], str]:
    """Accuracy levels for "time to X%" that every run that learned reaches, and a
    sentence saying how they were chosen. Fixed levels (50/80/90%) suit 200 epochs; a
    short study would never reach them, so the way from chance to the lowest best
    accuracy among the runs that learned is split into `count` equal steps."""
    source, where = convergence_source(runs)
    if source is None:
        return (), where + "."
    bests = [max(a for _, a in accuracy_series(run, source)) for run in runs
             if accuracy_series(run, source)]
    learned = [b for b in bests if b > CHANCE_ACCURACY + margin]
    if not learned:
        return (), (f"no run's test accuracy rose above chance ({100 * CHANCE_ACCURACY:.0f}%) "
                    f"by {100 * margin:g} points, so there is no level to time.")
    top = min(learned)
    levels = sorted({math.floor(100 * (CHANCE_ACCURACY + (top - CHANCE_ACCURACY) * k / count))
                     / 100 for k in range(1, count + 1)})
    levels = tuple(v for v in levels if v > CHANCE_ACCURACY)
    return levels, (f"chosen from the runs: {count} equal steps from chance "
                    f"({100 * CHANCE_ACCURACY:.0f}%) to {100 * top:.1f}%, the lowest best "
                    "test accuracy of the runs that learned, rounded down to whole "
                    "percent, so that every such run reaches every level.")


@dataclasses.dataclass(frozen=True)
class Levels:
    """The accuracy levels of Table 1's "time to X%" columns and where that time is measured."""

    levels: tuple[float, ...]
    note: str | None            # how the levels were chosen, or why there are none
    source: str | None          # CURVE_POINTS, PER_EPOCH, or None (not measured)
    source_note: str


def levels_for(runs: Sequence[Run], given: Sequence[float] | None = None) -> Levels:
    """The levels `given`, or chosen from the runs (choose_levels); none without a source."""
    source, source_note = convergence_source(runs)
    levels, note = choose_levels(runs) if given is None else (tuple(given), None)
    return Levels(levels if source else (), note, source, source_note)


def parse_levels(values: list[str]) -> tuple[float, ...] | None:
    """accuracy_levels as numbers in (0, 1); None (choose from the runs) when empty."""
    if not values:
        return None
    try:
        levels = tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"accuracy_levels must be numbers, got {','.join(values)}.",
                        argument="accuracy_levels") from None
    if not all(0 < v < 1 for v in levels):
        raise UserError(f"accuracy_levels must be fractions in (0, 1), got "
                        f"{','.join(values)}.", argument="accuracy_levels")
    return levels


def run_summary(run: Run, levels: Sequence[float], source: str | None = None) -> dict[str, Any]:
    """One run's row: the numbers Table 1 aggregates, with the time to each of `levels`
    measured on `source` (convergence_source)."""
    metrics = run.metrics or {}
    last = run.history[-1] if run.history else {}
    final, images, origin = run.final_test
    best = metrics.get("best") or {}
    point = run.last_point or {}
    times = [r["epoch_time_s"] for r in run.history if r.get("epoch_time_s") is not None]
    loads = [r["load_average"] for r in run.history if r.get("load_average") is not None]
    row = {
        "model": run.model, "seed": run.seed, "trainer": run.trainer,
        "architecture": "residual" if run.spec.residual else "plain", "layers": run.spec.depth,
        "params": metrics.get("params_trainable"), "epochs": int(last["epoch"]) if last else 0,
        "images_per_epoch": run.images_per_epoch,
        "train_images_per_epoch": run.images_per_epoch or run.train_set_size,
        "eval_images_per_epoch": run.eval_images if run.evaluated_every_epoch else None,
        "evaluated_every_epoch": run.evaluated_every_epoch,
        "final_test_accuracy": final, "final_test_images": images, "final_test_source": origin,
        "best_test_accuracy": best.get("value"), "best_epoch": best.get("epoch"),
        "best_chosen_on": best.get("chosen_on", run.eval_set) if best else None,
        "final_train_error": (1 - last["accuracy"]) if last.get("accuracy") is not None else None,
        "last_segment_train_error": point.get("train_error"),
        "last_segment_train_error_se": point.get("train_error_se"),
        "wall_time_s": metrics.get("wall_time_s"),
        "train_time_s": float(sum(times)) if times else metrics.get("wall_time_s"),
        "load_average_mean": (float(sum(loads) / len(loads)) if loads
                              else metrics.get("load_average_1min_at_end")),
        "train_images_per_sec": metrics.get("train_images_per_sec")}
    series = accuracy_series(run, source)
    for level in levels:
        row[level_key(level)] = next((x for x, accuracy in series if accuracy >= level), None)
    return row


def by_model(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """{model: its runs, lowest seed first}, plain before residual, shallow before deep."""
    out: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.spec.residual, r.spec.depth, r.model, r.seed)):
        out.setdefault(run.model, []).append(run)
    return out


def expand_run_paths(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Run directories named by `patterns`: run directories, folders of them, or glob
    patterns of either; UserError for a pattern that names none."""
    found: list[Path] = []
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        matches = sorted(glob.glob(pattern)) or [pattern]
        hits = []
        for match in map(Path, matches):
            if run_files.is_run_dir(match):
                hits.append(match)
            elif match.is_dir():
                hits += sorted(d for d in match.iterdir() if run_files.is_run_dir(d))
        if not hits:
            raise UserError(f"{pattern}: no run directory there (a run directory has a "
                            f"{run_files.CONFIG}).")
        found += [h for h in hits if h not in found]
    return found
