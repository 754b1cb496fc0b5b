"""The study's report: Table 1, the derived findings, the figures, report.md.

    python -m keras_resnet_cifar.report runs/study/runs/* --out=runs/study/report

Reads finished run directories (see :mod:`keras_resnet_cifar.training`; the
``evaluation.json`` of :mod:`keras_resnet_cifar.evaluate` and the
``layer_stats.json`` of :mod:`keras_resnet_cifar.layer_stats` when present) and
writes into ``--out``:

    report.md            the report: setup, hardware, commands, table, findings, figures
    table1.md/.csv       one row per model: mean (± std over seeds) and n
    runs.csv             one row per run
    findings.json        every finding with its numbers and verdict
    figures/*.png/.svg   training curves, confusion matrices, depth sweep, layer stats

The library functions return data (rows, findings, figures); only
:func:`write_report` and the CLI write files.

Definitions. *Final test accuracy*: on the whole test set from evaluation.json
when the run was evaluated, else metrics.json's (possibly capped) test accuracy.
*Best test accuracy*: the highest per-epoch accuracy on the run's eval set,
which is the set named in metrics.json ``best.chosen_on`` (choosing it on the
test set makes it an optimistic number; the table says which). *Final training
error*: 100% minus the training accuracy of the last epoch (running mean over
its augmented batches). *Epochs to X%*: the first epoch whose per-epoch eval
accuracy reaches X.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar import fileio, models
from keras_resnet_cifar.errors import UserError

DEFAULT_LEVELS = (0.5, 0.8, 0.9)
PAPER_SEED_TABLE = {"plain20": 0.9084, "resnet20": 0.9195, "plain56": 0.8671,
                    "resnet56": 0.9325}  # the seed's Table 1, 200 epochs on a GPU


# --- Loading runs -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a run directory holds that the report uses."""

    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    eval_set: str
    metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    layer_stats: dict[str, Any] | None

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def spec(self) -> models.ArchSpec:
        return models.parse_name(self.model)

    @property
    def images_per_epoch(self) -> int | None:
        steps = self.config.get("steps_per_epoch")
        return steps * self.config["batch_size"] if steps else None


def load_run(path: str | os.PathLike) -> Run:
    """Reads a run directory.

    Raises:
        UserError: not a run directory (no config.json or no history.json).
    """
    path = Path(path)
    config = fileio.read_json(path / "config.json")
    history = fileio.read_json(path / "history.json")
    if config is None or history is None:
        raise UserError(f"{path} is not a run directory: it needs config.json and "
                        "history.json (written by keras_resnet_cifar.train).")
    try:
        models.parse_name(config.get("model"))
    except ValueError as e:
        raise UserError(f"{path}/config.json: {e}") from None
    return Run(path=path, config=config, history=history["epochs"],
               eval_set=history.get("eval_set", "test"),
               metrics=fileio.read_json(path / "metrics.json"),
               evaluation=fileio.read_json(path / "evaluation.json"),
               layer_stats=fileio.read_json(path / "layer_stats.json"))


# --- Per-run numbers and Table 1 ----------------------------------------------------------

def epochs_to_reach(history: Sequence[dict[str, Any]], level: float,
                    key: str = "val_accuracy") -> int | None:
    """The first epoch whose ``key`` is at least ``level``; None if none is."""
    for row in history:
        if row.get(key) is not None and row[key] >= level:
            return int(row["epoch"])
    return None


def _level_key(level: float) -> str:
    return f"epochs_to_{100 * level:g}pct"


def _train_set_size(config: dict[str, Any]) -> int:
    if config.get("dataset") == "synthetic":
        return int(config.get("synthetic_train_size", 0)) - config.get("validation_split", 0)
    return 50_000 - config.get("validation_split", 0)


def run_summary(run: Run, levels: Sequence[float] = DEFAULT_LEVELS) -> dict[str, Any]:
    """One run's row: the numbers Table 1 aggregates."""
    metrics = run.metrics or {}
    last = run.history[-1] if run.history else {}
    eval_images = (run.config["eval_steps"] * run.config["batch_size"]
                   if run.config.get("eval_steps") else None)
    if run.evaluation:
        final, images, source = (run.evaluation["accuracy"], run.evaluation["images"],
                                 "evaluation.json")
    elif metrics:
        final, images, source = (metrics.get("test_accuracy"), metrics.get("test_images"),
                                 "metrics.json")
    else:  # an unfinished run: its last per-epoch evaluation
        final, images, source = (last.get("val_accuracy"), eval_images,
                                 f"history.json (unfinished, {run.eval_set} set)")
    best = metrics.get("best") or {}
    row = {
        "model": run.model,
        "seed": run.seed,
        "architecture": "residual" if run.spec.residual else "plain",
        "layers": run.spec.depth,
        "params": metrics.get("params_trainable"),
        "epochs": int(last["epoch"]) if last else 0,
        "images_per_epoch": run.images_per_epoch,
        "train_images_per_epoch": run.images_per_epoch or _train_set_size(run.config),
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
        row[_level_key(level)] = epochs_to_reach(run.history, level)
    return row


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None, None, 0
    std = float(np.std(kept, ddof=1)) if len(kept) > 1 else None
    return float(np.mean(kept)), std, len(kept)


NUMERIC = ("final_test_accuracy", "best_test_accuracy", "final_train_error")


def table1(summaries: Sequence[dict[str, Any]],
           levels: Sequence[float] = DEFAULT_LEVELS) -> list[dict[str, Any]]:
    """Aggregates run rows per model: mean, sample std (n > 1) and n.

    Rows are ordered plain before residual, shallow before deep. For "epochs to
    X%", the mean is over the runs that reached X and ``reached`` counts them.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        by_model.setdefault(s["model"], []).append(s)
    rows = []
    for model, runs in sorted(by_model.items(), key=lambda kv: (
            kv[1][0]["architecture"] != "plain", kv[1][0]["layers"])):
        first = runs[0]
        row = {"model": model, "architecture": first["architecture"],
               "layers": first["layers"], "params": first["params"], "n": len(runs),
               "seeds": sorted(r["seed"] for r in runs),
               "epochs": first["epochs"], "final_test_images": first["final_test_images"],
               "train_images_per_epoch": first["train_images_per_epoch"],
               "eval_images_per_epoch": first["eval_images_per_epoch"],
               "best_chosen_on": first["best_chosen_on"]}
        for key in NUMERIC:
            row[f"{key}_mean"], row[f"{key}_std"], _ = _mean_std([r[key] for r in runs])
        for level in levels:
            key = _level_key(level)
            mean, std, reached = _mean_std([r[key] for r in runs])
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_reached"] = mean, std, reached
        rows.append(row)
    return rows


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _stat(row: dict[str, Any], key: str, spread: bool = True) -> str:
    """A row's mean (± std) of ``key`` in percent."""
    return _pct(row[f"{key}_mean"], row[f"{key}_std"] if spread else None)


def _epochs(mean, std, reached, n) -> str:
    if not reached:
        return "not reached"
    text = f"{mean:g}" if std is None else f"{mean:.1f} ± {std:.1f}"
    return text if reached == n else f"{text} ({reached} of {n} runs)"


def table1_markdown(rows: Sequence[dict[str, Any]],
                    levels: Sequence[float] = DEFAULT_LEVELS) -> str:
    """Table 1 as a Markdown table (accuracies and errors in %)."""
    chosen = sorted({str(r["best_chosen_on"]) for r in rows})
    head = (["architecture", "model", "layers", "params", "n",
             "final test acc. (%)", f"best test acc. (%), chosen on {'/'.join(chosen)}",
             "final training error (%)"]
            + [f"epochs to {100 * level:g}% {'/'.join(chosen)} acc. (per-epoch eval)"
               for level in levels])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["architecture"], r["model"], str(r["layers"]),
                 f"{r['params']:,}" if r["params"] else "n/a", str(r["n"]),
                 _pct(r["final_test_accuracy_mean"], r["final_test_accuracy_std"]),
                 _pct(r["best_test_accuracy_mean"], r["best_test_accuracy_std"]),
                 _pct(r["final_train_error_mean"], r["final_train_error_std"])]
        for level in levels:
            key = _level_key(level)
            cells.append(_epochs(r[f"{key}_mean"], r[f"{key}_std"], r[f"{key}_reached"], r["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of dicts as CSV (columns: the keys of the first row; lists joined by ';')."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else
                         ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


# --- Findings -----------------------------------------------------------------------------

def _finding(claim: str, verdict: str, evidence: str, **numbers) -> dict[str, Any]:
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "numbers": numbers}


def difference_se(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[float | None, str]:
    """The standard error of a's mean ``key`` minus b's, and how it was estimated.

    Over seeds, sqrt(s_a^2/n_a + s_b^2/n_b), when both rows have n > 1;
    otherwise the binomial standard error of two proportions measured on the
    rows' image counts (the test set for test accuracy, the last epoch's
    training images for training error), which is all one run can say.
    None when neither is available.
    """
    if a[f"{key}_std"] is not None and b[f"{key}_std"] is not None:
        se = math.sqrt(a[f"{key}_std"] ** 2 / a["n"] + b[f"{key}_std"] ** 2 / b["n"])
        return se, f"standard error over seeds {100 * se:.2f} points"
    count = "final_test_images" if "test" in key else "train_images_per_epoch"
    na, nb = a.get(count) or 0, b.get(count) or 0
    if not na or not nb:
        return None, "no noise estimate"
    ma, mb = a[f"{key}_mean"], b[f"{key}_mean"]
    se = math.sqrt(ma * (1 - ma) / na + mb * (1 - mb) / nb)
    return se, (f"one run each: binomial standard error {100 * se:.2f} points on "
                f"{na:,} and {nb:,} images")


def verdict(diff: float, se: float | None) -> str:
    """"supported" beyond two standard errors, "inconclusive" with the right sign
    only, "not supported" with the wrong sign (``diff`` signed as the claim)."""
    if diff <= 0:
        return "not supported"
    return "supported" if se is None or diff > 2 * se else "inconclusive"


def compare(a: dict[str, Any], b: dict[str, Any], key: str,
            expected_sign: int) -> tuple[str, str]:
    """Verdict on "a's mean ``key`` minus b's has ``expected_sign``", and a note."""
    diff = a[f"{key}_mean"] - b[f"{key}_mean"]
    se, how = difference_se(a, b, key)
    return verdict(expected_sign * diff, se), f"difference {100 * diff:+.2f} points, {how}"


CHANCE_ERROR = 0.9  # 10 classes


def _at_chance(row: dict[str, Any]) -> str:
    """A warning when a row's training error is within two standard errors of chance."""
    n = row.get("train_images_per_epoch")
    error = row["final_train_error_mean"]
    if not n or error is None:
        return ""
    if error < CHANCE_ERROR - 2 * math.sqrt(CHANCE_ERROR * (1 - CHANCE_ERROR) / n):
        return ""
    return (f" {row['model']}'s training error is at chance level ({100 * CHANCE_ERROR:.0f}%): "
            "it had not started learning, an extreme form of the degradation the claim "
            "describes.")


def _by_model(rows):
    return {r["model"]: r for r in rows}


def findings(rows: Sequence[dict[str, Any]],
             layer_stats: dict[str, dict[str, Any]] | None = None,
             levels: Sequence[float] = DEFAULT_LEVELS) -> list[dict[str, Any]]:
    """The seed's claims, each measured on Table 1's rows (and the layer statistics).

    Args:
        rows: :func:`table1` rows.
        layer_stats: {model: layer_stats.json} for one seed, when recorded.
        levels: the accuracy levels of the "epochs to X%" columns.

    Returns:
        Dicts with "claim", "verdict" ("supported", "inconclusive" (the
        expected sign within two standard errors), "not supported" or "not
        measured"), "evidence" (a sentence with the numbers) and "numbers".
    """
    m = _by_model(rows)
    plain = sorted((r for r in rows if r["architecture"] == "plain"), key=lambda r: r["layers"])
    res = sorted((r for r in rows if r["architecture"] == "residual"), key=lambda r: r["layers"])
    out = []

    # Degradation: the deeper plain net has the higher *training* error.
    if len(plain) >= 2:
        lo, hi = plain[0], plain[-1]
        outcome, note = compare(hi, lo, "final_train_error", +1)
        out.append(_finding(
            f"Degradation: {hi['model']} has a higher final training error than {lo['model']}",
            outcome,
            f"final training error {hi['model']} {_stat(hi, 'final_train_error')}% "
            f"vs {lo['model']} {_stat(lo, 'final_train_error')}% "
            f"(n = {hi['n']}, {lo['n']}; {note}); final test accuracy "
            f"{_stat(hi, 'final_test_accuracy', False)}% vs "
            f"{_stat(lo, 'final_test_accuracy', False)}%." + _at_chance(hi),
            deep=hi["model"], shallow=lo["model"],
            deep_train_error=hi["final_train_error_mean"],
            shallow_train_error=lo["final_train_error_mean"],
            deep_test_accuracy=hi["final_test_accuracy_mean"],
            shallow_test_accuracy=lo["final_test_accuracy_mean"]))
    else:
        out.append(_finding("Degradation: the deeper plain net trains worse", "not measured",
                            "needs plain nets of two depths."))

    # Residual vs plain at each depth.
    gaps = {}
    for p in plain:
        r = m.get(f"resnet{p['layers']}")
        if r is None:
            continue
        outcome, note = compare(r, p, "final_test_accuracy", +1)
        gap = r["final_test_accuracy_mean"] - p["final_test_accuracy_mean"]
        train_gap = p["final_train_error_mean"] - r["final_train_error_mean"]
        gaps[p["layers"]] = (gap, train_gap, r, p)
        out.append(_finding(
            f"At depth {p['layers']}, the residual net is more accurate than the plain one",
            outcome,
            f"final test accuracy {r['model']} {_stat(r, 'final_test_accuracy')}% "
            f"vs {p['model']} {_stat(p, 'final_test_accuracy')}% "
            f"({note}); final training error "
            f"{_stat(r, 'final_train_error', False)}% vs {_stat(p, 'final_train_error', False)}%.",
            depth=p["layers"], residual_test_accuracy=r["final_test_accuracy_mean"],
            plain_test_accuracy=p["final_test_accuracy_mean"], test_accuracy_gap=gap,
            training_error_gap=train_gap))

    # The gap grows with depth.
    if len(gaps) >= 2:
        shallow, deep = min(gaps), max(gaps)
        g_lo, g_hi = gaps[shallow][0], gaps[deep][0]
        t_lo, t_hi = gaps[shallow][1], gaps[deep][1]
        se_lo, _ = difference_se(gaps[shallow][2], gaps[shallow][3], "final_test_accuracy")
        se_hi, how = difference_se(gaps[deep][2], gaps[deep][3], "final_test_accuracy")
        se = math.hypot(se_lo, se_hi) if se_lo is not None and se_hi is not None else None
        out.append(_finding(
            "The residual-minus-plain gap grows with depth",
            verdict(g_hi - g_lo, se),
            f"test accuracy gap (residual - plain) {100 * g_lo:+.2f} points at depth {shallow}, "
            f"{100 * g_hi:+.2f} at depth {deep}, growth {100 * (g_hi - g_lo):+.2f} points "
            + (f"(standard error {100 * se:.2f}); " if se is not None else "; ")
            + f"training error gap (plain - residual) {100 * t_lo:+.2f} and "
            f"{100 * t_hi:+.2f} points.",
            shallow=shallow, deep=deep, test_gap_shallow=g_lo, test_gap_deep=g_hi,
            train_gap_shallow=t_lo, train_gap_deep=t_hi))
    else:
        out.append(_finding("The residual-minus-plain gap grows with depth", "not measured",
                            "needs plain/residual pairs at two depths."))

    # Deeper residual nets are better (no degradation).
    if len(res) >= 2:
        lo, hi = res[0], res[-1]
        outcome, note = compare(hi, lo, "final_test_accuracy", +1)
        out.append(_finding(
            "No degradation with residual connections: "
            f"{hi['model']} is more accurate than {lo['model']}",
            outcome,
            f"final test accuracy {_stat(hi, 'final_test_accuracy')}% "
            f"vs {_stat(lo, 'final_test_accuracy')}% ({note}); "
            f"final training error {_stat(hi, 'final_train_error', False)}% vs "
            f"{_stat(lo, 'final_train_error', False)}%.",
            deep_test_accuracy=hi["final_test_accuracy_mean"],
            shallow_test_accuracy=lo["final_test_accuracy_mean"]))

    # "2x faster convergence": epochs to each accuracy level.
    for depth, (_, _, r, p) in sorted(gaps.items()):
        parts, ratios = [], []
        for level in levels:
            key = _level_key(level)
            er, ep = r[f"{key}_mean"], p[f"{key}_mean"]
            if er is None:
                parts.append(f"{100 * level:g}%: neither reached" if ep is None
                             else f"{100 * level:g}%: only the plain net reached it ({ep:g})")
                continue
            if ep is None:
                bound = (p["epochs"] + 1) / er
                ratios.append(bound)
                parts.append(f"{100 * level:g}%: residual {er:g} epochs, plain not within "
                             f"{p['epochs']} (ratio > {bound:.2f})")
            else:
                ratios.append(ep / er)
                parts.append(f"{100 * level:g}%: residual {er:g}, plain {ep:g} epochs "
                             f"(ratio {ep / er:.2f})")
        outcome = ("not measured" if not ratios else
                    "supported" if float(np.median(ratios)) >= 2 else "not supported")
        n_eval = p["eval_images_per_epoch"]
        noise = (f" Each per-epoch accuracy is measured on {n_eval:,} images (binomial "
                 f"standard error {100 * math.sqrt(0.25 / n_eval):.1f} points at 50%), which "
                 "limits how precisely these epoch counts are known." if n_eval else "")
        out.append(_finding(
            f"At depth {depth}, the residual net converges at least 2x faster "
            "(epochs to reach each test accuracy level)",
            outcome, "; ".join(parts) + (f"; median ratio {np.median(ratios):.2f}."
                                          if ratios else ".") + noise,
            depth=depth, ratios=ratios))

    out.extend(layer_findings(layer_stats or {}))
    return out


def _early_late_ratio(names: Sequence[str], norms: Sequence[float]) -> float:
    """Median gradient norm of the first third of conv layers over that of the last third."""
    conv = [v for n, v in zip(names, norms) if n != "logits"]
    third = max(1, len(conv) // 3)
    return float(np.median(conv[:third]) / max(np.median(conv[-third:]), 1e-30))


def layer_findings(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """He et al.'s Figure 7 and the "gradient highway", per depth, from layer_stats.json.

    Args:
        stats: {model name: its layer_stats.json}.
    """
    out = []
    depths = sorted({models.parse_name(k).depth for k in stats})
    for depth in depths:
        p, r = stats.get(f"plain{depth}"), stats.get(f"resnet{depth}")
        if not p or not r:
            continue
        common = sorted({e["epoch"] for e in p["epochs"]} & {e["epoch"] for e in r["epochs"]})
        trained = [e for e in common if e > 0]
        if trained:
            last = trained[-1]
            ps = next(e for e in p["epochs"] if e["epoch"] == last)["response_std"]
            rs = next(e for e in r["epochs"] if e["epoch"] == last)["response_std"]
            pm, rm = float(np.mean(ps)), float(np.mean(rs))
            out.append(_finding(
                f"At depth {depth}, residual functions respond more weakly than plain layers "
                "(He et al., Figure 7)",
                "supported" if rm < pm else "not supported",
                f"after epoch {last}: mean std of the 3x3 layers' BN outputs "
                f"resnet{depth} {rm:.3f} vs plain{depth} {pm:.3f} (median {np.median(rs):.3f} "
                f"vs {np.median(ps):.3f}; {len(rs)} layers each; one fixed batch).",
                depth=depth, epoch=last, residual_mean_std=rm, plain_mean_std=pm))
        for epoch in common:
            pe = next(e for e in p["epochs"] if e["epoch"] == epoch)
            re_ = next(e for e in r["epochs"] if e["epoch"] == epoch)
            pr = _early_late_ratio(p["gradient_layers"], pe["gradient_norm"])
            rr = _early_late_ratio(r["gradient_layers"], re_["gradient_norm"])
            closer = abs(math.log10(rr)) < abs(math.log10(pr))
            out.append(_finding(
                f"At depth {depth}, epoch {epoch}: gradients reach the early layers more "
                "evenly in the residual net (the 'gradient highway')",
                "supported" if closer else "not supported",
                f"median kernel-gradient norm of the first third of conv layers over the "
                f"last third: resnet{depth} {rr:.3g}, plain{depth} {pr:.3g} (1 = even; "
                f"the residual ratio is {'closer to' if closer else 'not closer to'} 1).",
                depth=depth, epoch=epoch, residual_ratio=rr, plain_ratio=pr))
    return out


# --- Figures ------------------------------------------------------------------------------

def _xlabel(run: Run) -> str:
    n = run.images_per_epoch
    return f"epoch ({n:,} training images each)" if n else "epoch"


def figures(runs: Sequence[Run]) -> dict[str, Any]:
    """{file stem: matplotlib Figure} for the runs (the lowest seed of each model)."""
    from keras_resnet_cifar import plots

    first: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        first.setdefault(run.model, run)
    depths = sorted({r.spec.depth for r in first.values()})
    xlabel = _xlabel(next(iter(first.values())))
    eval_set = next(iter(first.values())).eval_set
    figs = {}
    for depth in depths:
        pair = [first.get(f"plain{depth}"), first.get(f"resnet{depth}")]
        pair = [r for r in pair if r is not None]
        figs[f"curves_{depth}"] = plots.training_curves(
            {r.model: r.history for r in pair}, eval_set=eval_set, xlabel=xlabel,
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
            plain, residual, xlabel=xlabel, eval_set=eval_set,
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
                for model in sorted(stats, key=lambda m: (models.parse_name(m).depth,
                                                          models.parse_name(m).residual)):
                    row = next((e for e in stats[model]["epochs"] if e["epoch"] == epoch), None)
                    if row:
                        lines[model] = row[key]
                panels[f"after epoch {epoch}" if epoch else "at initialisation"] = lines
            if not panels:
                continue
            figs[stem] = plots.per_layer(panels, ylabel=ylabel, log_scale=log, title=title)
            if key == "response_std":
                figs[f"{stem}_sorted"] = plots.per_layer(
                    panels, ylabel=ylabel, sort_descending=True,
                    title=title + ", sorted by magnitude")
    return figs


# --- report.md ------------------------------------------------------------------------------

CAPTIONS = {
    "curves": "Training dynamics: accuracy (left) and loss (right; the cross-entropy when "
              "the history has it, else Keras' loss including the weight-decay term); "
              "dashed training (running mean over augmented batches), solid {eval_set}.",
    "confusion": "Confusion matrices on the full test set, rows normalised to 100%.",
    "depth_sweep": "He et al.'s Figure 6 layout: error vs epochs; thin dashed training, "
                   "bold {eval_set}; plain left, residual right.",
    "layer_response_std": "He et al.'s Figure 7: std of each 3x3 layer's output after BN "
                          "(inference mode, one fixed batch of training images), input to "
                          "output, at the recorded epochs after initialisation (BN in "
                          "inference mode is the identity before training).",
    "layer_response_std_sorted": "The same, each curve sorted by magnitude.",
    "layer_gradient_norm": "L2 norm of the gradient of the mean cross-entropy w.r.t. each "
                           "conv/dense kernel on one fixed batch of training images (training "
                           "mode), log scale.",
}


def _train_command(config: dict[str, Any]) -> str:
    from keras_resnet_cifar.config import TrainConfig

    defaults = dataclasses.asdict(TrainConfig())
    parts = ["python -m keras_resnet_cifar.train"]
    for key, value in config.items():
        if key in defaults and value != defaults[key] and not (
                key == "lr_boundaries" and list(value) == list(defaults[key])):
            value = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"--{key}={value}")
    return " ".join(parts)


def _schedule(config: dict[str, Any]) -> str:
    steps = config.get("steps_per_epoch")
    epoch = (f"{steps} steps x {config['batch_size']} = {steps * config['batch_size']:,} "
             "shuffled, augmented training images" if steps else "one pass over the training set")
    warm = (f"{config['warmup_learning_rate']} for {config['warmup_epochs']} epoch(s), then "
            if config.get("warmup_epochs") else "")
    return (f"{config['epochs']} epochs, an epoch being {epoch}; SGD momentum "
            f"{config['momentum']}, weight decay {config['weight_decay']}, batch "
            f"{config['batch_size']}; learning rate {warm}{config['learning_rate']}, x"
            f"{config['lr_decay']} after epochs {', '.join(map(str, config['lr_boundaries']))}; "
            f"per-epoch evaluation on "
            + (f"the first {config['eval_steps'] * config['batch_size']:,} images of the "
               f"{'validation' if config.get('validation_split') else 'test'} set"
               if config.get("eval_steps") else "the whole eval set") + ".")


def render_markdown(runs: Sequence[Run], rows: Sequence[dict[str, Any]],
                    found: Sequence[dict[str, Any]], figure_stems: Sequence[str],
                    levels: Sequence[float], command: str | None = None) -> str:
    """report.md's text."""
    first = sorted(runs, key=lambda r: (r.spec.residual, r.spec.depth, r.seed))
    metrics = next((r.metrics for r in first if r.metrics), {}) or {}
    eval_set = first[0].eval_set
    lines = ["# Plain vs residual networks on CIFAR-10: the study", ""]
    seen_images = [r.images_per_epoch * len(r.history) if r.images_per_epoch else None
                   for r in first]
    if any(s is not None and s < 50000 * 100 for s in seen_images):
        total = max(s for s in seen_images if s is not None)
        lines += [f"> **Reduced schedule.** Each run saw at most {total:,} training images "
                  f"({total / 50000:.2f} passes over the 50,000), not the paper's 200 "
                  "epochs: these numbers show early training only and are not comparable "
                  "with the paper's Table 1, which needs the full schedule (a GPU).", ""]
    lines += ["## Setup", ""]
    configs = {json.dumps({k: v for k, v in r.config.items() if k not in ("model", "seed")},
                          sort_keys=True) for r in first}
    lines.append(f"- Runs: {len(runs)} ({', '.join(f'{r.model} seed {r.seed}' for r in first)}); "
                 + ("all with the same recipe." if len(configs) == 1 else
                    "**recipes differ between runs** (see each config.json)."))
    lines.append(f"- Schedule: {_schedule(first[0].config)}")
    counts = sorted({r["final_test_images"] for r in rows if r["final_test_images"]})
    lines.append(f"- Data: {metrics.get('data_source', 'n/a')}; final test numbers on "
                 f"{' / '.join(f'{c:,}' for c in counts) or 'n/a'} test images"
                 + (" (keras_resnet_cifar.evaluate)." if all(r.evaluation for r in first)
                    else " (see runs.csv, final_test_source)."))
    lines.append(f"- Hardware: {metrics.get('cpu', 'n/a')}, {metrics.get('cpu_cores', '?')} "
                 f"cores, GPUs: {', '.join(metrics.get('gpus') or []) or 'none'}; TensorFlow "
                 f"{metrics.get('tensorflow', '?')}, Keras {metrics.get('keras', '?')}, "
                 f"Python {metrics.get('python', '?')}.")
    lines.append("- Time per run (training epochs, wall clock, median training img/s): "
                 + "; ".join(f"{r.model} {r.metrics['wall_time_s'] / 60:.1f} min, "
                             f"{r.metrics.get('train_images_per_sec') or 0:.0f} img/s"
                             for r in first if r.metrics) + ".")
    lines += ["", "## Commands", ""]
    if command:
        lines += ["The command that wrote this report:", "", "```",
                  command, "```", ""]
    lines += ["Each run is equivalent to:", "", "```"]
    lines += [f"{_train_command(r.config)} --model_dir={r.path.name}" for r in first]
    lines += ["```", "", "## Table 1", "",
              f"Mean ± sample std over seeds where n > 1. \"Best\" is the highest "
              f"per-epoch accuracy on the set named in the header ({eval_set}"
              + (f", {first[0].config['eval_steps'] * first[0].config['batch_size']:,} images"
                 if first[0].config.get("eval_steps") else "")
              + "), as are the epochs to each accuracy level; when that is the test set, "
              "\"best\" is an optimistic, test-selected number. Seed's Table 1 "
              "(200 epochs): " + ", ".join(f"{k} {100 * v:.2f}%"
                                           for k, v in PAPER_SEED_TABLE.items()) + ".", "",
              table1_markdown(rows, levels), "Also as [table1.csv](table1.csv); per run: "
              "[runs.csv](runs.csv).", "", "## Findings", ""]
    for f in found:
        lines.append(f"- **{f['verdict'].upper()}**: {f['claim']}. {f['evidence']}")
    lines += ["", "Verdicts compare the measured numbers only; with one seed per model a "
              "small difference may be noise.", "", "## Figures", ""]
    for stem in figure_stems:
        kind = stem.rsplit("_", 1)[0] if stem.split("_")[-1].isdigit() else stem
        caption = CAPTIONS.get(kind, stem).format(eval_set=eval_set)
        lines += [f"![{stem}](figures/{stem}.png)", "", f"*{caption}* "
                  f"([SVG](figures/{stem}.svg))", ""]
    return "\n".join(lines)


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 accuracy_levels: Sequence[float] = DEFAULT_LEVELS,
                 command: str | None = None) -> Path:
    """Loads the runs, writes tables, findings, figures and report.md into ``out``.

    Returns:
        The path of report.md.

    Raises:
        UserError: no run directories, or one that is not a run.
    """
    if not run_dirs:
        raise UserError("No run directories given.")
    from keras_resnet_cifar import plots

    runs = [load_run(d) for d in run_dirs]
    out = Path(out)
    summaries = [run_summary(r, accuracy_levels) for r in runs]
    rows = table1(summaries, accuracy_levels)
    first_stats = {}
    for run in sorted(runs, key=lambda r: r.seed):
        if run.layer_stats and run.model not in first_stats:
            first_stats[run.model] = run.layer_stats
    found = findings(rows, first_stats, accuracy_levels)
    figs = figures(runs)
    for stem, fig in figs.items():
        plots.save(fig, out / "figures" / stem)
    fileio.write_text(out / "table1.md", table1_markdown(rows, accuracy_levels))
    fileio.write_text(out / "table1.csv", to_csv(rows))
    fileio.write_text(out / "runs.csv", to_csv(summaries))
    fileio.write_json(out / "findings.json", found)
    text = render_markdown(runs, rows, found, list(figs), accuracy_levels, command)
    fileio.write_text(out / "report.md", text)
    return out / "report.md"


def define_flags() -> None:
    """The report CLI's flags."""
    from absl import flags

    flags.DEFINE_string("out", None, "Folder for report.md, tables and figures.")
    flags.DEFINE_list("accuracy_levels", [str(v) for v in DEFAULT_LEVELS],
                      "Test accuracies whose first epoch Table 1 gives.")


def main(argv):
    import sys

    from absl import flags, logging

    FLAGS = flags.FLAGS
    if not FLAGS.out:
        raise UserError("--out is required: the folder the report goes to.")
    try:
        levels = tuple(float(v) for v in FLAGS.accuracy_levels)
    except ValueError:
        raise UserError(f"--accuracy_levels must be numbers, got "
                        f"{FLAGS.accuracy_levels}.") from None
    path = write_report(argv[1:], FLAGS.out, accuracy_levels=levels,
                        command=shlex.join(["python", "-m", "keras_resnet_cifar.report",
                                            *sys.argv[1:]]))
    logging.info("wrote %s", path)


if __name__ == "__main__":
    from absl import app

    from keras_resnet_cifar.errors import run_cli

    define_flags()
    app.run(run_cli(main))
