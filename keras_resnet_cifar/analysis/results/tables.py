"""The report's tables, as Markdown and CSV: Table 1 (one row per model, mean ± sample std
over seeds and n), beside the published numbers, the study's cost per run, and provenance:
what each run ran on and from ("not recorded" for fields older runs lack)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any, Sequence

from keras_resnet_cifar.analysis.results.runs import CURVE_POINTS, PROJECT_TRAINER, Run, level_key
from keras_resnet_cifar.analysis.results.stats import mean_se, mean_std

# Networks that He et al. (2016) show only in their Figure 6 curves, without a number.
FIGURE_6_ONLY = ("plain20", "plain32", "plain44", "plain56")
NUMERIC = ("final_test_accuracy", "best_test_accuracy", "final_train_error",
           "last_segment_train_error")
NOT_RECORDED = "not recorded"
PENDING = "when finished"  # a run in progress writes its provenance (metrics.json) at the end


def table1(summaries: Sequence[dict[str, Any]], levels: Sequence[float]) -> list[dict[str, Any]]:
    """Run rows aggregated per model: mean, sample std (n > 1) and n, plain before residual,
    shallow before deep. A number some runs lack (e.g. "best") is averaged over the runs
    that have it, <key>_n counting them; "time to X%" over those that reached X."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        by_model.setdefault(s["model"], []).append(s)
    rows = []
    for model, runs in sorted(by_model.items(), key=lambda kv: (
            kv[1][0]["architecture"] != "plain", kv[1][0]["layers"])):
        first = runs[0]
        row = {"model": model, "architecture": first["architecture"], "layers": first["layers"],
               "params": first["params"], "n": len(runs), "seeds": sorted(r["seed"] for r in runs),
               "epochs": first["epochs"], "final_test_images": first["final_test_images"],
               "train_images_per_epoch": first["train_images_per_epoch"],
               "eval_images_per_epoch": first["eval_images_per_epoch"],
               "best_chosen_on": next((r["best_chosen_on"] for r in runs
                                       if r["best_chosen_on"]), None)}
        for key in NUMERIC:
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_n"] = mean_std(
                [r[key] for r in runs])
        for level in levels:
            key = level_key(level)
            mean, std, reached = mean_std([r[key] for r in runs])
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_reached"] = mean, std, reached
        rows.append(row)
    return rows


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


def pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def stat(row: dict[str, Any], key: str) -> str:
    """A row's mean (± std) of `key` in percent, "(k of n runs)" when some lack it."""
    text, have = pct(row[f"{key}_mean"], row[f"{key}_std"]), row.get(f"{key}_n", row["n"])
    return text if have == row["n"] or text == "n/a" else f"{text} ({have} of {row['n']} runs)"


def _time(mean, std, reached, n) -> str:
    if not reached:
        return "not reached"
    text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
    return text if reached == n else f"{text} ({reached} of {n} runs)"


def table1_markdown(rows: Sequence[dict[str, Any]], levels: Sequence[float],
                    source: str | None = None) -> str:
    """Table 1 in Markdown (in %); "time to X%" in passes (CURVE_POINTS) or epochs."""
    chosen = sorted({str(r["best_chosen_on"]) for r in rows if r["best_chosen_on"]})
    segment = any(r["last_segment_train_error_mean"] is not None for r in rows)
    unit = ("passes to {}% test acc. (curve points, test subset)" if source == CURVE_POINTS else
            "epochs to {}% " + "/".join(chosen or ["test"]) + " acc. (per-epoch eval)")
    head = (["architecture", "model", "layers", "params", "n", "final test acc. (%)",
             f"best test acc. (%), chosen on {'/'.join(chosen)}" if chosen
             else "best test acc. (%)", "training error, last epoch (%)"]
            + (["training error, last curve segment (%)"] if segment else [])
            + [unit.format(f"{100 * level:g}") for level in levels])
    table = []
    for r in rows:
        cells = [r["architecture"], r["model"], str(r["layers"]),
                 f"{r['params']:,}" if r["params"] else "n/a", str(r["n"]),
                 stat(r, "final_test_accuracy"), stat(r, "best_test_accuracy")
                 if r["best_test_accuracy_mean"] is not None else "n/a (no per-epoch evaluation)",
                 stat(r, "final_train_error")]
        if segment:
            cells.append(stat(r, "last_segment_train_error"))
        for level in levels:
            key = level_key(level)
            cells.append(_time(r[f"{key}_mean"], r[f"{key}_std"], r[f"{key}_reached"], r["n"]))
        table.append(cells)
    return markdown_table(head, table)


def cost_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"trainer": s["trainer"], "model": s["model"], "seed": s["seed"],
             "train_time_s": s["train_time_s"], "load_average_mean": s["load_average_mean"],
             "train_images_per_sec": s["train_images_per_sec"]}
            for s in sorted(summaries, key=lambda s: (s["trainer"] != PROJECT_TRAINER,
                                                      s["architecture"] != "plain", s["layers"],
                                                      s["seed"]))]


def cost_markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = ["trainer", "model", "seed", "training time (min)",
            "mean 1-min load average", "median training img/s"]
    total = sum(r["train_time_s"] or 0 for r in rows)
    return markdown_table(head, [[
        r["trainer"], r["model"], str(r["seed"]),
        f"{r['train_time_s'] / 60:.1f}" if r["train_time_s"] is not None else "n/a",
        f"{r['load_average_mean']:.1f}" if r["load_average_mean"] is not None else "not recorded",
        f"{r['train_images_per_sec']:.0f}" if r["train_images_per_sec"] else "n/a"]
        for r in rows]) + f"\nTraining time in all: {total / 60:.1f} min over {len(rows)} runs.\n"


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


def beside_published(rows: Sequence[dict[str, Any]], last_points: dict[str, list[dict[str, Any]]],
                     published: dict[str, float], reproduction: dict[str, float], *,
                     ours: str, theirs: str, reproduction_schedule: str) -> str:
    """Our final errors beside He et al.'s (`published`) and the reproduction's, in
    Markdown. `last_points`: {model: the last curve point of each of its runs}. Standard
    errors: of the mean over seeds; for one run, binomial on the test images or over the
    last segment's batches, marked so (information, not a verdict)."""
    head = ["model", f"ours: test error (%) ± SE, after {ours}",
            "ours: training error (%) ± SE, last segment",
            f"He et al. (2016) test error (%), after {theirs}",
            f"reproduction test error (%), after {reproduction_schedule}"]
    table = []
    for r in rows:
        acc, n = r["final_test_accuracy_mean"], r["final_test_images"]
        if acc is None:
            test = "n/a"
        elif r["n"] > 1 and r["final_test_accuracy_std"] is not None:
            se = r["final_test_accuracy_std"] / r["n"] ** 0.5
            test = f"{100 * (1 - acc):.2f} ± {100 * se:.2f} (mean of {r['n']} seeds)"
        else:
            se = (acc * (1 - acc) / n) ** 0.5 if n else None
            test = f"{100 * (1 - acc):.2f}" + (f" ± {100 * se:.2f} (one run: binomial, "
                                               f"{n:,} images)" if se else "")
        points = last_points.get(r["model"]) or []
        if len(points) > 1:
            mean, se, n = mean_se([p["train_error"] for p in points])
            train = f"{100 * mean:.2f} ± {100 * se:.2f} (mean of {n} seeds)"
        elif points:
            se = points[0].get("train_error_se")
            train = f"{100 * points[0]['train_error']:.2f}" + (
                f" ± {100 * se:.2f} (one run: SE over its batches)" if se else "")
        else:
            train = "n/a"
        paper = (f"{100 * (1 - published[r['model']]):.2f}" if r["model"] in published
                 else "figure only" if r["model"] in FIGURE_6_ONLY else "not published")
        seed = (f"{100 * (1 - reproduction[r['model']]):.2f}" if r["model"] in reproduction
                else "not published")
        table.append([r["model"], test, train, paper, seed])
    return markdown_table(head, table)


def _text(value: Any) -> str:
    if value is None or value == "":
        return NOT_RECORDED
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def data_path(run: Run) -> str:
    """The data path as given; older runs recorded only config.json's (~ expanded)."""
    given = (run.metrics or {}).get("data_dir_given")
    if given:
        return str(given)
    used = run.config.get("data_dir")
    unknown = NOT_RECORDED if run.metrics is not None else PENDING
    return f"{used} (config.json; as given: {unknown})" if used else NOT_RECORDED


def provenance_row(run: Run) -> dict[str, Any]:
    m = run.metrics or {}
    loads = [r["load_average"] for r in run.history if r.get("load_average") is not None]
    text = _text if run.metrics is not None else lambda value: PENDING
    return {
        "trainer": run.trainer, "model": run.model, "seed": run.seed,
        "epochs_done": len(run.history),
        **{k: text(m.get(k)) for k in ("cpu", "cpu_cores", "gpus")},  # absent: NOT_RECORDED
        "load_average": (f"{min(loads):.1f}-{max(loads):.1f} (mean {sum(loads) / len(loads):.1f})"
                         if loads else f"{m['load_average_1min_at_end']:.1f} at the end"
                         if m.get("load_average_1min_at_end") is not None else NOT_RECORDED),
        **{k: text(m.get(k)) for k in ("tensorflow", "keras", "python", "git_commit")},
        "data_path": data_path(run),
        "finished_at": _text(m.get("finished_at")) if m else "in progress (no metrics.json)"}


def machines(runs: Sequence[Run]) -> str:
    """"AMD EPYC (8 runs), Intel(R) Xeon(R) Processor (4 runs), 2 cores each" from every run,
    not from the first."""
    cpus = Counter(_text(r.metrics.get("cpu")) if r.metrics is not None else PENDING
                   for r in runs)
    cores = sorted({_text(r.metrics.get("cpu_cores")) if r.metrics is not None else PENDING
                    for r in runs})
    gpus = sorted({_text((r.metrics or {}).get("gpus")) for r in runs if r.metrics})
    return (", ".join(f"{cpu} ({n} run{'s' if n > 1 else ''})" for cpu, n in cpus.most_common())
            + f"; cores: {', '.join(cores)}; GPUs: {', '.join(gpus) or NOT_RECORDED}")


def provenance_markdown(runs: Sequence[Run]) -> str:
    head = ["trainer", "model", "seed", "epochs", "CPU", "cores", "1-min load over the epochs",
            "TensorFlow", "Keras", "Python", "code commit", "data path as given", "finished"]
    keys = ["trainer", "model", "seed", "epochs_done", "cpu", "cpu_cores", "load_average",
            "tensorflow", "keras", "python", "git_commit", "data_path", "finished_at"]
    return markdown_table(head, [[str(r[k]).replace("|", "/") for k in keys]
                                 for r in map(provenance_row, runs)])
