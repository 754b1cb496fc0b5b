"""The report's figures, as {file stem: matplotlib Figure}, from loaded runs."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar import arch, plots  # arch, not models: no TensorFlow in the report
from keras_resnet_cifar.report.runs import Run, first_of_each_model


def xlabel(run: Run) -> str:
    """The x-axis label: an epoch, and how many training images it held when capped."""
    n = run.images_per_epoch
    return f"epoch ({n:,} training images each)" if n else "epoch"


def curve_xlabel(run: Run) -> str:
    """The x axis of the curve figure: passes over the run's training set."""
    return f"passes over the {run.train_set_size:,} training images"


def error_curves(runs: Sequence[Run]) -> Any | None:
    """He et al.'s Figure 1 / Figure 6 analogue from the runs' curve points, or None.

    Plain networks left, residual right, each depth a colour; x in passes over
    the training set (iterations on the top axis); the training error of each
    segment dashed, the test-subset error solid, the whole test set's final error a star.
    """
    first = [r for r in sorted(first_of_each_model(runs).values(),
                               key=lambda r: (r.spec.residual, r.spec.depth))
             if r.curve_points]
    if not first:
        return None
    families: dict[str, dict[str, Any]] = {}
    for run in first:
        points = run.curve_points
        family = "Residual networks" if run.spec.residual else "Plain networks"
        families.setdefault(family, {})[run.model] = {
            "x": [p["epoch"] * run.passes_per_epoch for p in points],
            "train_error": [p["train_error"] for p in points],
            "test_error": [p["test_error"] for p in points],
            "final_test_error": (1 - run.evaluation["accuracy"]) if run.evaluation else None}
    run = first[0]
    boundaries = [b * run.passes_per_epoch for b in run.config.get("lr_boundaries", [])
                  if b < run.config["epochs"]]
    return plots.error_curves(
        families, xlabel=curve_xlabel(run),
        steps_per_unit=run.steps_per_epoch / run.passes_per_epoch, marks=boundaries,
        title="Error during training (dashed: training, solid: test; "
              "dotted verticals: learning-rate drops)")


def figures(runs: Sequence[Run]) -> dict[str, Any]:
    """{file stem: matplotlib Figure} for the runs (the lowest seed of each model)."""
    first = first_of_each_model(runs)
    depths = sorted({r.spec.depth for r in first.values()})
    label = xlabel(next(iter(first.values())))
    eval_set = next(iter(first.values())).eval_set
    figs = {}
    curves_figure = error_curves(runs)
    if curves_figure is not None:
        figs["error_curves"] = curves_figure
    for depth in depths:
        pair = [first.get(f"plain{depth}"), first.get(f"resnet{depth}")]
        pair = [r for r in pair if r is not None]
        figs[f"curves_{depth}"] = plots.training_curves(
            {r.model: r.history for r in pair}, eval_set=eval_set, xlabel=label,
            title=f"Training dynamics, {depth} layers (seed {pair[0].seed})")
        evaluated = [r for r in pair if r.evaluation]
        if evaluated:
            figs[f"confusion_{depth}"] = plots.confusion_matrices(
                {r.model: np.asarray(r.evaluation["confusion_matrix"]) for r in evaluated},
                evaluated[0].evaluation["class_names"],
                title=f"Confusion matrices on {evaluated[0].evaluation['images']:,} test "
                      "images, % of each true class")
    plain = {r.model: r.history for r in sorted(first.values(), key=lambda r: r.spec.depth)
             if not r.spec.residual}
    residual = {r.model: r.history for r in sorted(first.values(), key=lambda r: r.spec.depth)
                if r.spec.residual}
    if plain and residual:
        figs["depth_sweep"] = plots.depth_sweep(
            plain, residual, xlabel=label, eval_set=eval_set,
            title=f"Error vs epochs (thin dashed: training, bold: {eval_set})")
    stats = {m: r.layer_stats for m, r in first.items() if r.layer_stats}
    if stats:
        epochs = sorted({e["epoch"] for s in stats.values() for e in s["epochs"]})
        for key, stem, ylabel, log, title in (
                ("response_std", "layer_response_std", "std of BN output", False,
                 "Layer responses (3x3 conv after BN, before ReLU/addition)"),
                ("gradient_norm", "layer_gradient_norm", "||dL/dkernel||_2", True,
                 "Gradient norm per layer (mean cross-entropy, one fixed batch)")):
            panels = {}
            # In inference mode BN at initialisation is the identity (moving averages 0
            # and 1), so responses "after BN" only mean something once trained.
            for epoch in [e for e in epochs if e > 0 or key == "gradient_norm"]:
                lines = {}
                for model in sorted(stats, key=lambda m: (arch.parse_name(m).depth,
                                                          arch.parse_name(m).residual)):
                    row = next((e for e in stats[model]["epochs"] if e["epoch"] == epoch), None)
                    if row:
                        lines[model] = row[key]
                panels[f"after epoch {epoch:g}" if epoch else "at initialisation"] = lines
            if not panels:
                continue
            figs[stem] = plots.per_layer(panels, ylabel=ylabel, log_scale=log, title=title)
            if key == "response_std":
                figs[f"{stem}_sorted"] = plots.per_layer(
                    panels, ylabel=ylabel, sort_descending=True,
                    title=title + ", sorted by magnitude")
    return figs
