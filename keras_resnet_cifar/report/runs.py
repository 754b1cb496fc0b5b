"""Loading run directories and the per-run numbers the report aggregates.

Definitions. *Final test accuracy*: on the whole test set from evaluation.json
when the run was evaluated, else metrics.json's (possibly capped) test accuracy.
*Best test accuracy*: the highest per-epoch accuracy on the run's eval set,
which is the set named in metrics.json ``best.chosen_on`` (choosing it on the
test set makes it an optimistic number; the table says which). *Training error
over the last epoch* (``final_train_error``): 100% minus the training accuracy of
the last epoch (running mean over all its augmented batches); the curve findings'
figure is over the last curve segment only, and is named so. *Epochs to X%*: the first epoch whose per-epoch eval
accuracy reaches X.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import arch, datasets, rundir  # no TensorFlow in the report
from keras_resnet_cifar.errors import UserError

CHANCE_ACCURACY = 1 / datasets.NUM_CLASSES
# The training set of CIFAR-10 (five batches of 10,000), before any validation hold-out.
CIFAR10_TRAIN_IMAGES = len(datasets.TRAIN_BATCHES) * datasets.RECORDS_PER_BATCH


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a run directory holds that the report uses."""

    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    layer_stats: dict[str, Any] | None
    curve: dict[str, Any] | None = None  # curve.json: points inside the epochs

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def spec(self) -> arch.ArchSpec:
        return arch.parse_name(self.model)

    @property
    def eval_set(self) -> str:
        """The set evaluated after each epoch (as TrainConfig.eval_set)."""
        return "validation" if self.config.get("validation_split") else "test"

    @property
    def images_per_epoch(self) -> int | None:
        """Training images per epoch when ``steps_per_epoch`` capped it, else None."""
        steps = self.config.get("steps_per_epoch")
        return steps * self.config["batch_size"] if steps else None

    @property
    def train_set_size(self) -> int:
        """Images the run trained on: the training set less the validation hold-out."""
        return train_set_size(self.config)

    @property
    def images_seen(self) -> int:
        """Training images drawn over the epochs completed so far."""
        return (self.images_per_epoch or self.train_set_size) * len(self.history)

    @property
    def steps_per_epoch(self) -> int:
        """Training steps (iterations) per epoch."""
        return (self.config.get("steps_per_epoch")
                or math.ceil(self.train_set_size / self.config["batch_size"]))

    @property
    def passes_per_epoch(self) -> float:
        """Passes over the training set per epoch (1 unless ``steps_per_epoch`` capped it)."""
        return (self.images_per_epoch or self.train_set_size) / self.train_set_size

    @property
    def passes(self) -> float:
        """Passes over the training set in the epochs completed so far."""
        return self.passes_per_epoch * len(self.history)

    @property
    def iterations(self) -> int:
        """Training steps in the epochs completed so far."""
        return self.steps_per_epoch * len(self.history)

    @property
    def curve_points(self) -> list[dict[str, Any]]:
        """curve.json's points, in step order (empty when the run recorded none)."""
        return sorted((self.curve or {}).get("points", []), key=lambda p: p["step"])


def train_set_size(config: dict[str, Any]) -> int:
    """The size of a run's training set, from its config."""
    held_out = config.get("validation_split") or 0
    if config.get("dataset") == "synthetic":
        return int(config.get("synthetic_train_size", 0)) - held_out
    return CIFAR10_TRAIN_IMAGES - held_out


def load_run(path: str | os.PathLike) -> Run:
    """Reads a run directory.

    Raises:
        UserError: not a run directory (no config.json or no history.json).
    """
    path = Path(path)
    config = rundir.read_config(path)
    if config is None or not rundir.path(path, rundir.HISTORY_JSON).is_file():
        raise UserError(f"{path} is not a run directory: it needs {rundir.CONFIG} and "
                        f"{rundir.HISTORY_JSON} (written by keras_resnet_cifar.train).")
    try:
        arch.parse_name(config.get("model"))
    except ValueError as e:
        raise UserError(f"{path / rundir.CONFIG}: {e}") from None
    return Run(path=path, config=config, history=rundir.read_history(path),
               metrics=rundir.read_metrics(path), evaluation=rundir.read_evaluation(path),
               layer_stats=rundir.read_layer_stats(path), curve=rundir.read_curve(path))


def epochs_to_reach(history: Sequence[dict[str, Any]], level: float,
                    key: str = "val_accuracy") -> int | None:
    """The first epoch whose ``key`` is at least ``level``; None if none is."""
    for row in history:
        if row.get(key) is not None and row[key] >= level:
            return int(row["epoch"])
    return None


def level_key(level: float) -> str:
    """The column name of "epochs to reach ``level``"."""
    return f"epochs_to_{100 * level:g}pct"


def choose_levels(runs: Sequence[Run], count: int = 3,
                  margin: float = 0.05) -> tuple[tuple[float, ...], str]:
    """Accuracy levels for "epochs to X%" that the runs actually reach, and why these.

    Fixed levels (50/80/90%) suit the paper's 200 epochs; a short study never
    reaches them and every convergence comparison would read "not measured". The
    levels here split the way from chance to the *lowest* best per-epoch accuracy
    among the runs that learned (best above chance + ``margin``) into ``count``
    equal steps, rounded down to whole percent, so that every learning run
    reaches every level. A run that stayed at chance reaches none: the report
    then gives a bound on its ratio.

    Returns:
        (levels, a sentence saying how they were chosen); no levels when no run
        rose above chance.
    """
    bests = [max((r.get("val_accuracy") or 0.0) for r in run.history)
             for run in runs if run.history]
    learned = [b for b in bests if b > CHANCE_ACCURACY + margin]
    if not learned:
        return (), (f"no run's per-epoch accuracy rose above chance "
                    f"({100 * CHANCE_ACCURACY:.0f}%) by {100 * margin:g} points, so there is "
                    "no level to time.")
    top = min(learned)
    levels = sorted({math.floor(100 * (CHANCE_ACCURACY + (top - CHANCE_ACCURACY) * k / count))
                     / 100 for k in range(1, count + 1)})
    levels = tuple(v for v in levels if v > CHANCE_ACCURACY)
    return levels, (f"chosen from the runs: {count} equal steps from chance "
                    f"({100 * CHANCE_ACCURACY:.0f}%) to {100 * top:.1f}%, the lowest best "
                    "per-epoch accuracy of the runs that learned, rounded down to whole "
                    "percent, so that every such run reaches every level.")


def parse_levels(values: list[str]) -> tuple[float, ...] | None:
    """--accuracy_levels as numbers in (0, 1); None (choose from the runs) when empty.

    Raises:
        UserError: not numbers, or outside (0, 1).
    """
    if not values:
        return None
    try:
        levels = tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"--accuracy_levels must be numbers, got {','.join(values)}.") from None
    if not all(0 < v < 1 for v in levels):
        raise UserError(f"--accuracy_levels must be fractions in (0, 1), got "
                        f"{','.join(values)}.")
    return levels


# What a run's recipe is not: the network, the seed (several seeds of one recipe are
# pooled) and how the run executed (rundir.EXECUTION_FIELDS).
NOT_RECIPE = ("model", "seed", *rundir.EXECUTION_FIELDS)


def recipe_of(run: Run) -> dict[str, Any]:
    """The run's training recipe: its config without the model, seed and execution
    fields, with TrainConfig's defaults for fields an older config.json lacks."""
    from keras_resnet_cifar.config import TrainConfig  # no TensorFlow

    defaults = json.loads(TrainConfig().to_json())
    return {k: v for k, v in {**defaults, **run.config}.items() if k not in NOT_RECIPE}


def recipes(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The distinct recipes of ``runs``, in the order they first appear."""
    out: list[dict[str, Any]] = []
    for run in runs:
        if recipe_of(run) not in out:
            out.append(recipe_of(run))
    return out


def recipe_number(run: Run, known: Sequence[dict[str, Any]]) -> int:
    """1-based number of the run's recipe among ``known`` (see :func:`recipes`)."""
    return list(known).index(recipe_of(run)) + 1


def run_summary(run: Run, levels: Sequence[float],
                recipe: int | None = None) -> dict[str, Any]:
    """One run's row: the numbers Table 1 aggregates.

    ``recipe``: the number of the run's recipe when the report holds several (Table 1
    never pools runs of different recipes); None when all runs share one.
    """
    metrics = run.metrics or {}
    last = run.history[-1] if run.history else {}
    eval_images = (run.config["eval_steps"] * run.config["batch_size"]
                   if run.config.get("eval_steps") else None)
    if run.evaluation:
        final, images, source = (run.evaluation["accuracy"], run.evaluation["images"],
                                 rundir.EVALUATION)
    elif metrics:
        final, images, source = (metrics.get("test_accuracy"), metrics.get("test_images"),
                                 rundir.METRICS)
    else:  # an unfinished run: its last per-epoch evaluation
        final, images, source = (last.get("val_accuracy"), eval_images,
                                 f"{rundir.HISTORY_JSON} (unfinished, {run.eval_set} set)")
    best = metrics.get("best") or {}
    row = {
        "model": run.model,
        **({"recipe": recipe} if recipe is not None else {}),
        "seed": run.seed,
        "architecture": "residual" if run.spec.residual else "plain",
        "layers": run.spec.depth,
        "params": metrics.get("params_trainable"),
        "epochs": int(last["epoch"]) if last else 0,
        "images_per_epoch": run.images_per_epoch,
        "train_images_per_epoch": run.images_per_epoch or run.train_set_size,
        "eval_images_per_epoch": eval_images,
        "final_test_accuracy": final,
        "final_test_images": images,
        "final_test_source": source,
        "best_test_accuracy": best.get("value"),
        "best_epoch": best.get("epoch"),
        "best_chosen_on": best.get("chosen_on", run.eval_set if best else None),
        "final_train_error": (1 - last["accuracy"]) if last.get("accuracy") is not None else None,
        "wall_time_s": metrics.get("wall_time_s"),
        "train_images_per_sec": metrics.get("train_images_per_sec"),
    }
    for level in levels:
        row[level_key(level)] = epochs_to_reach(run.history, level)
    return row


def first_of_each_model(runs: Sequence[Run]) -> dict[str, Run]:
    """{model: its run with the lowest seed} (the runs figures and layer findings use)."""
    first: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        first.setdefault(run.model, run)
    return first
