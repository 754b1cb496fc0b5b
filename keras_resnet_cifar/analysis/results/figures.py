"""The report's figures, {file stem: matplotlib Figure}, drawn by analysis/plots.py: each
seed faintly, the mean bold, ± one std over seeds (the reference comparison: ± SE), n in
the legend; seeds aligned on the curve steps all of them recorded."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar.analysis import plots
from keras_resnet_cifar.analysis.results.findings import gradient_log_ratio, stats_at
from keras_resnet_cifar.analysis.results.runs import Run, by_model


def xlabel(run: Run) -> str:
    n = run.images_per_epoch
    return f"epoch ({n:,} training images each)" if n else "epoch"


def curve_data(runs: Sequence[Run]) -> dict[str, Any] | None:
    """One network's curves: {"x", "train_error"/"test_error" (seeds x points, on the steps
    every seed recorded), "final_test_error" (per seed, or None), "n"}."""
    runs = [r for r in runs if r.curve_points]
    if not runs:
        return None
    steps = sorted(set.intersection(*({p["step"] for p in r.curve_points} for r in runs)))
    if not steps:
        return None
    rows = [{p["step"]: p for p in r.curve_points} for r in runs]
    run = runs[0]
    finals = [r.final_test_error for r in runs]
    return {"x": [s / run.steps_per_epoch * run.passes_per_epoch for s in steps],
            "train_error": [[row[s]["train_error"] for s in steps] for row in rows],
            "test_error": [[row[s]["test_error"] for s in steps] for row in rows],
            "final_test_error": None if None in finals else finals,
            "n": len(runs)}


def _curve_axis(run: Run) -> dict[str, Any]:
    """plots.error_curves' x axis for `run`: passes, iterations on top, lr drops dotted."""
    return {"xlabel": f"passes over the {run.train_set_size:,} training images",
            "steps_per_unit": run.steps_per_epoch / run.passes_per_epoch,
            "marks": [b * run.passes_per_epoch for b in run.config.get("lr_boundaries", [])
                      if b < run.config["epochs"]]}


def error_curves(runs: Sequence[Run], title: str | None = None) -> Any | None:
    """He et al.'s Figure 6 layout (plain left, residual right) from the curve points, in
    passes (iterations on the top axis), or None."""
    families: dict[str, dict[str, Any]] = {}
    first = None
    for model, group in by_model(runs).items():
        data = curve_data(group)
        if data is None:
            continue
        first = first or group[0]
        family = "Residual networks" if group[0].spec.residual else "Plain networks"
        families.setdefault(family, {})[model] = data
    if first is None:
        return None
    return plots.error_curves(
        families, **_curve_axis(first),
        title=title or "Error during training (dashed: training, solid: test; dotted "
                       "verticals: learning-rate drops)")


def reference_curves(project: Sequence[Run], reference: Sequence[Run]) -> Any | None:
    """One network's runs beside the reference trainer's (mean ± SE), or None."""
    mine, theirs = curve_data(project), curve_data(reference)
    if mine is None or theirs is None:
        return None
    run = project[0]
    return plots.error_curves(
        {"mean ± SE over seeds, each seed faint": {
            "keras_resnet_cifar": {**mine, "colour": plots.RESIDUAL_COLOUR},
            "reference (PyTorch)": {**theirs, "colour": "tab:red"}}},
        **_curve_axis(run), spread="se",
        title=f"{run.model}: this project vs the reference trainer")


def figures(runs: Sequence[Run]) -> dict[str, Any]:
    groups = by_model(runs)
    depths = sorted({r.spec.depth for r in runs})
    any_run = runs[0]
    curves_figure = error_curves(runs)
    have_curves = curves_figure is not None
    figs = {"error_curves": curves_figure} if have_curves else {}
    for depth in depths:
        pair = [groups[m] for m in (f"plain{depth}", f"resnet{depth}") if m in groups]
        if have_curves:
            fig = error_curves([r for g in pair for r in g],
                               title=f"{depth} layers: plain vs residual")
            if fig is not None:
                figs[f"curves_{depth}"] = fig
        else:
            # No curve points: per-epoch history of the lowest seed, as its title says.
            figs[f"curves_{depth}"] = plots.training_curves(
                {g[0].model: g[0].history for g in pair}, eval_set=any_run.eval_set,
                xlabel=xlabel(any_run),
                title=f"Training dynamics, {depth} layers (seed {pair[0][0].seed} only)")
        evaluated = [[r for r in g if r.evaluation] for g in pair]
        evaluated = [g for g in evaluated if g]
        if evaluated:
            n = sorted({len(g) for g in evaluated})
            figs[f"confusion_{depth}"] = plots.confusion_matrices(
                {g[0].model + (f" ({len(g)} seeds)" if len(g) > 1 else ""):
                 np.sum([np.asarray(r.evaluation["confusion_matrix"]) for r in g], axis=0)
                 for g in evaluated},
                evaluated[0][0].evaluation["class_names"],
                title=f"Confusion matrices on {evaluated[0][0].evaluation['images']:,} test "
                      "images, % of each true class"
                      + (f", counts summed over {'/'.join(map(str, n))} seeds"
                         if max(n) > 1 else ""))
    if not have_curves:
        plain = {m: g[0].history for m, g in groups.items() if not g[0].spec.residual}
        residual = {m: g[0].history for m, g in groups.items() if g[0].spec.residual}
        if plain and residual:
            figs["depth_sweep"] = plots.depth_sweep(
                plain, residual, xlabel=xlabel(any_run), eval_set=any_run.eval_set,
                title=f"Error vs epochs (thin dashed: training, bold: {any_run.eval_set}; "
                      "lowest seed of each network)")
    figs.update(layer_figures(runs))
    return figs


def _depth_first(groups: dict[str, Sequence[Run]]):
    """A sort key for the networks of `groups`: shallow first, plain before residual."""
    return lambda m: (groups[m][0].spec.depth, groups[m][0].spec.residual)


def layer_figures(runs: Sequence[Run]) -> dict[str, Any]:
    """Per-layer response std and gradient norms, every seed (mean ± std over seeds)."""
    groups = {m: [r for r in g if r.layer_stats] for m, g in by_model(runs).items()}
    groups = {m: g for m, g in groups.items() if g}
    figs = {}
    epochs = sorted({e["epoch"] for g in groups.values() for r in g
                     for e in r.layer_stats["epochs"]})
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
            for model in sorted(groups, key=_depth_first(groups)):
                rows = [row[key] for row in (stats_at(r, epoch) for r in groups[model]) if row]
                if rows:
                    lines[model] = rows
            panels[f"after epoch {epoch:g}" if epoch else "at initialisation"] = lines
        if not panels:
            continue
        figs[stem] = plots.per_layer(panels, ylabel=ylabel, log_scale=log, title=title)
        if key == "response_std":
            figs[f"{stem}_sorted"] = plots.per_layer(
                panels, ylabel=ylabel, sort_descending=True, title=title + ", sorted by magnitude")
    return figs | gradient_ratio_figure(groups)


def gradient_ratio_figure(groups: dict[str, Sequence[Run]]) -> dict[str, Any]:
    """The "gradient highway" finding's measure per network, seed and epoch."""
    series = {}
    for model in sorted(groups, key=_depth_first(groups)):
        by_epoch: dict[float, list[float]] = {}
        for run in groups[model]:
            for row in run.layer_stats["epochs"]:
                by_epoch.setdefault(row["epoch"], []).append(gradient_log_ratio(run, row["epoch"]))
        if by_epoch:
            series[model] = by_epoch
    if not series:
        return {}
    return {"gradient_ratio": plots.values_by_epoch(
        series, ylabel="log10(early / late gradient norm)", xlabel="epoch (0: at initialisation)",
        title="Early vs late layers' gradient norms (> 0: early larger)")}
