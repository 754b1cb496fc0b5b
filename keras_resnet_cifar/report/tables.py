"""Table 1: one row per model, mean (± sample std over seeds) and n, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar.report.runs import level_key

def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None, None, 0
    std = float(np.std(kept, ddof=1)) if len(kept) > 1 else None
    return float(np.mean(kept)), std, len(kept)


NUMERIC = ("final_test_accuracy", "best_test_accuracy", "final_train_error")
# Networks that He et al. (2016) show only in their Figure 6 curves, without a number.
FIGURE_6_ONLY = ("plain20", "plain32", "plain44", "plain56")


def table1(summaries: Sequence[dict[str, Any]],
           levels: Sequence[float]) -> list[dict[str, Any]]:
    """Aggregates run rows per model: mean, sample std (n > 1) and n.

    Rows are ordered plain before residual, shallow before deep. For "epochs to
    X%", the mean is over the runs that reached X and ``reached`` counts them.
    Runs are pooled only with runs of the same model and the same recipe: when the
    summaries carry a ``recipe`` number, each (model, recipe) is a row of its own.
    """
    by_model: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for s in summaries:
        by_model.setdefault((s["model"], s.get("recipe")), []).append(s)
    rows = []
    for (model, recipe), runs in sorted(by_model.items(), key=lambda kv: (
            kv[1][0]["architecture"] != "plain", kv[1][0]["layers"], kv[0][1] or 0)):
        first = runs[0]
        row = {"model": model, **({"recipe": recipe} if recipe is not None else {}),
               "architecture": first["architecture"],
               "layers": first["layers"], "params": first["params"], "n": len(runs),
               "seeds": sorted(r["seed"] for r in runs),
               "epochs": first["epochs"], "final_test_images": first["final_test_images"],
               "train_images_per_epoch": first["train_images_per_epoch"],
               "eval_images_per_epoch": first["eval_images_per_epoch"],
               "best_chosen_on": first["best_chosen_on"]}
        for key in NUMERIC:
            row[f"{key}_mean"], row[f"{key}_std"], _ = mean_std([r[key] for r in runs])
        for level in levels:
            key = level_key(level)
            mean, std, reached = mean_std([r[key] for r in runs])
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_reached"] = mean, std, reached
        rows.append(row)
    return rows


def pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def stat(row: dict[str, Any], key: str, spread: bool = True) -> str:
    """A row's mean (± std) of ``key`` in percent."""
    return pct(row[f"{key}_mean"], row[f"{key}_std"] if spread else None)


def _epochs(mean, std, reached, n) -> str:
    if not reached:
        return "not reached"
    text = f"{mean:g}" if std is None else f"{mean:.1f} ± {std:.1f}"
    return text if reached == n else f"{text} ({reached} of {n} runs)"


def table1_markdown(rows: Sequence[dict[str, Any]],
                    levels: Sequence[float]) -> str:
    """Table 1 as a Markdown table (accuracies and errors in %)."""
    chosen = sorted({str(r["best_chosen_on"]) for r in rows})
    several = any("recipe" in r for r in rows)
    head = (["architecture", "model", *(["recipe"] if several else []), "layers", "params", "n",
             "final test acc. (%)", f"best test acc. (%), chosen on {'/'.join(chosen)}",
             "training error, last epoch (%)"]
            + [f"epochs to {100 * level:g}% {'/'.join(chosen)} acc. (per-epoch eval)"
               for level in levels])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["architecture"], r["model"], *([str(r["recipe"])] if several else []),
                 str(r["layers"]),
                 f"{r['params']:,}" if r["params"] else "n/a", str(r["n"]),
                 pct(r["final_test_accuracy_mean"], r["final_test_accuracy_std"]),
                 pct(r["best_test_accuracy_mean"], r["best_test_accuracy_std"]),
                 pct(r["final_train_error_mean"], r["final_train_error_std"])]
        for level in levels:
            key = level_key(level)
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


def beside_published(rows: Sequence[dict[str, Any]], last_points: dict[str, dict[str, Any]],
                     published: dict[str, float], reproduction: dict[str, float], *,
                     ours: str, theirs: str, reproduction_schedule: str) -> str:
    """Our final errors beside He et al.'s and the reproduction's, as a Markdown table.

    Args:
        rows: Table 1's rows (final test accuracy and its image count).
        last_points: {model: its last curve point} (training error and its standard error).
        published: {model: He et al.'s test accuracy}.
        reproduction: {model: the reproduction's test accuracy}.
        ours: our schedule, e.g. "3 passes (1,173 iterations)".
        theirs: He et al.'s, e.g. "64k iterations".
        reproduction_schedule: the reproduction's, e.g. "200 epochs".
    """
    head = [f"model", f"ours: test error (%) ± SE, after {ours}",
            f"ours: training error (%) ± SE, last segment",
            f"He et al. (2016) test error (%), after {theirs}",
            f"reproduction test error (%), after {reproduction_schedule}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc, n = r["final_test_accuracy_mean"], r["final_test_images"]
        if acc is None:
            test = "n/a"
        elif r["n"] > 1 and r["final_test_accuracy_std"] is not None:
            test = (f"{100 * (1 - acc):.2f} ± {100 * r['final_test_accuracy_std'] / r['n'] ** 0.5:.2f}"
                    f" (mean of {r['n']} seeds)")
        else:
            se = (acc * (1 - acc) / n) ** 0.5 if n else None
            test = f"{100 * (1 - acc):.2f}" + (f" ± {100 * se:.2f} ({n:,} images)" if se else "")
        point = last_points.get(r["model"])
        if point:
            se = point.get("train_error_se")
            train = f"{100 * point['train_error']:.2f}" + (f" ± {100 * se:.2f}" if se else "")
        else:
            train = "n/a"
        # He et al.'s Figure 6 shows plain-20/32/44/56 (and their ResNets) as curves only.
        paper = (f"{100 * (1 - published[r['model']]):.2f}" if r["model"] in published
                 else "figure only" if r["model"] in FIGURE_6_ONLY else "not published")
        seed = (f"{100 * (1 - reproduction[r['model']]):.2f}" if r["model"] in reproduction
                else "not published")
        lines.append("| " + " | ".join([r["model"], test, train, paper, seed]) + " |")
    return "\n".join(lines) + "\n"
