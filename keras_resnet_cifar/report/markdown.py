"""report.md's text, from loaded runs, Table 1's rows, the findings and the figure names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import train_flags
from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.report.runs import Run, recipe_of, recipes
from keras_resnet_cifar.report.tables import beside_published, table1_markdown

# Published CIFAR-10 test accuracies to set ours beside (200 epochs / 64k iterations).
# He et al. (2016), "Deep Residual Learning for Image Recognition", Table 6 (CIFAR-10
# test error: ResNet-20 8.75%, ResNet-56 6.97%); plain nets appear there only in figures.
HE_ET_AL_TABLE6 = {"resnet20": 1 - 0.0875, "resnet56": 1 - 0.0697}
# The reproduction this project was specified from, its Table 1 (200 epochs on a GPU).
REPRODUCTION_TABLE1 = {"plain20": 0.9084, "resnet20": 0.9195, "plain56": 0.8671,
                       "resnet56": 0.9325}
PAPER_EPOCHS = TrainConfig().epochs
# He et al. trained for 64k iterations of batch 128 on 45k images (a 5k validation hold-out).
HE_ET_AL_SCHEDULE = "64k iterations (about 182 passes over their 45k training images)"
REPRODUCTION_SCHEDULE = f"{PAPER_EPOCHS} epochs"

CAPTIONS = {
    "error_curves": "He et al.'s Figures 1 and 6 from points inside the runs: error against "
                    "passes over the training set (iterations on the top axis); dashed: "
                    "training error over the augmented batches since the previous point, "
                    "solid: test error on a fixed subset of the test set (the same images at "
                    "every point, for every network), star: the whole test set at the end.",
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


def portable(path: str | os.PathLike) -> str:
    """``path`` as a reader can use it: relative to the working folder when inside it,
    ``~/...`` when inside the home folder, else as given."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def portable_command(argv: Sequence[str]) -> str:
    """A shell command line with every absolute path in it made :func:`portable`."""
    import shlex

    def fix(arg: str) -> str:
        name, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if os.path.isabs(value):
            value = portable(value)
        return f"{name}{eq}{value}"

    return shlex.join([fix(a) for a in argv])


def train_command(run: Run) -> str:
    """The ``train`` command that reproduces ``run`` into its own run directory."""
    try:
        config = TrainConfig.from_dict(run.config)
        args = train_flags.changed_flags(config)
    except ValueError:  # a config written by another version: show it as it is
        args = [f"--{k}={v}" for k, v in run.config.items()]
    args = [f"--data_dir={portable(run.config['data_dir'])}" if a.startswith("--data_dir=")
            else a for a in args]
    return " ".join(["python -m keras_resnet_cifar.train", *args,
                     f"--model_dir={portable(run.path)}"])


def _published(levels_table: dict[str, float], models: Sequence[str]) -> str:
    """"resnet20 91.25%, ..." for the models the table has; says so when it has none."""
    found = ", ".join(f"{m} {100 * levels_table[m]:.2f}%" for m in models if m in levels_table)
    return found or (f"none of this report's models (it gives {', '.join(levels_table)})")


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
    share = ", ".join(f"{100 * b / epochs:g}%" for b in inside)
    if inside:
        rate = (f"{config['learning_rate']}, x{config['lr_decay']} after epochs "
                f"{', '.join(map(str, inside))} ({share} of the steps; set before every step)")
    else:
        rate = f"{config['learning_rate']} throughout"
    if beyond:
        rate += (f" (--lr_boundaries {', '.join(map(str, beyond))} lie at or beyond its "
                 f"{epochs} epoch{'s' if epochs != 1 else ''}: never reached)")
    return (f"{epochs} epoch{'s' if epochs != 1 else ''}, an epoch being {epoch}; SGD "
            f"momentum {config['momentum']}, weight decay {config['weight_decay']}, batch "
            f"{config['batch_size']}; learning rate {warm}{rate}"
            + "; per-epoch evaluation on "
            + (f"the first {config['eval_steps'] * config['batch_size']:,} images of the "
               f"{'validation' if config.get('validation_split') else 'test'} set"
               if config.get("eval_steps") else "the whole eval set") + ".")


def render_markdown(runs: Sequence[Run], rows: Sequence[dict[str, Any]],
                    found: Sequence[dict[str, Any]], figure_stems: Sequence[str],
                    levels: Sequence[float], command: str | None = None,
                    levels_note: str | None = None) -> str:
    """report.md's text.

    Args:
        runs: the loaded runs.
        rows: Table 1's rows.
        found: the findings.
        figure_stems: the figures written (``figures/<stem>.png`` and ``.svg``).
        levels: the accuracy levels of the "epochs to X%" columns.
        command: the command line that wrote the report.
        levels_note: how the levels were chosen, when the runs chose them.
    """
    first = sorted(runs, key=lambda r: (r.spec.residual, r.spec.depth, r.seed))
    metrics = next((r.metrics for r in first if r.metrics), {}) or {}
    eval_set = first[0].eval_set
    models_shown = [r["model"] for r in rows]
    lines = ["# Plain vs residual networks on CIFAR-10: the study", ""]
    seen = max(r.images_seen for r in first)
    train_size = first[0].train_set_size
    if seen < PAPER_EPOCHS * train_size:
        lines += [f"> **Reduced schedule.** Each run saw at most {seen:,} training images "
                  f"({seen / train_size:.2f} passes over the {train_size:,}), not the "
                  f"paper's {PAPER_EPOCHS} epochs: these numbers are not comparable with "
                  "the published ones below, which need the full schedule.", ""]
    lines += ["## Setup", ""]
    known = recipes(first)
    lines.append(f"- Runs: {len(runs)} ({', '.join(f'{r.model} seed {r.seed}' for r in first)}); "
                 + ("all with the same recipe." if len(known) == 1 else
                    f"**{len(known)} different recipes**: Table 1 never pools runs of "
                    "different recipes (its recipe column), and the findings compare "
                    "networks only within one recipe."))
    if len(known) == 1:
        lines.append(f"- Schedule: {_schedule(first[0])}")
    for number, recipe in enumerate(known if len(known) > 1 else [], 1):
        members = [r for r in first if recipe_of(r) == recipe]
        lines.append(f"- Recipe {number} ({', '.join(f'{r.model} seed {r.seed}' for r in members)}"
                     f"): {_schedule(members[0])}")
    curve = next((r.curve for r in first if r.curve), None)
    if curve:
        lines.append(f"- Curve points: {curve['points_per_epoch']} per epoch (every "
                     f"~{curve['steps_per_epoch'] / curve['points_per_epoch']:.0f} steps): the "
                     "training error over the augmented batches since the previous point "
                     "(standard error over those batches) and the test error on "
                     f"{curve['test_subset']['images']:,} fixed test images (the same for every "
                     "point and network; binomial standard error); the final test error on the "
                     "whole test set.")
    counts = sorted({r["final_test_images"] for r in rows if r["final_test_images"]})
    source = metrics.get("data_source", "n/a")
    if first[0].config.get("data_dir"):
        source = source.replace(first[0].config["data_dir"], portable(first[0].config["data_dir"]))
    lines.append(f"- Data: {source}; final test numbers on "
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
    lines += [train_command(r) for r in first]
    lines += ["```", "", "## Table 1", "",
              f"Mean ± sample std over seeds where n > 1. \"Best\" is the highest "
              f"per-epoch accuracy on the set named in the header ({eval_set}"
              + (f", {first[0].config['eval_steps'] * first[0].config['batch_size']:,} images"
                 if first[0].config.get("eval_steps") else "")
              + "), as are the epochs to each accuracy level; when that is the test set, "
              "\"best\" is an optimistic, test-selected number."
              + (f" Accuracy levels {levels_note}" if levels_note else ""), "",
              "Published test accuracies after the full schedule: He et al. (2016), "
              "\"Deep Residual Learning for Image Recognition\", Table 6: "
              + _published(HE_ET_AL_TABLE6, models_shown) + "; the reproduction this "
              "project was specified from, Table 1: "
              + _published(REPRODUCTION_TABLE1, models_shown) + ".", "",
              table1_markdown(rows, levels), "Also as [table1.csv](table1.csv); per run: "
              "[runs.csv](runs.csv).", ""]
    listed = [m for m in models_shown if m in HE_ET_AL_TABLE6 or m in REPRODUCTION_TABLE1]
    if len(known) > 1:
        lines += ["## Beside the published numbers", "",
                  "Not shown: the runs have different recipes; report each recipe's runs "
                  "separately to set them beside the published numbers.", ""]
    elif first:
        run = max(first, key=lambda r: r.images_seen)
        ours = f"{run.passes:g} passes ({run.iterations:,} iterations)"
        last_points = {r.model: r.curve_points[-1] for r in first if r.curve_points}
        lines += ["## Beside the published numbers", "",
                  f"**Ours are after {ours}; He et al.'s after {HE_ET_AL_SCHEDULE}; the "
                  f"reproduction's after {REPRODUCTION_SCHEDULE}.** They are set side by side "
                  "to show how far the short schedule gets, not as a like-for-like comparison. "
                  "Standard errors: binomial on the test images for one run, of the mean over "
                  "seeds for several; for the training error, over the last curve segment's "
                  "batches."
                  + ("" if listed else
                     " The published columns are empty because the published tables give "
                     + ", ".join(sorted(set(HE_ET_AL_TABLE6) | set(REPRODUCTION_TABLE1)))
                     + f", none of this report's models ({', '.join(models_shown)})."), "",
                  beside_published(rows, last_points, HE_ET_AL_TABLE6, REPRODUCTION_TABLE1,
                                   ours=ours, theirs=HE_ET_AL_SCHEDULE,
                                   reproduction_schedule=REPRODUCTION_SCHEDULE), ""]
    lines += ["## Findings", ""]
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
