"""A report assembled from its parts: report() returns every file's content, write()
writes them into a folder (the files: see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.analysis import plots
from keras_resnet_cifar.analysis.results import (figures, findings, markdown, recipes, reference,
                                                full_recipe, runs, tables)

MODES = ("auto", "study", "full_recipe")


@dataclasses.dataclass
class Report:
    """Everything a report consists of, before it is written."""

    texts: dict[str, str]          # file name -> content
    figures: dict[str, Any]        # figure stem -> matplotlib Figure
    levels: tuple[float, ...]      # the accuracy levels of "time to X%"
    findings: list[dict[str, Any]]


def report(run_dirs: Sequence[str | os.PathLike], *,
           reference_dirs: Sequence[str | os.PathLike] = (),
           variant_dirs: Sequence[str | os.PathLike] = (),
           accuracy_levels: Sequence[float] | None = None,
           command: str | None = None, mode: str = "auto") -> Report:
    """The tables, findings, figures and report.md of the runs. `accuracy_levels` None: chosen
    from the runs; `mode` "auto": full_recipe when the runs are such runs, else "study";
    `variant_dirs`: runs that differ from the study's recipe in one field, set beside them.
    UserError: no runs, a directory that is not a run, runs of different recipes, a
    reference run among the study's, or reference, variant runs or levels in full_recipe."""
    if not run_dirs:
        raise UserError("No run directories given.")
    loaded = [runs.load_run(d) for d in run_dirs]
    stray = next((r for r in loaded if r.trainer != runs.PROJECT_TRAINER), None)
    if stray is not None:
        raise UserError(f"{stray.path} was written by another trainer ({stray.trainer}): "
                        "give it as a reference run (reference_runs), not as a study run.",
                        argument="reference_runs")
    recipes.check_one_recipe(loaded, "study's runs")
    refs = [runs.load_run(d) for d in reference_dirs]
    variants = [runs.load_run(d) for d in variant_dirs]
    if mode not in MODES:
        raise UserError(f"Unknown report mode {mode!r}: one of {', '.join(MODES)}.",
                        argument="mode")
    if mode == "full_recipe" or (mode == "auto" and full_recipe.is_full_recipe(loaded)):
        unused = [name for name, given in (("reference_runs", refs), ("variant_runs", variants),
                                           ("accuracy_levels", accuracy_levels)) if given]
        if unused:  # never dropped in silence
            raise UserError(f"The full-recipe report (Table 1 beside the published figures) "
                            f"takes no {', '.join(unused)}: those belong to the study's "
                            "report (--mode=study).", argument=tuple(unused))
        return _full_recipe(loaded, command)
    levels = runs.levels_for(loaded, accuracy_levels)
    summaries = [runs.run_summary(r, levels.levels, levels.source) for r in loaded]
    rows = tables.table1(summaries, levels.levels)
    found = findings.derive(loaded)
    figs = figures.figures(loaded)
    compared = reference.compare(loaded, refs)
    for model in compared["models"][:1]:
        fig = figures.reference_curves([r for r in loaded if r.model == model],
                                       [r for r in refs if r.model == model])
        if fig is not None:
            figs["reference_curves"] = fig
    figure = "reference_curves" if "reference_curves" in figs else None
    sections = reference.markdown(compared, reference.batch_norm_rows(refs), figure) if refs else []
    varied = reference.compare(loaded, variants, variant=True)
    sections += reference.variant_markdown(varied) if variants else []
    cost = tables.cost_rows(summaries + [runs.run_summary(r, ()) for r in refs + variants])
    sections += (markdown.provenance_section(tables.provenance_markdown(loaded + refs + variants))
                 + markdown.cost_section(tables.cost_markdown(cost)))
    texts = {
        "table1.md": tables.table1_markdown(rows, levels.levels, levels.source),
        "table1.csv": tables.to_csv(rows), "runs.csv": tables.to_csv(summaries),
        "cost.csv": tables.to_csv(cost),
        "provenance.csv": tables.to_csv([tables.provenance_row(r)
                                         for r in loaded + refs + variants]),
        "findings.json": json.dumps(found, indent=2) + "\n",
        "report.md": markdown.render_markdown(loaded, rows, found, list(figs), levels,
                                              command=command, sections=sections)}
    if refs:
        texts["reference.json"] = json.dumps(compared, indent=2, default=str) + "\n"
    if variants:
        texts["variant.json"] = json.dumps(varied, indent=2, default=str) + "\n"
    return Report(texts=texts, figures=figs, levels=levels.levels, findings=found)


def _full_recipe(loaded: Sequence[runs.Run], command: str | None) -> Report:
    # The paper's claims are about the end of the schedule: only finished runs count.
    found = findings.derive([r for r in loaded if full_recipe.finished(r)])
    figs = full_recipe.figures(loaded)
    texts = {
        "report.md": full_recipe.render(loaded, found, list(figs), command),
        "table1.csv": tables.to_csv(full_recipe.table1_rows(loaded)),
        "status.csv": tables.to_csv([full_recipe.status(r)
                                     for r in full_recipe.ordered(loaded)]),
        "provenance.csv": tables.to_csv([tables.provenance_row(r)
                                         for r in full_recipe.ordered(loaded)]),
        "findings.json": json.dumps(found, indent=2) + "\n"}
    return Report(texts=texts, figures=figs, levels=(), findings=found)


def write(built: Report, out: str | os.PathLike) -> Path:
    """Writes `built` into `out` (each file atomically); returns report.md's path."""
    out = Path(out)
    fileio.make_dir(out / "figures" if built.figures else out)
    for stem, fig in built.figures.items():
        plots.save(fig, out / "figures" / stem)
    for name, text in built.texts.items():
        fileio.write_text(out / name, text)
    return out / "report.md"


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                 **options: Any) -> Path:
    """report(run_dirs, **options), then write; returns report.md's path."""
    return write(report(run_dirs, **options), out)
