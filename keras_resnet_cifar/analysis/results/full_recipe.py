"""Table 1 at the full recipe: one seed of each network after the paper's 200 epochs (or
as far as it has got), beside the published figures. With one seed no verdict rests on
seed statistics: each difference is stated in units of the spread of a difference of two
runs (DIFF_SD), from the only published run-to-run spread (SEED_SD)."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from keras_resnet_cifar.analysis import plots
from keras_resnet_cifar.analysis.results import findings, stats
from keras_resnet_cifar.analysis.results.markdown import commands, measured
from keras_resnet_cifar.analysis.results.runs import Run, by_model
from keras_resnet_cifar.analysis.results.tables import markdown_table, pct, provenance_markdown
from keras_resnet_cifar.config import FULL_EPOCHS

# Published CIFAR-10 test accuracies at the full schedule.
REPRODUCTION = ("Shinde (2025), Table 1 (200 epochs)", findings.REPRODUCTION)
HE_ET_AL = ("He et al. (2016), Table 6 (test error 8.75% / 6.97%; 64k iterations)",
            findings.HE_TABLE6)
REFERENCE = ("the reference implementation's published figures "
             "(akamaster/pytorch_resnet_cifar10: 8.27% / 6.61% test error)",
             {"resnet20": 0.9173, "resnet56": 0.9339})
PUBLISHED = (REPRODUCTION, HE_ET_AL, REFERENCE)
SEED_SD = 0.0016  # He et al. (2016), Table 6 (see SEED_SD_SOURCE)
SEED_SD_SOURCE = (
    "He et al. (2016), Table 6: ResNet-110 trained 5 times, test error \"best (mean±std)\" 6.43 "
    "(6.61±0.16)%: a standard deviation of 0.16 points between runs at the full recipe (the only "
    "run-to-run spread either paper gives; nothing is published for these four nets)")
# Two independent runs differ by sqrt(2) times one run's spread: the unit of every difference
# of this report (ours against a published run, or two of ours).
DIFF_SD = math.sqrt(2) * SEED_SD
DIFF_SD_TEXT = (f"the spread of a difference between two runs, sqrt(2) x 0.16 = "
                f"{100 * DIFF_SD:.2f} points")
TABLE1_MODELS = ("plain20", "resnet20", "plain56", "resnet56")


def ordered(runs: Sequence[Run]) -> list[Run]:
    """The lowest seed of each network, in Table 1's order, other networks after."""
    groups = by_model(runs)
    return [groups[m][0] for m in [m for m in TABLE1_MODELS if m in groups]
            + [m for m in groups if m not in TABLE1_MODELS]]


def is_full_recipe(runs: Sequence[Run]) -> bool:
    """Whether `runs` are full-recipe runs (finished or not): the default recipe's epochs,
    every epoch a full pass, one seed per network."""
    return bool(runs) and all(
        r.config.get("epochs") == FULL_EPOCHS and not r.config.get("steps_per_epoch")
        for r in runs) and all(len(g) == 1 for g in by_model(runs).values())


def accuracy_so_far(run: Run) -> tuple[float | None, str]:
    """(test accuracy, where from): the final one when the run finished, else the last
    per-epoch evaluation."""
    accuracy, images, origin = run.final_test
    if finished(run) and accuracy is not None:
        return accuracy, f"final, {images:,} images" if images else "final"
    last = next((r for r in reversed(run.history) if r.get("val_accuracy") is not None), None)
    if last is None:
        return None, "no evaluation yet"
    return last["val_accuracy"], f"per-epoch evaluation after epoch {last['epoch']:g}"


def status(run: Run) -> dict[str, Any]:
    """Where a run stands; the time left is at its median epoch time."""
    times = [r["epoch_time_s"] for r in run.history if r.get("epoch_time_s")]
    rates = [r["images_per_sec"] for r in run.history if r.get("images_per_sec")]
    accuracy, origin = accuracy_so_far(run)
    total = run.config.get("epochs", FULL_EPOCHS)
    left = max(0, total - len(run.history))
    return {"model": run.model, "seed": run.seed, "epochs_done": len(run.history),
            "epochs": total, "test_accuracy": accuracy, "test_accuracy_from": origin,
            "images_per_sec": statistics.median(rates) if rates else None,
            "train_time_h": sum(times) / 3600 if times else None,
            "remaining_h": (left * statistics.median(times) / 3600 if times else None)
            if left else 0.0, "finished": finished(run)}


def finished(run: Run) -> bool:
    """All its epochs done and metrics.json written (the trainer's last act): one rule for
    every table of the report (provenance says "when finished" until then)."""
    return run.metrics is not None and len(run.history) >= run.config.get("epochs", FULL_EPOCHS)


def _diff(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return ""
    d = 100 * (ours - theirs)
    return f"{d:+.2f} ({d / (100 * DIFF_SD):+.1f} sd)"


def table1_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in ordered(runs):
        model = run.model
        ours, origin = accuracy_so_far(run)
        done = finished(run)
        row = {"model": model, "seed": run.seed, "epochs_done": len(run.history),
               "test_accuracy": ours, "from": origin, "finished": done}
        for name, (_, table) in zip(("reproduction", "he_et_al", "reference"), PUBLISHED):
            row[name] = table.get(model)
            # A run in progress is not compared with end-of-schedule figures.
            row[f"{name}_difference"] = (ours - table[model]) if (
                done and ours is not None and model in table) else None
        rows.append(row)
    return rows


def table1_markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = ["network", "epochs done", "this project: test acc. (%)", "Shinde (2025), Table 1",
            "ours - Shinde", "He et al., Table 6", "ours - He et al.",
            "reference impl., published", "ours - reference"]
    missing = {"reproduction": "-", "he_et_al": "- (figures only)", "reference": "-"}
    return markdown_table(head, [
        [r["model"], str(r["epochs_done"]), f"{pct(r['test_accuracy'])} ({r['from']})"]
        + [cell for name, none in missing.items()
           for cell in (pct(r[name]) if r[name] else none,
                        _diff(r["test_accuracy"], r[name]) if r["finished"] else
                        "in progress" if r[name] else "")]
        for r in rows])


def between_nets(rows: Sequence[dict[str, Any]]) -> list[str]:
    acc = {r["model"]: r["test_accuracy"] for r in rows
           if r["finished"] and r["test_accuracy"] is not None}
    paper = findings.REPRODUCTION
    pairs = (("resnet20", "plain20", "ResNet-20 above plain-20"),
             ("resnet56", "plain56", "ResNet-56 above plain-56"),
             ("plain20", "plain56", "plain-20 above plain-56, the degradation"),
             ("resnet56", "resnet20", "ResNet-56 above ResNet-20"))
    out = []
    for a, b, claim in pairs:
        claim += f" (Shinde's Table 1: {100 * (paper[a] - paper[b]):+.2f} points)"
        if a in acc and b in acc:
            d = 100 * (acc[a] - acc[b])
            # Only --mode=full_recipe forced on a shorter recipe's finished runs gets here.
            short = any(r["epochs_done"] < FULL_EPOCHS for r in rows if r["model"] in (a, b))
            out.append(f"- {claim}: here {d:+.2f} points, {abs(d) / (100 * DIFF_SD):.1f} times "
                       f"{DIFF_SD_TEXT}; one seed each, so not decided from seed statistics"
                       + (f" (runs of a recipe shorter than {FULL_EPOCHS} epochs: not the "
                          "end-of-schedule figure)" if short else "") + ".")
    return out


def per_class_markdown(runs: Sequence[Run]) -> str | None:
    evaluated = [r for r in ordered(runs) if r.evaluation and r.evaluation.get("per_class")]
    if not evaluated:
        return None
    classes = [c["class"] for c in evaluated[0].evaluation["per_class"]]
    table = {r.model: findings.class_accuracies(r) for r in evaluated}
    text = markdown_table(["class", *table],
                          [[c, *(pct(table[m].get(c)) for m in table)] for c in classes])
    unevaluated = [r.model for r in ordered(runs) if finished(r) and r.model not in table]
    if unevaluated:  # full_recipe.sh runs `evaluate` after training; it may have failed
        text = text.rstrip("\n") + (
            f"\n\nNot here: {', '.join(unevaluated)}, finished but not evaluated (no "
            "evaluation.json: run `python -m keras_resnet_cifar.evaluate` on it).\n")
    return text


def not_started(runs: Sequence[Run]) -> list[str]:
    """Table 1's networks that have no run yet."""
    return [m for m in TABLE1_MODELS if m not in by_model(runs)]


def status_markdown(runs: Sequence[Run]) -> str:
    head = ["network", "seed", "epochs done", "test acc. so far (%)", "median img/s",
            "training time so far (h)", "remaining at the median epoch time (h)"]
    return markdown_table(head, [[
        r["model"], str(r["seed"]), f"{r['epochs_done']} of {r['epochs']}",
        f"{pct(r['test_accuracy'])} ({r['test_accuracy_from']})",
        f"{r['images_per_sec']:.0f}" if r["images_per_sec"] else "not recorded",
        f"{r['train_time_h']:.2f}" if r["train_time_h"] is not None else "not recorded",
        "finished" if r["finished"] else f"{r['remaining_h']:.1f}"
        if r["remaining_h"] is not None else "not known (no epoch times)"]
        for r in map(status, ordered(runs))])


def figures(runs: Sequence[Run]) -> dict[str, Any]:
    """He et al.'s Figure 6 layout over the epochs, every network on one figure."""
    groups = by_model(runs)
    if not any(g[0].evaluated_every_epoch for g in groups.values()):
        return {}
    plain = {m: g[0].history for m, g in groups.items() if not g[0].spec.residual}
    residual = {m: g[0].history for m, g in groups.items() if g[0].spec.residual}
    drops = next(iter(groups.values()))[0].config.get("lr_boundaries", ())
    return {"table1_curves": plots.depth_sweep(  # 0-20% error, as He et al.'s Figure 6
        plain, residual, xlabel="epoch (one pass over the 50,000 training images)", eval_set="test",
        xlim=(0, FULL_EPOCHS), ylim=(0, 20), marks=drops, title="Error vs epochs (He et al., "
        "Figure 6 layout: dashed training, bold test; dotted: lr drops)")}


def render(runs: Sequence[Run], found: Sequence[dict[str, Any]], figure_stems: Sequence[str],
           command: str | None = None) -> str:
    """report.md of the full-recipe runs."""
    rows = table1_rows(runs)
    going = [f"{r['model']} (epoch {r['epochs_done']} of {FULL_EPOCHS})"
             for r in rows if not r["finished"]]
    lines = ["# Table 1 at the full recipe: this project's runs", ""]
    if going:
        its, it, them = ("Its", "it", "it") if len(going) == 1 else ("Their", "they", "them")
        lines += [f"> **In progress.** Not finished: {', '.join(going)}. {its} figures below "
                  f"are as far as {it} got, not end-of-schedule figures: they are compared with "
                  f"nothing, and no claim below counts {them}.", ""]
    waiting = not_started(runs)
    lines += ["## Where the runs stand", "", status_markdown(runs), ""]
    if waiting:
        lines += [f"Not started: {', '.join(waiting)}.", ""]
    lines += ["## Table 1", "",
              "Test accuracy (%) of this project's runs (one seed each) beside the published "
              "figures: " + "; ".join(name for name, _ in PUBLISHED) + ". Each difference is "
              f"also given in sd units: {DIFF_SD_TEXT} (a published figure that is a mean of "
              f"several runs would spread less), from the known run-to-run spread: "
              f"{SEED_SD_SOURCE}.", "",
              table1_markdown(rows), "",
              "## The paper's comparisons, beside the spread between runs", ""]
    lines += between_nets(rows) or ["- (needs at least two of the four networks, finished)"]
    undecided = [f for f in found if f["verdict"] in (
        stats.ONE_SEED, stats.NOT_TESTABLE, stats.DESCRIBED, stats.NOT_MEASURED)]
    lines += ["", "With one seed per network no verdict rests on seed statistics. The "
              "claims, judged on finished runs only, with what was measured, or which "
              "finished runs they still need:", ""]
    lines += [f"- {f['claim']} [{f['source']}, {f.get('section', 'section not recorded')}]: "
              f"{f['verdict']}; {measured(f)}." for f in undecided] or ["- none"]
    lines += ["", "Every finding, with the rules of the study report, is in "
              "[findings.json](findings.json).", ""]
    per_class = per_class_markdown(runs)
    if per_class:
        lines += ["## Per-class test accuracy (%)", "", per_class, ""]
    lines += ["## Training time and machine per run", "", provenance_markdown(ordered(runs)), ""]
    if command:
        lines += commands(ordered(runs), command)
    for stem in figure_stems:
        lines += [f"![{stem}](figures/{stem}.png)", "",
                  "*Error against epochs: plain networks left, residual right, dashed training "
                  "error (over each epoch's augmented batches), bold test error (whole test set "
                  "after every epoch); as far as each run has got. The error axis is He et "
                  "al.'s, 0-20%: errors above 20% (the first epochs) run off its top; "
                  f"history.json has every epoch's figures.* ([SVG](figures/{stem}.svg))",
                  ""]
    return "\n".join(lines)
