"""The study's report: Table 1, the findings with verdicts, the figures, report.md.

    python -m keras_resnet_cifar.report runs/study/runs/* --out=runs/study/report

One module per part, each usable alone:

* :mod:`~keras_resnet_cifar.report.runs`: loading run directories (through
  :mod:`keras_resnet_cifar.rundir`), the per-run numbers, the accuracy levels;
* :mod:`~keras_resnet_cifar.report.tables`: Table 1 (mean ± std over seeds, n),
  as Markdown and CSV;
* :mod:`~keras_resnet_cifar.report.findings`: He et al.'s claims measured on the
  table, each with a verdict and its standard error;
* :mod:`~keras_resnet_cifar.report.figures`: the figures, drawn by
  :mod:`keras_resnet_cifar.plots`;
* :mod:`~keras_resnet_cifar.report.markdown`: report.md's text.

The report needs no TensorFlow (model names are read by :mod:`keras_resnet_cifar.arch`,
not :mod:`keras_resnet_cifar.models`): importing the package stays quick and quiet.

:func:`build` returns every file's content; :func:`write_report` writes them into
a folder:

    report.md            the report: setup, hardware, commands, table, findings, figures
    table1.md/.csv       one row per model: mean (± std over seeds) and n
    runs.csv             one row per run
    findings.json        every finding with its numbers and verdict
    figures/*.png/.svg   error curves inside the runs (He et al. Fig. 1 / 6), per-epoch
                         curves, confusion matrices, depth sweep, layer stats
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.report import figures, findings, markdown, runs, tables


@dataclasses.dataclass
class Report:
    """Everything a report consists of, before it is written."""

    texts: dict[str, str]          # file name -> content
    figures: dict[str, Any]        # figure stem -> matplotlib Figure
    levels: tuple[float, ...]      # the accuracy levels of "epochs to X%"
    findings: list[dict[str, Any]]


def build(run_dirs: Sequence[str | os.PathLike], *,
          accuracy_levels: Sequence[float] | None = None,
          command: str | None = None) -> Report:
    """Loads the runs and computes the tables, findings, figures and report.md.

    Args:
        run_dirs: run directories.
        accuracy_levels: levels for "epochs to X%"; None chooses them from the
            runs (:func:`keras_resnet_cifar.report.runs.choose_levels`).
        command: the command line to record in report.md.

    Raises:
        UserError: no run directories, or one that is not a run.
    """
    if not run_dirs:
        raise UserError("No run directories given.")
    loaded = [runs.load_run(d) for d in run_dirs]
    if accuracy_levels is None:
        levels, note = runs.choose_levels(loaded)
    else:
        levels, note = tuple(accuracy_levels), None
    known = runs.recipes(loaded)
    several = len(known) > 1  # never pooled, never compared
    summaries = [runs.run_summary(r, levels, runs.recipe_number(r, known) if several else None)
                 for r in loaded]
    rows = tables.table1(summaries, levels)
    if several:
        found = [findings.not_comparable(len(known))]
    else:
        first = runs.first_of_each_model(loaded)
        stats = {m: r.layer_stats for m, r in first.items() if r.layer_stats}
        curves = {m: r.curve_points for m, r in first.items() if r.curve_points}
        found = (findings.curve_findings(curves, next(iter(first.values())).passes_per_epoch)
                 if curves else []) + findings.derive(rows, stats, levels, levels_note=note)
    figs = figures.figures(loaded)
    table_md = tables.table1_markdown(rows, levels)
    texts = {
        "table1.md": table_md,
        "table1.csv": tables.to_csv(rows),
        "runs.csv": tables.to_csv(summaries),
        "findings.json": json.dumps(found, indent=2) + "\n",
        "report.md": markdown.render_markdown(loaded, rows, found, list(figs), levels,
                                              command, levels_note=note),
    }
    return Report(texts=texts, figures=figs, levels=levels, findings=found)


def write(report: Report, out: str | os.PathLike) -> Path:
    """Writes ``report`` into ``out`` (each file atomically); returns report.md's path."""
    from keras_resnet_cifar import plots

    out = Path(out)
    for stem, fig in report.figures.items():
        plots.save(fig, out / "figures" / stem)
    for name, text in report.texts.items():
        fileio.write_text(out / name, text)
    return out / "report.md"


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 accuracy_levels: Sequence[float] | None = None,
                 command: str | None = None) -> Path:
    """:func:`build` then :func:`write`; returns report.md's path."""
    return write(build(run_dirs, accuracy_levels=accuracy_levels, command=command), out)
