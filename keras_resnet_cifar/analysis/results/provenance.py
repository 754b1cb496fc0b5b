"""What each run ran on and from (CPU, load, versions, code commit, data path as given),
from its metrics.json and history.json; "not recorded" for fields older runs lack."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from keras_resnet_cifar.analysis.results.runs import Run

NOT_RECORDED = "not recorded"


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
    return f"{used} (config.json; as given: {NOT_RECORDED})" if used else NOT_RECORDED


def row(run: Run) -> dict[str, Any]:
    m = run.metrics or {}
    loads = [r["load_average"] for r in run.history if r.get("load_average") is not None]
    return {
        "trainer": run.trainer, "model": run.model, "seed": run.seed,
        "epochs_done": len(run.history),
        "cpu": _text(m.get("cpu")), "cpu_cores": _text(m.get("cpu_cores")),
        "gpus": _text(m.get("gpus")) if "gpus" in m else NOT_RECORDED,
        "load_average": (f"{min(loads):.1f}-{max(loads):.1f} (mean {sum(loads) / len(loads):.1f})"
                         if loads else f"{m['load_average_1min_at_end']:.1f} at the end"
                         if m.get("load_average_1min_at_end") is not None else NOT_RECORDED),
        "tensorflow": _text(m.get("tensorflow")), "keras": _text(m.get("keras")),
        "python": _text(m.get("python")),
        "git_commit": _text(m.get("git_commit")) if "git_commit" in m else NOT_RECORDED,
        "data_path": data_path(run),
        "finished_at": _text(m.get("finished_at")) if m else "in progress (no metrics.json)",
    }


def rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    return [row(r) for r in runs]


def machines(runs: Sequence[Run]) -> str:
    """"AMD EPYC (8 runs), Intel(R) Xeon(R) Processor (4 runs), 2 cores each" from every run,
    not from the first."""
    cpus = Counter(_text((r.metrics or {}).get("cpu")) for r in runs)
    cores = sorted({_text((r.metrics or {}).get("cpu_cores")) for r in runs})
    gpus = sorted({_text((r.metrics or {}).get("gpus")) for r in runs if r.metrics})
    return (", ".join(f"{cpu} ({n} run{'s' if n > 1 else ''})" for cpu, n in cpus.most_common())
            + f"; cores: {', '.join(cores)}; GPUs: {', '.join(gpus) or NOT_RECORDED}")


def markdown(runs: Sequence[Run]) -> str:
    head = ["trainer", "model", "seed", "epochs", "CPU", "cores", "1-min load over the epochs",
            "TensorFlow", "Keras", "Python", "code commit", "data path as given", "finished"]
    keys = ["trainer", "model", "seed", "epochs_done", "cpu", "cpu_cores", "load_average",
            "tensorflow", "keras", "python", "git_commit", "data_path", "finished_at"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows(runs):
        lines.append("| " + " | ".join(str(r[k]).replace("|", "/") for k in keys) + " |")
    return "\n".join(lines) + "\n"
