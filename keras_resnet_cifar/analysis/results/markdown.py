"""The study's report.md, one function per section, from the loaded runs, Table 1's rows,
the findings and the figure names."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar.config import FULL_EPOCHS, TrainConfig, changed_flags
from keras_resnet_cifar.errors import plural
from keras_resnet_cifar.analysis.results import stats
from keras_resnet_cifar.analysis.results.findings import (
    CONVERGENCE_RULE, HE_TABLE6, REPRODUCTION, SCOPE_RULE)
from keras_resnet_cifar.analysis.results.runs import Levels, Run, by_model
from keras_resnet_cifar.analysis.results.tables import (
    beside_published, machines, markdown_table, table1_markdown)

HE_ET_AL_SCHEDULE = ("64k iterations of batch 128 on the training set (about 164 passes over the "
                     "50,000 images; the 64k stop was chosen on a 45k/5k split)")
REPRODUCTION_SCHEDULE = f"{FULL_EPOCHS} epochs"

SEEDS_CAPTION = ("Each seed's curve is drawn faintly, the mean over seeds bold, the band "
                 "± one standard deviation over seeds; the legend gives n.")
CAPTIONS = {
    "error_curves": "He et al.'s Figure 6 layout (plain left, residual right; its left panel's "
    "plain-20/plain-56 pair is their Figure 1) from points inside the runs: error against passes "
    "over the training set (iterations on the top axis); dashed: training error over the "
    "augmented batches since the previous point, solid: test error on a fixed subset of the test "
    "set (the same images at every point, for every network), star: the whole test set at the end "
    "(± std over seeds). " + SEEDS_CAPTION,
    "curves": "Plain and residual net of one depth on the same axes (this report's view; He et "
    "al.'s Figure 1 compares plain-20 with plain-56): training error (dashed) and test error on "
    "the fixed test subset (solid) against passes. " + SEEDS_CAPTION,
    "curves_history": "Training dynamics of the lowest seed (the runs have no curve points): "
    "accuracy (left) and loss (right); dashed training, solid {eval_set}.",
    "confusion": "Confusion matrices on the full test set, rows normalised to 100% (counts summed "
    "over the evaluated seeds: the mean of the seeds' percentages).",
    "depth_sweep": "He et al.'s Figure 6 layout: error vs epochs; thin dashed training, bold "
    "{eval_set}; plain left, residual right.",
    "layer_response_std": "He et al.'s Figure 7: std of each 3x3 layer's output after BN "
    "(inference mode, one fixed batch of training images), input to output, at the recorded "
    "epochs after initialisation (BN in inference mode is the identity before training). With "
    "several seeds: each faint, the mean bold, ± std.",
    "layer_response_std_sorted": "The same, each curve sorted by magnitude.",
    "layer_gradient_norm": "L2 norm of the gradient of the mean cross-entropy w.r.t. each "
    "conv/dense kernel on one fixed batch of training images (training mode), log scale.",
    "gradient_ratio": "Signed log10 of the early/late gradient-norm ratio (median kernel-gradient "
    "norm of the first third of conv layers over the last third) at each recorded epoch: above 0 "
    "the early layers' gradients are larger, below 0 smaller (vanishing toward the input). Each "
    "seed a dot, the mean a line.",
}


def portable(path: str | os.PathLike) -> str:
    """`path` relative to the working folder when inside it, ~/... inside the home folder."""
    path = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if path.is_absolute() and path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return path.as_posix()


def portable_command(argv: Sequence[str]) -> str:
    """A shell command line with every absolute path in it made portable; a leading ~/
    stays outside the quotes, so that the shell expands it when the line is run."""
    def fix(arg: str) -> str:
        name, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if os.path.isabs(value):
            value = portable(value)
        if value.startswith("~/"):
            flag = shlex.quote(f"{name}{eq}") if name else ""
            return f"{flag}~/{shlex.quote(value[2:])}"
        return shlex.quote(f"{name}{eq}{value}")

    return " ".join(fix(a) for a in argv)


def train_command(run: Run) -> str:
    """The train command that reproduces `run` into its own run directory."""
    try:
        args = changed_flags(TrainConfig.from_dict(run.config))
    except ValueError:  # a config written by another version: show it as it is
        args = [f"--{k}={v}" for k, v in run.config.items()]
    args = [f"--data_dir={portable(run.config['data_dir'])}" if a.startswith("--data_dir=")
            else a for a in args]
    return " ".join(["python -m keras_resnet_cifar.train", *args,
                     f"--model_dir={portable(run.path)}"])


def _published(levels_table: dict[str, float], models: Sequence[str]) -> str:
    found = ", ".join(f"{m} {100 * levels_table[m]:.2f}%" for m in models if m in levels_table)
    return found or f"none of this report's models (it gives {', '.join(levels_table)})"


def _schedule(run: Run) -> str:
    config = run.config
    steps = config.get("steps_per_epoch")
    epoch = (f"{steps} steps x {config['batch_size']} = {steps * config['batch_size']:,} "
             "shuffled, augmented training images" if steps else
             f"one full pass over the {run.train_set_size:,} training images, reshuffled "
             f"every pass ({run.steps_per_epoch:,} steps)")
    warm = (f"{config['warmup_learning_rate']} for {config['warmup_epochs']} epoch(s), then "
            if config.get("warmup_epochs") else "")
    epochs = config["epochs"]
    inside = [b for b in config["lr_boundaries"] if b < epochs]
    beyond = [b for b in config["lr_boundaries"] if b >= epochs]
    if inside:
        share = ", ".join(f"{100 * b / epochs:g}%" for b in inside)
        rate = (f"{config['learning_rate']}, x{config['lr_decay']} after epochs "
                f"{', '.join(map(str, inside))} ({share} of the steps; set before every step)")
    else:
        rate = f"{config['learning_rate']} throughout"
    if beyond:
        rate += (f" (--lr_boundaries {', '.join(map(str, beyond))} lie at or beyond its "
                 f"{plural(epochs, 'epoch')}: never reached)")
    return (f"{plural(epochs, 'epoch')}, an epoch being {epoch}; SGD momentum "
            f"{config['momentum']}, weight decay {config['weight_decay']}, batch "
            f"{config['batch_size']}; learning rate {warm}{rate}.")


def _evaluation(runs: Sequence[Run]) -> str:
    every = [r for r in runs if r.evaluated_every_epoch]
    config = runs[0].config
    where = (f"the first {config['eval_steps'] * config['batch_size']:,} images of the "
             f"{runs[0].eval_set} set" if config.get("eval_steps") else
             f"the whole {runs[0].eval_set} set")
    if len(every) == len(runs):
        return f"after every epoch on {where} (history.json's val_* columns)."
    if not every:
        return ("none per epoch (the curve points evaluate the test subset during each "
                "epoch); the test set once, at the end.")
    return (f"after every epoch on {where} for {_names(every)}; the others were evaluated "
            "once, at the end (their history.json has no val_* columns). Nothing in this "
            "report mixes the two.")


def _names(runs: Sequence[Run]) -> str:
    """"plain20 seeds 0, 1, 2; resnet20 seed 0"."""
    return "; ".join(f"{model} seed{'s' if len(g) > 1 else ''} {', '.join(str(r.seed) for r in g)}"
                     for model, g in by_model(runs).items())


def measured(f: dict[str, Any]) -> str:
    return f.get("measured") or f["evidence"].split("; ")[0].rstrip(".")


def p_text(f: dict[str, Any]) -> str:
    """"p = 0.039 raw, 0.47 Holm-adjusted (family of 12)", or why there is none."""
    if f.get("p_adjusted") is not None:  # in the family: both p's
        return (f"p = {stats.format_p(f['p_raw'])} raw, {stats.format_p(f['p_adjusted'])} "
                f"Holm-adjusted (family of {f['family_size']})")
    if f.get("p_raw") is not None:
        return f"p = {stats.format_p(f['p_raw'])} raw, information only: outside the tested family"
    return "no p"


def claims_table(found: Sequence[dict[str, Any]]) -> str:
    head = ["claim (as this project states it)", "the paper's phrase", "where in the paper",
            "measured here", "verdict", "p"]
    return markdown_table(head, [[c.replace("|", "/") for c in [
        f["claim"], f"\"{f['wording']}\"" if f.get("wording") else "not recorded verbatim",
        f.get("section") or "section not recorded", measured(f), f["verdict"], p_text(f)]]
        for f in found if f.get("source", "").startswith("Shinde")])


def findings_lines(found: Sequence[dict[str, Any]]) -> list[str]:
    family = next((f["family_size"] for f in found if f.get("family_size")), 0)
    untestable = [f for f in found if f["verdict"] == stats.NOT_TESTABLE]
    at = found[0].get("budget", "this budget") if found else "this budget"
    lines = ["## Findings", "",
             f"Runs at {at}. {family} claims are tested here; their p-values form one family, "
             "adjusted together by Holm-Bonferroni, and each verdict follows the adjusted p "
             "(raw and adjusted p beside every verdict). "
             + (f"{len(untestable)} claims are about the end of the full schedule (final "
                "accuracies) and are not testable at this budget: their numbers are shown as "
                "measured, untested. " if untestable else "")
             + "Every verdict names the budget it was reached at; none says anything of the "
             "end of a full schedule unless the runs completed it.", "",
             "### Every claim of the reproduction paper", "",
             "V. R. Shinde (2025), \"Deep Residual Learning for Image Recognition: "
             "Implementation and Analysis\". Where the paper's section or exact wording is not "
             "recorded in this project, the table says so.", "", claims_table(found)]
    for source_name, title in (
            ("Shinde", f"The reproduction paper's claims, with their evidence, at {at}"),
            ("He", f"He et al.'s (2016) claims, with their evidence, at {at}"),
            ("this study", f"This study's exploratory checks, at {at}")):
        part = [f for f in found if f.get("source", "").startswith(source_name)]
        if part:
            lines += [f"### {title}", ""]
            lines += [f"- **{f['verdict'].upper()}** ({p_text(f)}): {f['claim']} "
                      f"[{f.get('section') or 'section not recorded'}]. {f['evidence']}"
                      for f in part]
            lines.append("")
    one_seed = [f for f in found if f["verdict"] == stats.ONE_SEED]
    if one_seed:
        lines += [f"{len(one_seed)} of {len(found)} findings rest on one seed per network: "
                  "they are not decided, whatever the difference; more seeds decide them.", ""]
    return lines


def render_markdown(runs: Sequence[Run], rows: Sequence[dict[str, Any]],
                    found: Sequence[dict[str, Any]], figure_stems: Sequence[str], levels: Levels,
                    *, command: str | None = None, sections: Sequence[str] = ()) -> str:
    """report.md's text; `sections` (lines) go between the findings and the figures."""
    first = sorted(runs, key=lambda r: (r.spec.residual, r.spec.depth, r.seed))
    return "\n".join(_title(first) + _setup(first, rows) + [""] + commands(first, command)
                     + ["## How verdicts are decided", "", stats.RULE, "", SCOPE_RULE, "",
                        CONVERGENCE_RULE, ""]
                     + _table1(rows, levels) + _beside_published(first, rows)
                     + findings_lines(found) + list(sections) + _figures(first, figure_stems))


def _title(first: Sequence[Run]) -> list[str]:
    lines = ["# Plain vs residual networks on CIFAR-10: the study", ""]
    seen = max(r.images_seen for r in first)
    train_size = first[0].train_set_size
    if seen < FULL_EPOCHS * train_size:
        lines += [f"> **Reduced schedule.** Each run saw at most {seen:,} training images "
                  f"({seen / train_size:.2f} passes over the {train_size:,}), not the "
                  f"paper's {FULL_EPOCHS} epochs: these numbers are not comparable with "
                  "the published ones below, which need the full schedule.", ""]
    return lines


def _setup(first: Sequence[Run], rows: Sequence[dict[str, Any]]) -> list[str]:
    seeds = sorted({len(g) for g in by_model(first).values()})
    lines = ["## Setup", "",
             f"- Runs: {len(first)} ({_names(first)}), all with the same recipe; "
             f"{'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''} per network. "
             "Numbers are means over seeds (± sample standard deviation, n given) "
             "unless a table says otherwise.",
             f"- Schedule: {_schedule(first[0])}", f"- Evaluation: {_evaluation(first)}"]
    curve = next((r.curve for r in first if r.curve), None)
    if curve:
        lines.append(f"- Curve points: {curve['points_per_epoch']} per epoch (every "
                     f"~{curve['steps_per_epoch'] / curve['points_per_epoch']:.0f} steps): the "
                     "training error over the augmented batches since the previous point and the "
                     f"test error on {curve['test_subset']['images']:,} fixed test images (the "
                     "same for every point, network and seed); the final test error on the whole "
                     "test set.")
    counts = sorted({r["final_test_images"] for r in rows if r["final_test_images"]})
    sources = sorted({(r.metrics or {}).get("data_source", "not recorded") for r in first})
    data_source = "; ".join(sources) + (" (as each run recorded it; per run: Provenance, "
                                        "below)" if len(sources) > 1 else "")
    lines.append(f"- Data: {data_source}; final test numbers on "
                 f"{' / '.join(f'{c:,}' for c in counts) or 'n/a'} test images"
                 + (" (keras_resnet_cifar.evaluate)." if all(r.evaluation for r in first)
                    else " (see runs.csv, final_test_source)."))
    lines.append(f"- Hardware: {machines(first)}. Per run (CPU, load, versions, code "
                 "commit, data path): Provenance, below; time and load: Study cost, below.")
    return lines


def commands(first: Sequence[Run], command: str | None) -> list[str]:
    lines = ["## Commands", ""]
    if command:
        lines += ["The command that wrote this report:", "", "```", command, "```", ""]
    return lines + ["Each run is equivalent to:", "", "```",
                    *[train_command(r) for r in first], "```", ""]


def _table1(rows: Sequence[dict[str, Any]], levels: Levels) -> list[str]:
    models_shown = [r["model"] for r in rows]
    return ["## Table 1", "",
            "Mean ± sample standard deviation over seeds where n > 1. \"Best\" is the "
            "highest per-epoch accuracy on the set named in the header (when that is the "
            "test set, an optimistic, test-selected number); runs trained without a "
            "per-epoch evaluation have none, and the column says over how many runs it is. "
            + (f"Time to each accuracy level: {levels.source_note}. " if levels.source else
               f"Time to an accuracy level: {levels.source_note}. " if levels.source_note
               else "")
            + (f"Accuracy levels {levels.note}" if levels.note else ""), "",
            "Published test accuracies after the full schedule: He et al. (2016), \"Deep "
            "Residual Learning for Image Recognition\", Table 6: "
            + _published(HE_TABLE6, models_shown) + "; the reproduction this project was "
            "specified from, Table 1: " + _published(REPRODUCTION, models_shown) + ".", "",
            table1_markdown(rows, levels.levels, levels.source),
            "Also as [table1.csv](table1.csv); per run: [runs.csv](runs.csv).", ""]


def _beside_published(first: Sequence[Run], rows: Sequence[dict[str, Any]]) -> list[str]:
    models_shown = [r["model"] for r in rows]
    run = max(first, key=lambda r: r.images_seen)
    ours = f"{run.passes:g} passes ({run.iterations:,} iterations)"
    last_points = {m: [r.last_point for r in g if r.last_point]
                   for m, g in by_model(first).items()}
    return ["## Beside the published numbers", "",
            f"**Ours are after {ours}; He et al.'s after {HE_ET_AL_SCHEDULE}; the reproduction's "
            f"after {REPRODUCTION_SCHEDULE}.** They are set side by side to show how far the short "
            "schedule gets, not as a like-for-like comparison. Standard errors: of the mean over "
            "seeds for several seeds; for one run, binomial on the test images, or over the last "
            "curve segment's batches for the training error (information only)."
            + ("" if any(m in HE_TABLE6 or m in REPRODUCTION for m in models_shown) else
               " The published columns are empty because the published tables give "
               + ", ".join(sorted(set(HE_TABLE6) | set(REPRODUCTION)))
               + f", none of this report's models ({', '.join(models_shown)})."), "",
            beside_published(rows, last_points, HE_TABLE6, REPRODUCTION, ours=ours,
                             theirs=HE_ET_AL_SCHEDULE,
                             reproduction_schedule=REPRODUCTION_SCHEDULE), ""]


def provenance_section(table: str) -> list[str]:
    return ["## Provenance", "", "What each run ran on and from, as its own files record "
            "it (metrics.json, history.json); \"not recorded\": the run was written "
            "before the field existed, or is still in progress.", "", table, ""]


def cost_section(table: str) -> list[str]:
    return ["## Study cost", "",
            "Per network and seed: training wall time (the sum of the epochs' times; evaluations "
            "and the report not included) and the machine's mean 1-minute load average over the "
            "epochs (the reference trainer records it once, at the end). The machine's cores are "
            "shared: a load above the core count slows every run.", "", table, ""]


def _figures(first: Sequence[Run], figure_stems: Sequence[str]) -> list[str]:
    lines = ["## Figures", ""]
    for stem in figure_stems:
        kind = stem.rsplit("_", 1)[0] if stem.split("_")[-1].isdigit() else stem
        if kind == "curves" and not all(r.curve_points for r in first):
            kind = "curves_history"
        if kind == "reference_curves":
            continue  # shown in its section
        caption = CAPTIONS.get(kind, stem).format(eval_set=first[0].eval_set)
        lines += [f"![{stem}](figures/{stem}.png)", "", f"*{caption}* "
                  f"([SVG](figures/{stem}.svg))", ""]
    return lines
