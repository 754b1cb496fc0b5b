"""Which runs a report may pool: runs of one training recipe only (every TrainConfig field
but NOT_RECIPE)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from keras_resnet_cifar.analysis.results.runs import Run
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar import run_files

# What a run's recipe is not: the network, the seed (several seeds of one recipe are
# pooled), how the run executed (run_files.EXECUTION_FIELDS) and which trainer ran it.
NOT_RECIPE = ("model", "seed", "trainer", *run_files.EXECUTION_FIELDS)


def recipe_of(run: Run) -> dict[str, Any]:
    """The run's config without NOT_RECIPE, with defaults for fields older runs lack."""
    defaults = json.loads(TrainConfig().to_json())
    return {k: v for k, v in {**defaults, **run.config}.items() if k not in NOT_RECIPE}


def recipes(runs: Sequence[Run]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for run in runs:
        if recipe_of(run) not in out:
            out.append(recipe_of(run))
    return out


def recipe_differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    """"epochs 3 vs 1, lr_boundaries [1.2, 1.8] vs [80, 120]": where two recipes differ."""
    return ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b))
                     if a.get(k) != b.get(k))


def check_one_recipe(runs: Sequence[Run], what: str = "runs") -> dict[str, Any]:
    """The recipe all `runs` share; UserError naming a run of each of two recipes."""
    known = recipes(runs)
    if len(known) > 1:
        b = next(r for r in runs if recipe_of(r) == known[1])  # known[0] is runs[0]'s
        raise UserError(
            f"The {what} were trained with {len(known)} different recipes, which a report "
            f"never pools: {runs[0].path} and {b.path} differ in "
            f"{recipe_differences(known[0], known[1])}; report each recipe's runs separately.")
    return known[0] if known else {}
