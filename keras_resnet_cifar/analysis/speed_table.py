"""The benchmark's report (speed.run's dict) as the text table the command prints."""

from __future__ import annotations

from typing import Any


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table (every figure of the JSON but the samples)."""
    lines, when = _settings(report)
    rows, ratios = _rows(report)
    width = max([44] + [len(label) for label, _ in rows])
    lines.append(f"{'measurement':{width}s} {'median':>10s} {'min':>10s} {'max':>10s} "
                 f"{'spread':>7s}")
    lines += [f"{label:{width}s} {figures}" for label, figures in rows]
    if ratios:
        lines += ["", f"project / PyTorch peer, median of A B pairs: {'; '.join(ratios)} "
                      f"(measured {when}; compare only runs at a load near the benchmark's "
                      "own, about 2 on 2 cores)"]
    return "\n".join(lines)


def _settings(report: dict[str, Any]) -> tuple[list[str], str]:
    """The lines above the table (machine, settings) and when it was measured."""
    m, s = report["machine"], report["settings"]
    when = (f"{m['date']}; load average (1, 5, 15 min) {' '.join(map(str, m['load_average']))}"
            f" before, {' '.join(map(str, m['load_average_after']))} after")
    lines = [f"machine: {m['cpu']}, {m['cpu_cores']} cores, GPUs {m['gpus'] or 'none'}; "
             f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}; "
             f"TF_ENABLE_ONEDNN_OPTS={m['onednn']}; threads intra {m['intra_op_threads']} "
             f"inter {m['inter_op_threads']} (0 = TF default); bfloat16 CPU flags: "
             f"{_bf16(m.get('bfloat16_cpu_flags'))}; {when}"]
    if report["training"]:  # training settings only when training was measured
        lines.append(
            f"settings: batch {s['batch_size']}, {s['steps']} steps x {s['repeats']} repeats "
            "after a warm-up, " + (f"variants in turn: {', '.join(s['variants'])}, "
                                   if s.get("variants") else
                                   f"{s['mixed_precision']}, jit_compile={s['jit_compile']}, ")
            + f"steps_per_execution={s['steps_per_execution']}, data: {s['data']}")
    if "skipped" not in report["inference"]:
        threads = f"{s['num_threads']} thread(s)" if s.get("num_threads") else "every core"
        lines.append(
            f"inference settings: {s.get('inference_runs')} timed batch-1 calls and batch-128 "
            f"throughput per model after a warm-up, {threads} for .tflite models, "
            f"images: {s['data']}")
    return lines + [""], when


def _rows(report: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, figures) of each measurement, and the peer ratios' summaries."""
    rows: list[tuple[str, str]] = []
    ratios = []

    def row(name, stats, fmt="{:10.1f}"):
        rows.append((name, " ".join(fmt.format(stats[k]) for k in ("median", "min", "max"))
                     + f" {stats['spread_pct']:6.1f}%"))

    def ratio_row(label, ratio):
        rows.append((label, f"{ratio['median']:10.3f}   pairs: "
                     + " ".join(f"{r:.3f}" for r in ratio["pairs"])))

    for name, entry in report["training"].items():
        row(f"train {name} (img/s, {entry['params']:,} params)", entry["images_per_sec"])
        if "ratio_to_first" in entry:
            ratio_row(f"ratio {name} / {entry['ratio_to_first']['of']}", entry["ratio_to_first"])
        for mode, theirs in entry.get("peer", {}).items():
            if theirs.get("precision", "float32") != "float32":
                mode = f"{mode}, {theirs['precision'].removeprefix('mixed_')} autocast"
            row(f"peer  {name} (img/s, PyTorch, {mode})", theirs["images_per_sec"])
            ratio_row(f"ratio {name} (project / peer {mode})", theirs["ratio"])
            ratios.append(f"{name} {theirs['ratio']['median']:.2f}x vs {mode}")
    for name, entry in report["evaluation"].items():
        row(f"evaluate {name} (img/s)", entry["images_per_sec"])
    p = report["pipeline"]
    if "skipped" in p:
        rows.append(("input pipeline", f"skipped: {p['skipped']}"))
    else:
        row("input pipeline alone (img/s)", p["images_per_sec"], "{:10.0f}")
        rows.append(("input pipeline / fastest training", f"{p['times_fastest_training']:10.1f}x"))
    inference = report["inference"]
    if "skipped" in inference:
        rows.append(("inference", f"skipped: {inference['skipped']}"))
    else:
        for key, entry in inference.items():
            row(f"{key} batch-1 (ms)", entry["latency_ms_batch1"], "{:10.2f}")
            row(f"{key} batch-128 (img/s)", entry["images_per_sec_batch128"])
    return rows, ratios


def _bf16(flags: list[str] | None) -> str:
    if flags is None:
        return "unknown"
    return " ".join(flags) if flags else "none (no native bfloat16 arithmetic)"
