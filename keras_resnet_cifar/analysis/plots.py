"""The study's figures, drawn from data, as matplotlib Figures built without pyplot (no
global state, no backend change in a notebook), and a run directory's curves.png.

Errors and accuracies are drawn in percent; plain networks orange, residual ones blue
(colour-blind-safe; He et al.'s colours are not standard). Where a function takes one
value per point it also takes one row per seed: each seed is drawn faintly (gid "seed"),
the mean bold, and a band of ± one std (spread="std") or ± the standard error ("se")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from keras_resnet_cifar import run_files
from keras_resnet_cifar.config import TrainConfig

History = Sequence[Mapping[str, Any]]  # rows of history.json: epoch, loss, accuracy, ...

PLAIN_COLOUR, RESIDUAL_COLOUR = "tab:orange", "tab:blue"
# One colour per depth in the depth sweep (Figure 6 has four depths per family).
DEPTH_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                 "tab:brown", "tab:pink", "tab:gray")
DEPTH_STYLES = ("-", "--", "-.", ":")  # per depth, shallow to deep (4 depths in Fig. 6)


def _depth(label: str) -> int:
    """"resnet56 seed 0" -> 56; 0 when the label names no depth."""
    digits = "".join(c for c in label.split()[0] if c.isdigit()) if label.split() else ""
    return int(digits) if digits else 0


def family_colour(label: str) -> str:
    return PLAIN_COLOUR if label.lower().startswith("plain") else RESIDUAL_COLOUR


def _depth_styles(labels) -> dict[int, str]:
    depths = sorted({_depth(label) for label in labels})
    return {d: DEPTH_STYLES[i % len(DEPTH_STYLES)] for i, d in enumerate(depths)}


def _finish(fig: Figure, axes, title: str | None, legend: int = 8) -> Figure:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with no run yet (Table 1 in progress)
            ax.legend(fontsize=legend)
    if title:
        fig.suptitle(title)
    return fig


SEED_ALPHA = 0.3   # each seed's curve, under the mean
BAND_ALPHA = 0.15  # the band of ± std (or SE) over seeds
SPREADS = ("std", "se")


def _marker(x: Sequence[float]) -> str:
    return "o" if len(x) == 1 else ""  # a line through one point draws nothing


def seeds_mean_and_spread(values: Any, spread: str = "std"
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """(rows as seeds x points, mean over seeds, spread over seeds or None for one, n)."""
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}.")
    rows = np.atleast_2d(np.asarray(values, float))
    n, mean = len(rows), rows.mean(axis=0)
    if n < 2:
        return rows, mean, None, n
    sd = rows.std(axis=0, ddof=1)
    return rows, mean, (sd / np.sqrt(n) if spread == "se" else sd), n


def plot_seeds(ax, x: Sequence[float], values: Any, style: str, *, colour: str,
               linewidth: float, label: str, spread: str = "std", scale: float = 1.0) -> None:
    """Each seed faint, the mean bold, a band of ± spread; the legend says n and the spread."""
    x = np.asarray(x, float)
    rows, mean, band, n = seeds_mean_and_spread(values, spread)
    if n > 1:
        for row in rows:
            ax.plot(x, scale * row, style, color=colour, linewidth=0.6, alpha=SEED_ALPHA,
                    gid="seed", label="_seed")
        label = f"{label} (mean ± {spread}, n={n})"
    ax.plot(x, scale * mean, style, color=colour, linewidth=linewidth, marker=_marker(x),
            gid="mean", label=label)
    if band is not None:
        ax.fill_between(x, scale * (mean - band), scale * (mean + band), color=colour,
                        alpha=BAND_ALPHA, linewidth=0)


def _column(rows: History, key: str) -> tuple[np.ndarray, np.ndarray]:
    kept = [r for r in rows if r.get(key) is not None]
    return np.array([r["epoch"] for r in kept], float), np.array([r[key] for r in kept], float)


def training_curves(histories: Mapping[str, History], *, eval_set: str = "test",
                    xlabel: str = "epoch", title: str | None = None) -> Figure:
    """Accuracy (left) and loss (right) per epoch of each {label: history rows}, on the
    same axes (as He et al.'s Figure 1 pairs networks); training dashed, `eval_set` solid.
    The loss is the cross-entropy when the rows log it, else the loss with weight decay;
    on a log scale when it spans more than a factor of 100."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    # Newer histories log the cross-entropy apart from the weight-decay term; older
    # ones only the loss, which Keras computes with that term in training and test.
    pure = any("cross_entropy" in r for rows in histories.values() for r in rows)
    loss_keys = ("cross_entropy", "val_cross_entropy") if pure else ("loss", "val_loss")
    for i, (label, rows) in enumerate(histories.items()):
        colour = family_colour(label) if len(histories) <= 2 else DEPTH_COLOURS[i % 8]
        for ax, keys, scale in ((acc_ax, ("accuracy", "val_accuracy"), 100),
                                (loss_ax, loss_keys, 1)):
            for key, style, what in zip(keys, ("--", "-"), ("training", eval_set)):
                x, y = _column(rows, key)
                ax.plot(x, scale * y, style, color=colour, marker=_marker(x),
                        label=f"{label} {what}")
    values = np.concatenate([line.get_ydata() for line in loss_ax.lines] or [np.ones(1)])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() > 100 * values.min():
        loss_ax.set_yscale("log")  # one diverged epoch would flatten every other curve
    acc_ax.set(xlabel=xlabel, ylabel="accuracy (%)", title="Accuracy")
    loss_ax.set(xlabel=xlabel, ylabel="cross-entropy" if pure else "loss",
                title="Cross-entropy (training: running mean over the epoch)" if pure
                else "Loss: cross-entropy + weight-decay term")
    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, (acc_ax, loss_ax), title)


def confusion_matrices(matrices: Mapping[str, np.ndarray], class_names: Sequence[str],
                       *, title: str | None = None) -> Figure:
    """{label: counts (rows true class)} side by side, in % of the true class's images."""
    n = len(matrices)
    fig = Figure(figsize=(6.2 * n, 5.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    image = None
    for ax, (label, counts) in zip(axes, matrices.items()):
        counts = np.asarray(counts, float)
        totals = counts.sum(axis=1, keepdims=True)
        percent = 100 * np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
        for (i, j), value in np.ndenumerate(percent):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 50 else "black")
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, class_names, fontsize=8)
        accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
        ax.set(xlabel="predicted class", ylabel="true class",
               title=f"{label} (accuracy {accuracy:.1f}%)")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="% of the true class")
    return _finish(fig, (), title)


def depth_sweep(plain: Mapping[str, History], residual: Mapping[str, History], *,
                xlabel: str = "epoch", eval_set: str = "test", title: str | None = None,
                xlim=None, ylim=None, marks: Sequence[float] = ()) -> Figure:
    """He et al.'s Figure 6 from {label: history rows}, shallow to deep: plain nets left,
    residual right; training error thin and dashed, `eval_set` error bold; a colour per depth;
    `marks` dotted (lr drops). A panel without runs says so."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, runs, name in ((axes[0], plain, "plain networks"),
                           (axes[1], residual, "residual networks")):
        for x in marks:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        if not runs:
            ax.text(0.5, 0.5, "no run yet", transform=ax.transAxes, ha="center", color="grey")
        for i, (label, rows) in enumerate(runs.items()):
            colour = DEPTH_COLOURS[i % len(DEPTH_COLOURS)]
            for key, style, width, what in (("accuracy", "--", 0.9, "training"),
                                            ("val_accuracy", "-", 2.4, eval_set)):
                x, y = _column(rows, key)
                ax.plot(x, 100 * (1 - y), style, color=colour, linewidth=width,
                        marker=_marker(x), label=f"{label} {what}")
        ax.set(xlabel=xlabel, title=name.capitalize(), xlim=xlim, ylim=ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("error (%)")
    return _finish(fig, axes, title)


def error_curves(families: Mapping[str, Mapping[str, Mapping[str, Any]]], *,
                 xlabel: str = "passes over the training set",
                 steps_per_unit: float | None = None, marks: Sequence[float] = (),
                 title: str | None = None, spread: str = "std") -> Figure:
    """He et al.'s Figures 1 and 6 from points inside the runs: error against training time.

    `families` is {panel: {label: {"x", "train_error", "test_error", optionally
    "final_test_error", "colour"}}}, errors as fractions (one row per seed with several);
    the final error on the whole test set is a star at the end of the test curve.
    `steps_per_unit` adds a top axis of iterations; `marks` are dotted lines (lr drops)."""
    fig = Figure(figsize=(max(5.5 * len(families), 7.5), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(families), 1), sharey=True))
    for ax, (name, runs) in zip(axes, families.items()):
        for i, (label, curve) in enumerate(runs.items()):
            colour = curve.get("colour") or DEPTH_COLOURS[i % len(DEPTH_COLOURS)]
            x = np.asarray(curve["x"], float)
            plot_seeds(ax, x, curve["train_error"], "--", colour=colour, linewidth=1.0,
                       label=f"{label} training", spread=spread, scale=100)
            plot_seeds(ax, x, curve["test_error"], "-", colour=colour, linewidth=2.2,
                       label=f"{label} test", spread=spread, scale=100)
            final = curve.get("final_test_error")
            if final is not None and len(x):
                _, mean, band, n = seeds_mean_and_spread([final] if np.ndim(final) == 0
                                                         else [[v] for v in final], spread)
                ax.errorbar([x[-1]], 100 * mean, yerr=None if band is None else 100 * band,
                            fmt="*", color=colour, markersize=11, capsize=3,
                            label=f"{label} test, whole test set")
        for x in marks:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel=xlabel, title=name)
        if steps_per_unit:
            top = ax.secondary_xaxis("top", functions=(lambda v: v * steps_per_unit,
                                                       lambda v: v / steps_per_unit))
            top.set_xlabel("iterations")
    axes[0].set_ylabel("error (%)")
    return _finish(fig, axes[:len(families)], title, legend=7)


def per_layer(panels: Mapping[str, Mapping[str, Sequence[float]]], *, ylabel: str,
              log_scale: bool = False, sort_descending: bool = False,
              title: str | None = None) -> Figure:
    """{panel: {label: one value per layer (or a row per seed)}}: He et al.'s Figure 7
    (response std; `sort_descending` is its lower panel) and gradient norms per layer."""
    n = len(panels)
    fig = Figure(figsize=(5.5 * n, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True))
    # The same line style per depth in every panel; colour says plain or residual.
    styles = _depth_styles(label for lines in panels.values() for label in lines)
    for ax, (panel, lines) in zip(axes, panels.items()):
        for label, values in lines.items():
            values = np.atleast_2d(np.asarray(values, float))
            if sort_descending:
                values = -np.sort(-values, axis=1)
            style, x = styles[_depth(label)], np.arange(1, values.shape[1] + 1)
            if len(values) > 1:
                plot_seeds(ax, x, values, style, colour=family_colour(label), linewidth=1.5,
                           label=label)
            else:
                ax.plot(x, values[0], style, marker=".", markersize=3,
                        color=family_colour(label), label=label)
        ax.set(xlabel="layer index (sorted by magnitude)" if sort_descending
               else "layer index (input to output)", title=panel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_scale:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    return _finish(fig, axes[:len(panels)], title)


def values_by_epoch(series: Mapping[str, Mapping[float, Sequence[float]]], *, ylabel: str,
                    xlabel: str = "epoch", title: str | None = None) -> Figure:
    """{label: {epoch: one signed value per seed}}: seeds as dots, their mean a line, and 0."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    styles = _depth_styles(series)
    for label, by_epoch in series.items():
        epochs = sorted(by_epoch)
        colour = family_colour(label)
        for e in epochs:
            ax.plot([e] * len(by_epoch[e]), by_epoch[e], "o", color=colour, alpha=0.35,
                    markersize=4)
        ax.plot(epochs, [float(np.mean(by_epoch[e])) for e in epochs], styles[_depth(label)],
                color=colour, marker="o", linewidth=1.8,
                label=f"{label} (n = {max(len(v) for v in by_epoch.values())})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    return _finish(fig, (ax,), None)


def save(fig: Figure, path: str | os.PathLike, dpi: int = 130) -> list[Path]:
    """Writes `fig` as `<path>.png` and `<path>.svg`; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamps and fixed SVG element ids: the same data gives the same bytes,
    # so re-generated figures only show up in a diff when they changed.
    with matplotlib.rc_context({"svg.hashsalt": "keras_resnet_cifar"}):
        for suffix, metadata in ((".png", {"Software": None}), (".svg", {"Date": None})):
            fig.savefig(path.with_suffix(suffix), dpi=dpi, metadata=metadata)
    return [path.with_suffix(".png"), path.with_suffix(".svg")]


def save_run_curves(workdir: str | os.PathLike) -> Path | None:
    """Draws a run directory's curves.png from its history; None when it has no epoch yet."""
    saved = run_files.read_config(workdir)
    rows = run_files.read_history(workdir)
    if saved is None or not rows:
        return None
    config = TrainConfig.from_dict(saved)
    run_files.save_figure(training_curves({config.model: rows}, eval_set=config.eval_set,
                                          title=f"{config.model} (seed {config.seed})"),
                          workdir)
    return run_files.path(workdir, run_files.CURVES)
