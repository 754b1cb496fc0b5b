"""CIFAR-10 class names and ranked predictions; numpy only (edge devices, the serving client)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_resnet_cifar.errors import printable

# In label order: index i is the name of label i.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def top_k(probabilities: np.ndarray, class_names: Sequence[str],
          k: int = 3) -> list[list[tuple[str, float]]]:
    """The `k` most probable (class name, probability) of each row of (N, C), best first."""
    probabilities = np.asarray(probabilities, np.float64)
    k = max(1, min(k, probabilities.shape[1]))
    # Stable sort on the negated values: ties keep label order, like argmax.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[(class_names[j], float(p[j])) for j in row] for row, p in zip(order, probabilities)]


def format_ranked(predictions: Sequence[dict]) -> str:
    """One line per {"input": name, "top": [{"class", "probability"}]}: name, top classes."""
    # Names come from files (a model card's class names, a file name): escaped, so that
    # a control character in them cannot drive the terminal.
    predictions = [{"input": printable(p["input"], 1000),
                    "top": [{**t, "class": printable(t["class"])} for t in p["top"]]}
                   for p in predictions]
    width = max((len(p["input"]) for p in predictions), default=0)
    # Every column as wide as its widest class name, so that ranks line up.
    columns = max((len(p["top"]) for p in predictions), default=0)
    names = [max((len(p["top"][i]["class"]) for p in predictions if len(p["top"]) > i),
                 default=0) for i in range(columns)]
    return "\n".join(
        (f"{p['input']:<{width}}  " + "  ".join(
            f"{t['class']:<{names[i]}} {100 * t['probability']:5.1f}%"
            for i, t in enumerate(p["top"]))).rstrip()
        for p in predictions)
