#!/usr/bin/env python3
r"""The reference PyTorch trainer at the study's budget, for a side-by-side comparison.

Trains the reference PyTorch CIFAR network (akamaster/pytorch_resnet_cifar10's
``resnet.py`` and initialisation, see ``reference_torch.py``) the way its own
trainer does: ``torch.optim.SGD(lr, momentum=0.9, weight_decay=1e-4)`` over every
parameter, cross-entropy, batch 128 with the last partial batch kept, a new
``torch.randperm`` order every pass, torchvision's ``RandomCrop(32, padding=4)``
and ``RandomHorizontalFlip`` drawn from one ``torch.Generator`` seeded with the
run's seed. What it takes from the project is only what must be equal for the
comparison: the CIFAR-10 images (``--data_dir``, read by the project's reader),
the per-channel normalisation of the project's models, and the recipe: the same
flags and flag files as the study (``--flagfile=flags/study/three_passes.cfg``),
with the learning rate set before every step by the project's own
``learning_rate_at`` on the fractional epoch, as ``optimizer.StepSchedule`` does.

Each run writes ``<out>/<model>-seed<seed>/``: ``config.json`` (the recipe, plus
``trainer``), ``curve.json`` (the study's format: training error of each segment,
test error on the study's fixed 2,000-image subset), ``history.json`` (per pass),
``metrics.json`` (final test accuracy on all 10,000 test images; the same after
re-estimating BatchNorm's running statistics from 60 augmented training batches
with the final weights, ``bn_recalibrated_test_accuracy``; time, load, versions)
and ``state.npz`` (the final state dict). ``--report_dir`` copies the small
files (not ``state.npz``) to ``<report_dir>/<model>-seed<seed>/``, where the
study's report reads them (``docs/study/reference/``).

    pip install torch==2.13.0          # beside the project; it never imports torch
    python scripts/train_reference_pytorch.py --flagfile=flags/study/three_passes.cfg \
        --data_dir=~/data/cifar10 --seeds=0,1,2 --out=runs/reference \
        --report_dir=docs/study/reference

A finished run (its metrics.json exists) is skipped; an interrupted one starts over.
"""

from __future__ import annotations

import dataclasses
from copy import deepcopy
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from absl import app, flags

from keras_resnet_cifar import fileio, train_flags
from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.models import arch
from keras_resnet_cifar.config import TrainConfig, learning_rate_at
from keras_resnet_cifar.errors import UserError, exit_with, message_of

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
except ImportError:
    sys.exit("error: this script needs PyTorch beside the project: pip install torch==2.13.0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure_batch_norm_lag  # noqa: E402  (the lag's definition, shared with the project's runs)
import reference_torch  # noqa: E402

RECALIBRATION_BATCHES = measure_batch_norm_lag.BATCHES  # 0.9 ** 60 = 0.2%: the old averages are gone
SMALL_FILES = ("config.json", "history.json", "metrics.json", "curve.json")

FLAGS = flags.FLAGS
train_flags.define_config_flags(FLAGS, exclude=("seed",))
flags.DEFINE_list("seeds", ["0"], "Seeds; one run each.")
flags.DEFINE_string("out", "runs/reference", "Where the runs go.")
flags.DEFINE_string("report_dir", None, "Copy each run's small files here.")
flags.DEFINE_integer("curve_points_per_epoch", 4, "Curve points per pass (as the study).")
flags.DEFINE_integer("curve_test_images", 2000, "The curve points' fixed test subset (as the study).")
flags.DEFINE_list("layer_stats_epochs", [], "Accepted for the study's flag files; not recorded.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: PyTorch's default).")
flags.DEFINE_boolean("channels_last", True, "NHWC memory layout (the faster one on CPUs).")


def evaluate(net, images: np.ndarray, labels: np.ndarray, batch: int = 500):
    """(error, mean cross-entropy) of ``net`` in inference mode."""
    net.eval()
    wrong, entropy = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            logits = net(reference_torch.to_nchw(images[i:i + batch], FLAGS.channels_last))
            y = torch.from_numpy(labels[i:i + batch].astype(np.int64))
            wrong += int((logits.argmax(1) != y).sum())
            entropy += float(F.cross_entropy(logits, y, reduction="sum"))
    net.train()
    return wrong / len(labels), entropy / len(labels)


def batches(train: datasets.Split, config: TrainConfig, generator: torch.Generator):
    """One pass: (uint8 NHWC batch, int64 labels) in a fresh order, augmented.

    With ``steps_per_epoch``, only the pass's first that many batches.
    """
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels.astype(np.int64))
    order = torch.randperm(len(labels), generator=generator)
    starts = range(0, len(labels), config.batch_size)
    for i in starts[:config.steps_per_epoch] if config.steps_per_epoch else starts:
        index = order[i:i + config.batch_size]
        yield reference_torch.augment(images[index], generator), labels[index]


def batch_norm_check(net, data: datasets.Cifar10, config: TrainConfig, epoch: int) -> dict:
    """How far BatchNorm's running averages lag the statistics of the current weights.

    On a copy of ``net`` (training goes on unchanged): re-estimates every running
    mean and variance from ``RECALIBRATION_BATCHES`` augmented training batches
    (their own draws, seeded by the run's seed and the pass), then reports the test
    accuracy with them and the lag: over the BatchNorm layers, the mean of the
    root-mean-square of (saved mean - re-estimated mean) / re-estimated std, and of
    |log(saved variance / re-estimated variance)|.
    """
    copy = deepcopy(net)
    generator = torch.Generator().manual_seed(10_000 * config.seed + epoch)
    with torch.no_grad():
        for i, (x, _) in enumerate(batches(data.train, config, generator)):
            if i == RECALIBRATION_BATCHES:
                break
            copy(reference_torch.to_nchw(x.numpy(), FLAGS.channels_last))
    error, _ = evaluate(copy, data.test.images, data.test.labels)

    def averages(state):  # [(running mean, running variance)] per BatchNorm layer
        return [(state[k].numpy(), state[k.replace("running_mean", "running_var")].numpy())
                for k in state if k.endswith("running_mean")]

    return {"bn_recalibrated_val_accuracy": 1 - error,
            **measure_batch_norm_lag.lag(averages(net.state_dict()), averages(copy.state_dict()))}


def point_steps(steps: int, points: int) -> list[int]:
    """As keras_resnet_cifar.analysis.curve_points.point_steps (the 1-based steps that end a segment)."""
    return sorted({max(1, steps * i // points) for i in range(1, points + 1)})


def train_one(config: TrainConfig, data: datasets.Cifar10, workdir: Path) -> dict:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    spec = arch.parse_name(config.model)
    net = reference_torch.CifarNet(spec.blocks_per_stage, spec.residual, arch.CIFAR10_MEAN,
                                   arch.CIFAR10_STD)
    reference_torch.init_weights(net)
    net = net.to(memory_format=torch.channels_last if FLAGS.channels_last
                 else torch.contiguous_format)
    opt = torch.optim.SGD(net.parameters(), lr=learning_rate_at(0, config),
                          momentum=config.momentum, weight_decay=config.weight_decay)
    subset = datasets.fixed_subset(data.test, FLAGS.curve_test_images, seed=0)
    steps = config.steps_per_epoch or math.ceil(len(data.train.labels) / config.batch_size)
    marks = point_steps(steps, FLAGS.curve_points_per_epoch)
    points, history, started = [], [], time.perf_counter()
    for epoch in range(config.epochs):
        segment, totals = [], [0, 0, 0.0]  # per batch (images, errors, CE sum); epoch sums
        for s, (x, y) in enumerate(batches(data.train, config, generator)):
            lr = learning_rate_at(epoch + s / steps, config)
            for group in opt.param_groups:
                group["lr"] = lr
            logits = net(reference_torch.to_nchw(x.numpy(), FLAGS.channels_last))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n, wrong = len(y), int((logits.argmax(1) != y).sum())
            segment.append((n, wrong, loss.item() * n))
            totals = [totals[0] + n, totals[1] + wrong, totals[2] + loss.item() * n]
            if s + 1 in marks:
                counts = np.array([b[0] for b in segment], np.float64)
                errors = np.array([b[1] for b in segment]) / counts
                test_error, test_ce = evaluate(net, *subset)
                points.append({
                    "step": epoch * steps + s + 1, "epoch": round((epoch * steps + s + 1) / steps, 6),
                    "learning_rate": lr, "train_images": int(counts.sum()),
                    "train_batches": len(segment),
                    "train_error": float(np.sum(errors * counts) / counts.sum()),
                    "train_error_se": float(np.std(errors, ddof=1) / math.sqrt(len(errors)))
                    if len(errors) > 1 else None,
                    "train_cross_entropy": float(sum(b[2] for b in segment) / counts.sum()),
                    "test_error": test_error, "test_cross_entropy": test_ce,
                    "test_images": len(subset[1])})
                segment = []
                print(f"{config.model} seed {config.seed}: pass {points[-1]['epoch']:.2f}, "
                      f"training error {points[-1]['train_error']:.3f}, test error "
                      f"(subset) {test_error:.3f}, {time.perf_counter() - started:.0f} s",
                      flush=True)
        elapsed = time.perf_counter() - started - sum(r["epoch_time_s"] for r in history)
        test_error, test_ce = evaluate(net, data.test.images, data.test.labels)
        history.append({"epoch": epoch + 1, "cross_entropy": totals[2] / totals[0],
                        "accuracy": 1 - totals[1] / totals[0], "val_cross_entropy": test_ce,
                        "val_accuracy": 1 - test_error, "learning_rate": lr,
                        "epoch_time_s": elapsed,
                        **batch_norm_check(net, data, config, epoch)})
    wall = sum(r["epoch_time_s"] for r in history)
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()
             if k not in ("mean", "std")}
    np.savez(workdir / "state.npz", **state)
    return {"points": points, "steps": steps, "history": history, "metrics": {
        "model": config.model, "trainer": "pytorch-reference",
        "test_accuracy": history[-1]["val_accuracy"],
        "test_loss": history[-1]["val_cross_entropy"], "test_images": len(data.test.labels),
        "bn_recalibrated_test_accuracy": history[-1]["bn_recalibrated_val_accuracy"],
        "bn_recalibration_batches": RECALIBRATION_BATCHES,
        "final_train_accuracy": history[-1]["accuracy"], "epochs_completed": config.epochs,
        "wall_time_s": wall, "load_average_1min_at_end": os.getloadavg()[0],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "channels_last": FLAGS.channels_last,
        "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
        "python": platform.python_version(), "data_source": data.source,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.threads:
        torch.set_num_threads(FLAGS.threads)
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise UserError(f"--seeds takes whole numbers; got {','.join(FLAGS.seeds)}") from None
    base = train_flags.config_from_flags(FLAGS, seed=seeds[0])
    if base.validation_split or base.warmup_epochs or base.weight_decay_scope != "all" \
            or base.shortcut != "A":
        raise UserError("the reference trainer runs option-A shortcuts and weight decay on "
                        "every parameter, without a validation split or a warm-up")
    data = datasets.load(base.dataset, base.data_dir, seed=0, synthetic_sizes=(
        base.synthetic_train_size, base.synthetic_test_size))
    for seed in seeds:
        config = dataclasses.replace(base, seed=seed)
        workdir = Path(os.path.expanduser(FLAGS.out)) / f"{config.model}-seed{seed}"
        if not (workdir / "metrics.json").exists():
            workdir.mkdir(parents=True, exist_ok=True)
            record = {**dataclasses.asdict(config), "trainer": "pytorch-reference"}
            fileio.write_json(workdir / "config.json", record)
            result = train_one(config, data, workdir)
            fileio.write_json(workdir / "curve.json", {
                "points_per_epoch": FLAGS.curve_points_per_epoch,
                "steps_per_epoch": result["steps"],
                "test_subset": {"images": FLAGS.curve_test_images, "seed": 0},
                "points": result["points"]})
            fileio.write_json(workdir / "history.json", {"eval_set": "test",
                                                         "epochs": result["history"]})
            fileio.write_json(workdir / "metrics.json", result["metrics"])
        metrics = json.loads((workdir / "metrics.json").read_text())
        print(f"{config.model} seed {seed}: test accuracy {metrics['test_accuracy']:.4f} "
              f"(BatchNorm statistics re-estimated: "
              f"{metrics['bn_recalibrated_test_accuracy']:.4f}); {workdir}", flush=True)
        if FLAGS.report_dir:
            copy = Path(os.path.expanduser(FLAGS.report_dir)) / workdir.name
            copy.mkdir(parents=True, exist_ok=True)
            for name in SMALL_FILES:
                shutil.copyfile(workdir / name, copy / name)


if __name__ == "__main__":
    try:
        app.run(main)
    except UserError as e:
        exit_with(message_of(e))
