"""Where training runs stand, as a Markdown table: for runs in progress and finished.

    python scripts/run_progress.py ~/table1/runs/*-seed0

One row per run folder: epochs done of the recipe's, the last and best test accuracy so
far (the test set is the per-epoch evaluation set of the default recipe; a run with
--validation_split says "val"), training images/s and wall seconds per epoch (median of
the last 10 epochs; the seconds include the per-epoch evaluation), the 1-minute load
average over those epochs, and the expected finish at that pace from now (UTC). The
machine is the one this script runs on: run it where the runs train.
"""

from __future__ import annotations

import datetime
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_resnet_cifar import environment  # noqa: E402
from keras_resnet_cifar.training import rundir  # noqa: E402

RECENT = 10  # epochs the pace is taken over


def progress(run: Path, now: datetime.datetime) -> dict[str, object]:
    """One run's figures (see the module docstring); None where it has no epoch yet."""
    config = (rundir.read_config(run) if run.exists() else None) or {}
    rows = rundir.read_history(run) if run.exists() else []
    total = config.get("epochs")
    row: dict[str, object] = {"run": run.name, "done": len(rows), "total": total,
                              "finished": rundir.read_metrics(run) is not None}
    if not rows:
        return row
    recent = rows[-RECENT:]
    seconds = statistics.median(r["epoch_time_s"] for r in recent)
    row.update(
        last=rows[-1]["val_accuracy"], best=max(r["val_accuracy"] for r in rows),
        best_epoch=max(rows, key=lambda r: r["val_accuracy"])["epoch"],
        img_s=statistics.median(r["images_per_sec"] for r in recent), seconds=seconds,
        load=statistics.mean(r["load_average"] for r in recent if "load_average" in r),
        finish=None if row["finished"] or not total else
        now + datetime.timedelta(seconds=seconds * (total - len(rows))))
    return row


def markdown(rows: list[dict[str, object]], now: datetime.datetime) -> str:
    lines = [f"Read {now:%Y-%m-%d %H:%M} UTC on {environment.cpu_model()} "
             f"({os.cpu_count()} cores).", "",
             "| run | epochs | test accuracy, last | best (epoch) | train img/s | s/epoch "
             "| load | expected finish (UTC) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "last" not in r:
            lines.append(f"| {r['run']} | 0/{r['total'] or '?'} | | | | | | not started |")
            continue
        finish = "finished" if r["finished"] else (
            f"{r['finish']:%Y-%m-%d %H:%M}" if r["finish"] else "")
        lines.append(
            f"| {r['run']} | {r['done']}/{r['total']} | {r['last']:.2%} | {r['best']:.2%} "
            f"({r['best_epoch']}) | {r['img_s']:.0f} | {r['seconds']:.0f} | {r['load']:.1f} "
            f"| {finish} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    runs = [Path(a).expanduser() for a in argv[1:]]
    if not runs:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    # A folder that does not exist yet is a run not started; anything else must be a run.
    strays = [str(r) for r in runs if r.exists() and not rundir.is_run_dir(r)]
    if strays:
        print(f"error: not a run folder: {', '.join(strays)}", file=sys.stderr)
        return 1
    now = datetime.datetime.now(datetime.timezone.utc)
    print(markdown([progress(r, now) for r in runs], now))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
