"""Parity of exported models with the source model: agreement, accuracy, size, latency.
Pure numpy over callables (pixels -> probabilities): a SavedModel, a TFLite interpreter or
the Keras model alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import numpy as np

from keras_resnet_cifar.errors import plural

Predict = Callable[[np.ndarray], np.ndarray]

# Two probabilities closer than this are a near tie: 2/256, two steps of an int8 output.
CLOSE = 2 / 256


def compare(reference: np.ndarray, probabilities: np.ndarray,
            labels: np.ndarray | None = None) -> dict:
    """How an export's (N, C) probabilities differ from the reference's; a close
    disagreement is one where the reference's two top probabilities are within CLOSE."""
    ref_top, top = reference.argmax(axis=1), probabilities.argmax(axis=1)
    two = np.sort(reference, axis=1)[:, -2:]
    close = (two[:, 1] - two[:, 0] < CLOSE) if two.shape[1] > 1 else np.zeros(len(top), bool)
    return {
        "top1_agreement": float(np.mean(ref_top == top)),
        "disagreements": int(np.sum(ref_top != top)),
        "close_disagreements": int(np.sum((ref_top != top) & close)),
        "max_prob_diff": float(np.max(np.abs(reference - probabilities))),
        "accuracy": None if labels is None else float(np.mean(top == labels)),
    }


def latency_ms(predict: Predict, image: np.ndarray, *, warmup: int = 10, runs: int = 100) -> dict:
    """Median and p90 milliseconds of `runs` timed batch-1 calls, after `warmup` ones."""
    for _ in range(warmup):
        predict(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(image)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median": statistics.median(times), "p90": times[int(0.9 * (len(times) - 1))],
            "runs": runs}


def report(reference: np.ndarray, variants: Mapping[str, dict], images: np.ndarray,
           labels: np.ndarray | None, *, latency_runs: int = 100,
           progress: Callable[[str], None] | None = None) -> dict:
    """`compare` and `latency_ms` of each variant: name -> {"predict", "predict_one" (batch
    1), "size_bytes", "file"}; latency_runs=0 skips latency."""
    out = {}
    for name, v in variants.items():
        if progress:
            progress(name)
        out[name] = {**compare(reference, np.asarray(v["predict"](images)), labels),
                     "size_bytes": v.get("size_bytes"), "file": v.get("file"),
                     "latency_ms": (latency_ms(v["predict_one"], images[:1], runs=latency_runs)
                                    if latency_runs else None)}
    return {"images": int(len(images)), "labelled": labels is not None, "variants": out}


def format_table(parity: dict) -> str:
    header = (f"{'variant':<22}{'top-1 agree':>12}{'max |dp|':>10}{'accuracy':>10}"
              f"{'size':>10}{'b1 median':>11}")
    lines = [f"parity on {plural(parity['images'], 'image')}", header, "-" * len(header)]
    for name, r in parity["variants"].items():
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.2f} MB"
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']['median']:.2f} ms"
        lines.append(f"{name:<22}{100 * r['top1_agreement']:>11.2f}%{r['max_prob_diff']:>10.2e}"
                     f"{acc:>10}{size:>10}{lat:>11}")
    for name, r in parity["variants"].items():
        if r["top1_agreement"] < 0.99 and "close_disagreements" in r:
            lines.append(
                f"note: {name} disagrees on {plural(r['disagreements'], 'image')}; "
                f"{r['close_disagreements']:,} of them are near ties of the Keras model (its "
                f"two top probabilities within {CLOSE:.4f}), which quantisation tips either "
                "way. For scale: the reference ResNet-56's int8 export agrees on 99.02% "
                "(docs/deployment.md).")
    return "\n".join(lines)
