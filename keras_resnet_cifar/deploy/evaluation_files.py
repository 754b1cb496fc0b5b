"""The evaluation files of a folder (a run directory or any other): evaluation.json (the
metrics' dict), per_class.csv and confusion_matrix.csv (rows: true class, columns: predicted);
writing them, and whether they are newer than the run's model.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from keras_resnet_cifar import fileio, run_files

RESULT_FILES = (run_files.EVALUATION, run_files.PER_CLASS, run_files.CONFUSION)


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def check_destination(out_dir: str | os.PathLike) -> None:
    """Refuses, before writing any, a folder where a result is a folder, link or special file."""
    fileio.check_can_make_dir(out_dir)
    for name in RESULT_FILES:
        fileio.check_not_link(Path(out_dir) / name)


def write_results(result: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    check_destination(out)
    fileio.make_dir(out)
    names = result["class_names"]
    per_class = [("class", "precision", "recall", "support")] + [
        (r["class"], f"{r['precision']:.6f}", f"{r['recall']:.6f}", r["support"])
        for r in result["per_class"]]
    confusion = [("true\\predicted", *names)] + [
        (name, *row) for name, row in zip(names, result["confusion_matrix"])]
    fileio.write_json(out / RESULT_FILES[0], result)
    fileio.write_text(out / RESULT_FILES[1], _csv(per_class))
    fileio.write_text(out / RESULT_FILES[2], _csv(confusion))
    return [out / f for f in RESULT_FILES]


def is_current(run_dir: str | os.PathLike) -> bool:
    """Whether the run's evaluation.json is newer than its model.keras."""
    result = run_files.path(run_dir, run_files.EVALUATION)
    model = run_files.path(run_dir, run_files.MODEL)
    return (result.exists() and model.exists()
            and result.stat().st_mtime >= model.stat().st_mtime)
