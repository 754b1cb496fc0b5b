"""Learning-curve points inside a run: training and test error several times per epoch.

He et al.'s Figures 1 and 6 plot the running training error (on the augmented batches
SGD trains on, each with the weights before its update) and the test error against
iterations; a short run has too few epochs for per-epoch points. Each point of curve.json
(its fields: CurveRecorder._record): training figures over the steps since the previous
point (the segment), image-weighted; test figures over a fixed test subset, the same for
every point and run. A resumed run drops its interrupted epoch's points and records them anew."""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from keras_resnet_cifar import fileio, run_files


def point_steps(steps_per_epoch: int, points_per_epoch: int) -> list[int]:
    """The 1-based steps of an epoch that end a segment: (391, 4) -> [97, 195, 293, 391]."""
    return sorted({max(1, steps_per_epoch * i // points_per_epoch)
                   for i in range(1, points_per_epoch + 1)})


class CurveRecorder(keras.callbacks.Callback):
    """Writes curve.json (atomically) after each point; `images`, `labels` are the test subset.

    The model must log `accuracy` and `cross_entropy` (as loop.build_and_compile makes it):
    per-batch figures are recovered from Keras' running means over the epoch and the loss
    tracker's image count, so partial batches weigh what they hold."""

    def __init__(self, run_dir: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                 points_per_epoch: int = 4, batch_size: int = 256, subset_seed: int = 0):
        super().__init__()
        if points_per_epoch < 1:
            raise ValueError(f"points_per_epoch must be >= 1, got {points_per_epoch}.")
        self.path = run_files.path(run_dir, run_files.CURVE)
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.points_per_epoch = points_per_epoch
        self.batch_size = batch_size
        self.subset_seed = subset_seed
        existing = run_files.read_curve(run_dir) or {}
        self.points = {p["step"]: p for p in existing.get("points", [])}
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        steps = int((self.params or {}).get("steps") or 0)
        if not steps:
            raise ValueError("CurveRecorder needs a known number of steps per epoch.")
        self._steps, self._epoch = steps, epoch
        self._marks = point_steps(steps, self.points_per_epoch)
        # A resumed run repeats the epoch it was interrupted in: forget its old points.
        self.points = {s: p for s, p in self.points.items() if s <= epoch * steps}
        self._done = 0            # steps of this epoch seen so far
        self._previous = (0.0, 0.0, 0.0)  # (images, correct, cross-entropy sum) so far
        self._segment: list[tuple[float, float, float]] = []  # per batch: images, error, CE

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        images = float(keras.ops.convert_to_numpy(self.model.metrics[0].count))
        correct = float(logs["accuracy"]) * images  # running means over the epoch so far
        entropy = float(logs["cross_entropy"]) * images
        seen, right, summed = self._previous
        if images > seen:  # one entry per callback (per execution with steps_per_execution)
            n = images - seen
            self._segment.append((n, 1 - (correct - right) / n, (entropy - summed) / n))
        self._previous = (images, correct, entropy)
        done, self._done = self._done, batch + 1
        if any(done < m <= batch + 1 for m in self._marks) and self._segment:
            self._record(batch + 1)

    def _record(self, step_in_epoch: int) -> None:
        steps = self._steps
        counts, errors, entropies = (np.asarray(c, np.float64) for c in zip(*self._segment))
        # The standard error of the segment's error over its batches (None for one batch).
        se = float(np.std(errors, ddof=1) / math.sqrt(len(errors))) if len(errors) > 1 else None
        probabilities = np.asarray(self.model.predict(self.images, batch_size=self.batch_size,
                                                      verbose=0), np.float64)
        picked = probabilities[np.arange(len(self.labels)), self.labels]
        step = self._epoch * steps + step_in_epoch
        self.points[step] = {
            "step": step, "epoch": round(step / steps, 6),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "train_images": int(round(sum(counts))), "train_batches": len(counts),
            "train_error": float(np.sum(errors * counts) / np.sum(counts)),  # image-weighted
            "train_error_se": se,
            "train_cross_entropy": float(np.average(entropies, weights=counts)),
            "test_error": float(np.mean(probabilities.argmax(axis=1) != self.labels)),
            "test_cross_entropy": float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))),
            "test_images": int(len(self.labels))}
        self._segment = []
        fileio.write_json(self.path, {
            "points_per_epoch": self.points_per_epoch, "steps_per_epoch": steps,
            "test_subset": {"images": int(len(self.labels)), "seed": self.subset_seed},
            "points": [self.points[s] for s in sorted(self.points)]})

