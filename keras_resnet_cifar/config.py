"""The training configuration: one frozen dataclass, parsed once, saved with every run.

Defaults: He et al.'s (2016, section 4.2) optimiser and augmentation, SGD with
momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1, pad-4 crop and flip,
with the schedule of the reproduction paper (V. R. Shinde, "Deep Residual Learning for
Image Recognition: Implementation and Analysis", 2025): the rate divided by 10 after
epochs 80 and 120 of 200. Two defaults come from the reference PyTorch implementation,
not from He et al.: inputs normalised per channel (mean and std; He et al. subtract the
per-pixel mean) and weight decay on every parameter. He et al. count iterations: they
divide at 32k and 48k and stop at 64k iterations of batch 128 on the 50k training images
(about 82, 123 and 164 passes); the 64k stop was chosen on a 45k/5k train/validation
split. The reference PyTorch trainer divides after epochs 100 and 150 of 200.

Learning-rate boundaries may be fractions of an epoch (``--lr_boundaries=1.2,1.8``):
the schedule is evaluated before every training step on the fractional epoch
``epoch + step / steps_per_epoch`` (:func:`learning_rate_at`), so a drop after 40%
of a 3-epoch run happens at the step it names. Whole-epoch boundaries mean what
they always meant: the rate changes before the first step of that epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Collection

from keras_resnet_cifar.models import arch  # no Keras: flags are checked before TensorFlow loads

from keras_resnet_cifar.data.datasets import DATASETS, TRAIN_IMAGES  # no TensorFlow: one definition
DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The seed goes to NumPy's and TensorFlow's generators, which take 32 bits; counts end
# up in TensorFlow's int64 tensors (dataset sizes, the optimiser's step counter).
MAX_SEED = 2**32 - 1
MAX_COUNT = 2**63 - 1
# Synthetic images are made in memory (3,072 bytes each): 60,000 per split is CIFAR-10's
# size, about 184 MB, where 1e8 would take hundreds of gigabytes.
MAX_SYNTHETIC_IMAGES = 60_000
# He et al. train at 0.1 with decay 1e-4. A rate beyond 1,000 or a decay beyond 1 only
# diverges (1e300 is infinite in float32): refused before a run directory exists, not
# found out as a NaN loss in it.
MAX_LEARNING_RATE = 1_000.0
MAX_WEIGHT_DECAY = 1.0
COUNT_FIELDS = ("epochs", "batch_size", "synthetic_train_size", "synthetic_test_size",
                "steps_per_execution", "steps_per_epoch", "eval_steps", "validation_split",
                "warmup_epochs")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    model: str = "resnet20"
    shortcut: str = "A"
    # Data.
    dataset: str = "cifar10"
    data_dir: str | None = None
    validation_split: int = 0          # images held out of training for model selection
    synthetic_train_size: int = 5000   # --dataset=synthetic only
    synthetic_test_size: int = 1000
    # Recipe.
    epochs: int = 200
    batch_size: int = 128              # global batch, split across replicas
    learning_rate: float = 0.1
    lr_boundaries: tuple[float, ...] = (80, 120)  # epochs (may be fractional) after which
                                                  # lr *= lr_decay
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_scope: str = "all"    # "all" parameters, as the reference trainers; or "kernels"
    warmup_epochs: int = 0             # He et al.: ResNet-110 at 0.01 for ~400 iterations
    warmup_learning_rate: float = 0.01
    # Caps for short runs.
    steps_per_epoch: int | None = None
    eval_steps: int | None = None
    # Reproducibility and execution.
    seed: int = 0
    deterministic: bool = False
    distribute: str = "auto"
    mixed_precision: str = "float32"
    jit_compile: bool = False
    steps_per_execution: int = 1

    def __post_init__(self):
        arch.parse_name(self.model)  # raises ValueError with the valid forms
        if self.shortcut not in arch.SHORTCUTS:
            raise ValueError(f"--shortcut must be A or B, got {self.shortcut!r}.")
        _choice("dataset", self.dataset, DATASETS)
        _choice("distribute", self.distribute, DISTRIBUTE)
        _choice("mixed_precision", self.mixed_precision, PRECISIONS)
        _choice("weight_decay_scope", self.weight_decay_scope, arch.WEIGHT_DECAY_SCOPES)
        for name in ("epochs", "batch_size", "synthetic_train_size",
                     "synthetic_test_size", "steps_per_execution"):
            _positive(name, getattr(self, name))
        for name in ("steps_per_epoch", "eval_steps"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("synthetic_train_size", "synthetic_test_size"):
            if getattr(self, name) > MAX_SYNTHETIC_IMAGES:
                raise ValueError(f"--{name} must be at most {MAX_SYNTHETIC_IMAGES:,} "
                                 f"(CIFAR-10's size), got {getattr(self, name)}.")
        # Out-of-range integers are refused here, before a run directory exists, rather
        # than overflowing inside NumPy or TensorFlow as a traceback.
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}.")
        for name in COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None and value > MAX_COUNT:
                raise ValueError(f"--{name} must be at most {MAX_COUNT} (int64), got {value}.")
        if self.steps_per_epoch is not None and \
                self.epochs * self.steps_per_epoch * self.batch_size > MAX_COUNT:
            raise ValueError("--epochs x --steps_per_epoch x --batch_size must be at most "
                             f"{MAX_COUNT} images (int64), got {self.epochs} x "
                             f"{self.steps_per_epoch} x {self.batch_size}.")
        # Values that cannot train are refused here, not found out epochs later:
        # NaN fails every comparison, so each check is written as "must hold".
        for name in ("learning_rate", "warmup_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name} must be a finite number > 0, got {value}.")
            if value > MAX_LEARNING_RATE:
                raise ValueError(f"--{name} must be at most {MAX_LEARNING_RATE:,g}, "
                                 f"got {value:g}.")
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(f"--lr_decay must be in (0, 1], got {self.lr_decay}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"--weight_decay must be a finite number >= 0, "
                             f"got {self.weight_decay}.")
        if self.weight_decay > MAX_WEIGHT_DECAY:
            raise ValueError(f"--weight_decay must be at most {MAX_WEIGHT_DECAY:g}, "
                             f"got {self.weight_decay:g}.")
        for name in ("warmup_epochs", "validation_split"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must not be negative, got {getattr(self, name)}.")
        try:
            boundaries = tuple(as_epoch(b) for b in self.lr_boundaries)
        except (TypeError, ValueError):
            raise ValueError("--lr_boundaries must be numbers, got "
                             f"{list(self.lr_boundaries)}.") from None
        if list(boundaries) != sorted(set(boundaries)) or any(b <= 0 for b in boundaries):
            raise ValueError("--lr_boundaries must be increasing positive epochs, "
                             f"got {list(self.lr_boundaries)}.")
        # Keras (3.15) runs every execution whole: with --steps_per_execution not dividing
        # an epoch's steps, an epoch would run past its end into the next one's batches
        # (measured: 9 and 7 steps for epochs of 8 at 3), shifting every later epoch's
        # data and its learning rates, and the last epoch would run out of data.
        steps = self.steps_per_epoch or self.full_pass_steps
        if steps % self.steps_per_execution:
            divisors = [d for d in range(1, steps + 1) if steps % d == 0]
            shown = ", ".join(map(str, divisors[:8])) + (", ..." if len(divisors) > 8 else "")
            raise ValueError(
                f"--steps_per_execution={self.steps_per_execution} does not divide the "
                f"{steps} steps of an epoch (an execution would run into the next epoch); "
                f"use a divisor of {steps} ({shown}) or a --steps_per_epoch that it divides.")
        # 80 and 80.0 are the same boundary: whole numbers are kept as ints (config.json
        # then reads as before), fractions as floats.
        object.__setattr__(self, "lr_boundaries", boundaries)

    @property
    def full_pass_steps(self) -> int:
        """Steps of one pass over the training images left after ``validation_split``."""
        images = self.synthetic_train_size if self.dataset == "synthetic" else TRAIN_IMAGES
        return max(1, math.ceil((images - self.validation_split) / self.batch_size))

    @property
    def eval_set(self) -> str:
        """Which set is evaluated after each epoch (and "best" is chosen on)."""
        return "validation" if self.validation_split else "test"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown configuration keys: {', '.join(unknown)}.")
        values = dict(values)
        if "lr_boundaries" in values:
            values["lr_boundaries"] = tuple(values["lr_boundaries"])
        return cls(**values)


def _choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"--{name} must be one of {', '.join(valid)}, got {value!r}.")


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"--{name} must be positive, got {value}.")


def as_epoch(value: float | int | str) -> int | float:
    """An epoch count as a number: an int when whole (``"3"``, ``3.0`` -> 3), else a float.

    Raises:
        ValueError: not a finite number.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return int(number) if number.is_integer() else number


def learning_rate_at(epoch: float, config: TrainConfig) -> float:
    """The learning rate at 0-based, possibly fractional ``epoch``: warm-up, then step decay.

    ``epoch`` is ``e + s / steps_per_epoch`` before step ``s`` (0-based) of epoch
    ``e``; a boundary ``b`` applies from the first step with ``epoch >= b``. For a
    whole-number boundary that is the first step of epoch ``b``, whatever ``s`` is.

    >>> [learning_rate_at(e, TrainConfig()) for e in (0, 79, 80, 119, 120)]
    [0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.0010000000000000002]
    >>> [learning_rate_at(e, TrainConfig(lr_boundaries=(1.2,))) for e in (1.1, 1.2)]
    [0.1, 0.010000000000000002]
    """
    if epoch < config.warmup_epochs:
        return config.warmup_learning_rate
    # A step that lands on a boundary up to float rounding (1 + 1/5 vs 1.2) reaches it;
    # 1e-9 is far below one step (1 / steps_per_epoch) of any real epoch.
    drops = sum(epoch >= b - 1e-9 for b in config.lr_boundaries)
    return config.learning_rate * config.lr_decay ** drops


def changed_flags(config: TrainConfig, exclude: Collection[str] = ()) -> list[str]:
    """``--name=value`` for every field of ``config`` that differs from the default.

    The flags that reproduce ``config`` with ``python -m keras_resnet_cifar.train``
    (one flag per field: :mod:`keras_resnet_cifar.train_flags`).

    >>> changed_flags(TrainConfig(model="plain20", lr_boundaries=(1.5, 2)))
    ['--model=plain20', '--lr_boundaries=1.5,2']
    """
    defaults = TrainConfig()
    out = []
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        value = getattr(config, field.name)
        if value == getattr(defaults, field.name):
            continue
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = str(value).lower()
        out.append(f"--{field.name}={value}")
    return out
