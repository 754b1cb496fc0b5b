"""This project's runs beside the reference PyTorch trainer's (scripts/train_reference_pytorch.py)
at the same recipe, or beside a variant of the recipe (runs that differ in one recipe field,
e.g. mixed_precision): per network, the mean ± SE over seeds of the final test error and the
last segment's training error, their difference, whether it is within two combined SEs
(the bar of "trains like the reference"), Welch's t-test, for a variant also the difference
paired by seed with its 95% interval; and BatchNorm's lag (bn_*)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from keras_resnet_cifar.analysis.results import stats
from keras_resnet_cifar.analysis.results.recipes import recipe_differences, recipe_of
from keras_resnet_cifar.analysis.results.runs import Run, by_model
from keras_resnet_cifar.analysis.results.tables import markdown_table

QUANTITIES = (  # (key, name, its value in one run)
    ("final_test_error", "final test error, whole test set", lambda r: r.final_test_error),
    ("last_segment_train_error", "training error, last curve segment",
     lambda r: r.last_point["train_error"] if r.last_point else None))


def compare(project: Sequence[Run], reference: Sequence[Run], variant: bool = False
            ) -> dict[str, Any]:
    """{"recipe_note": why nothing is compared (other recipes) or None, "rows": per network
    and quantity, "models": the networks compared, "varies": for a `variant`, the one recipe
    field "reference" (the variant's runs) differs in, as {field: [project's, variant's]}}."""
    result: dict[str, Any] = {"recipe_note": None, "rows": [], "models": []}
    if not project or not reference:
        return result
    mine, first = recipe_of(project[0]), recipe_of(reference[0])
    varies = [k for k in mine if mine[k] != first.get(k)] if variant else []
    if variant and len(varies) != 1:
        result["recipe_note"] = (f"Not compared: a variant differs from the study's recipe in "
                                 f"one field; {reference[0].path} differs in {len(varies)} "
                                 f"({recipe_differences(mine, first) or 'none'}).")
        return result
    if variant:
        result["varies"] = {k: [mine[k], first[k]] for k in varies}
    expected = {**mine, **{k: first[k] for k in varies}}
    for run in reference:
        if (theirs := recipe_of(run)) != expected:
            result["recipe_note"] = (
                f"Not compared: the {'variant' if variant else 'reference'} run {run.path} was "
                f"trained with another recipe than the {'variant' if variant else 'study'}'s "
                f"({recipe_differences(expected, theirs)}), and runs of different recipes are "
                "never pooled or compared.")
            return result
    ours, refs = by_model(project), by_model(reference)
    for model in [m for m in ours if m in refs]:
        result["models"].append(model)
        for key, name, value in QUANTITIES:
            a, b = [value(r) for r in ours[model]], [value(r) for r in refs[model]]
            pa, pb = stats.mean_se(a), stats.mean_se(b)
            if pa[0] is None or pb[0] is None:
                continue
            diff = pb[0] - pa[0] if variant else pa[0] - pb[0]  # a variant's loss is positive
            combined = math.hypot(pa[1], pb[1]) if None not in (pa[1], pb[1]) else None
            test = stats.welch(b, a) if variant else stats.welch(a, b)
            result["rows"].append({
                "model": model, "quantity": name, "key": key, "project": pa, "reference": pb,
                "difference": diff, "combined_se": combined,
                "within_2se": None if combined is None else abs(diff) <= 2 * combined,
                "test": test.as_dict() if test else None, "project_values": a,
                "reference_values": b})
            if variant:  # paired by seed: the variant's value minus the study's
                seeds = {r.seed: v for r, v in zip(refs[model], b)}
                paired = stats.one_sample([seeds[r.seed] - v for r, v in zip(ours[model], a)
                                           if seeds.get(r.seed) is not None and v is not None])
                result["rows"][-1].update(paired=paired and paired.as_dict(),
                                          paired_interval=paired and paired.interval())
    return result


def batch_norm_rows(reference: Sequence[Run]) -> list[dict[str, Any]]:
    """Per pass, over the reference seeds: test error with the saved BatchNorm statistics
    and with statistics re-estimated from the final weights, and the two lag measures."""
    out = []
    epochs = sorted({r["epoch"] for run in reference for r in run.history
                     if r.get("bn_lag_mean") is not None})
    for epoch in epochs:
        rows = [next((r for r in run.history if r["epoch"] == epoch), None) for run in reference]
        rows = [r for r in rows if r and r.get("bn_lag_mean") is not None]
        out.append({
            "epoch": epoch, "n": len(rows), "test_error": stats.mean_se(
                [1 - r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]),
            "recalibrated_test_error": stats.mean_se(
                [1 - r["bn_recalibrated_val_accuracy"] for r in rows
                 if r.get("bn_recalibrated_val_accuracy") is not None]),
            "lag_mean": stats.mean_se([r["bn_lag_mean"] for r in rows]),
            "lag_log_variance": stats.mean_se([r.get("bn_lag_log_variance") for r in rows])})
    return out


def _mse(value: tuple[float | None, float | None, int], scale: float = 100,
         digits: int = 2) -> str:
    mean, se, n = value
    if mean is None:
        return "n/a"
    return (f"{scale * mean:.{digits}f} ± {scale * se:.{digits}f} (n={n})" if se is not None
            else f"{scale * mean:.{digits}f} (n={n})")


def markdown(result: dict[str, Any], batch_norm: Sequence[dict[str, Any]],
             figure: str | None) -> list[str]:
    lines = ["## Reference trainer", "",
             "This project's runs beside the reference PyTorch trainer's "
             "(`scripts/train_reference_pytorch.py`: akamaster/pytorch_resnet_cifar10's network "
             "and initialisation, `torch.optim.SGD`, torchvision's augmentation) at the same "
             "recipe, data and schedule. Mean ± standard error over seeds; the difference is "
             "project minus reference, its combined SE sqrt(SE_project² + SE_reference²). The bar "
             "for \"trains like the reference\": the difference within two combined standard "
             "errors. Welch's t-test over seeds as well.", ""]
    if result["recipe_note"]:
        return lines + [result["recipe_note"], ""]
    if not result["rows"]:
        return lines + ["Not compared: no network was trained by both trainers.", ""]
    head = ["model", "quantity", "this project (%)", "reference (%)", "difference (points)",
            "combined SE", "within 2 combined SE", "Welch test"]
    lines += [markdown_table(head, [[
        r["model"], r["quantity"], _mse(r["project"]), _mse(r["reference"]),
        f"{100 * r['difference']:+.2f}",
        f"{100 * r['combined_se']:.2f}" if r["combined_se"] is not None else "n/a",
        ("yes" if r["within_2se"] else "**no**") if r["within_2se"] is not None
        else "not decided (one seed)",
        (f"t = {t['t']:.2f}, df = {t['df']:.1f}, p = {stats.format_p(t['p'])}"
         if (t := r["test"]) else "none (one seed)")] for r in result["rows"]]).rstrip("\n"), ""]
    if figure:
        lines += [f"![{figure}](figures/{figure}.png)", "",
                  "*Training error (dashed) and test error on the fixed test subset (solid) "
                  "against passes; each seed faint, the mean bold, the band ± SE over seeds; "
                  f"star: the whole test set at the end.* ([SVG](figures/{figure}.svg))", ""]
    if batch_norm:
        lines += ["BatchNorm's running averages in the reference runs, per pass (mean ± SE "
                  "over seeds): the whole test set's error with the saved statistics and "
                  "with statistics re-estimated from the pass's final weights (60 augmented "
                  "training batches), and the lag of the saved statistics (over the BatchNorm "
                  "layers, the mean of RMS((saved mean - re-estimated mean) / re-estimated std)"
                  ", and of |log(saved variance / re-estimated variance)|).", "",
                  markdown_table(["pass", "test error, saved statistics (%)",
                                  "test error, re-estimated (%)", "lag of the mean",
                                  "lag of the log variance"],
                                 [[str(b["epoch"]), _mse(b["test_error"]),
                                   _mse(b["recalibrated_test_error"]), _mse(b["lag_mean"], 1, 3),
                                   _mse(b["lag_log_variance"], 1, 3)] for b in batch_norm])]
    return lines


def variant_markdown(result: dict[str, Any]) -> list[str]:
    """The section of a variant comparison (compare(..., variant=True))."""
    if not result.get("varies"):
        return ["## Variant", "", result["recipe_note"] or "Not compared: no variant runs.", ""]
    (field, (ours, theirs)), = result["varies"].items()
    lines = [f"## Variant: {field} {theirs} beside {ours}", "",
             f"The study's runs ({field} {ours}) beside runs of the same recipe but {field} "
             f"{theirs}, network by network. Mean ± standard error over seeds; the difference is "
             "variant minus study, with its combined SE and Welch's t-test; then paired by seed "
             "(a pair's runs share a seed, which sets the initial weights and data order), the "
             "mean paired difference ± SE and its 95% confidence interval (Student's t). A "
             "positive difference is a loss for the variant: a loss beyond the interval's upper "
             "end is excluded at this confidence; a loss is shown when the interval lies above 0.",
             ""]
    if result["recipe_note"] or not result["rows"]:
        return lines + [result["recipe_note"] or "Not compared: no network in both.", ""]
    head = ["model", "quantity", f"{ours} (%)", f"{theirs} (%)", "difference (points)",
            "combined SE", "Welch test", "paired by seed (points)", "95% interval (points)"]
    return lines + [markdown_table(head, [[
        r["model"], r["quantity"], _mse(r["project"]), _mse(r["reference"]),
        f"{100 * r['difference']:+.2f}",
        f"{100 * r['combined_se']:.2f}" if r["combined_se"] is not None else "n/a",
        f"p = {stats.format_p(r['test']['p'])}" if r["test"] else "none (one seed)",
        (f"{100 * q['difference']:+.2f} ± {100 * q['se']:.2f} (n={q['n'][0]}), "
         f"p = {stats.format_p(q['p'])}" if (q := r["paired"]) else "n/a (fewer than 2 pairs)"),
        (f"[{100 * r['paired_interval'][0]:+.2f}, {100 * r['paired_interval'][1]:+.2f}]"
         if r["paired_interval"] else "n/a")] for r in result["rows"]]).rstrip("\n"), ""]
