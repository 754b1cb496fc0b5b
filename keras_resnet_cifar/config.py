"""The training configuration: one frozen dataclass, checked once, saved with every run.

Defaults: He et al.'s (2016, section 4.2) SGD (momentum 0.9, weight decay 1e-4, batch 128,
learning rate 0.1) and pad-4 crop and flip, with the reproduction paper's schedule (V. R.
Shinde, 2025): lr / 10 after epochs 80 and 120 of 200. From the reference PyTorch code, not
He et al.: per-channel normalisation (He et al.: per-pixel mean) and weight decay on every
parameter. He et al. divide at 32k and 48k and stop at 64k iterations of batch 128 (about
82, 123, 164 passes; the stop chosen on a 45k/5k split); the reference trainer at 100, 150.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Collection

from keras_resnet_cifar.data.datasets import DATASETS, batches, train_images  # no TensorFlow
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import arch  # no Keras: values are checked before TF loads

DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The full schedule: the reproduction paper's 200 epochs (lr / 10 at 80 and 120).
FULL_EPOCHS = 200
# The seed goes to NumPy's and TensorFlow's generators, which take 32 bits; counts end
# up in TensorFlow's int64 tensors (dataset sizes, the optimiser's step counter).
MAX_SEED = 2**32 - 1
MAX_COUNT = 2**63 - 1
# Synthetic images are made in memory (3,072 bytes each): 60,000 per split is CIFAR-10's
# size, about 184 MB, where 1e8 would take hundreds of gigabytes.
MAX_SYNTHETIC_IMAGES = 60_000
# He et al. train at 0.1 with decay 1e-4. A rate beyond 1,000 or a decay beyond 1 only
# diverges (1e300 is infinite in float32): refused before a run directory exists.
MAX_LEARNING_RATE = 1_000.0
MAX_WEIGHT_DECAY = 1.0
COUNT_FIELDS = ("epochs", "batch_size", "synthetic_train_size", "synthetic_test_size",
                "steps_per_execution", "steps_per_epoch", "eval_steps", "validation_split",
                "warmup_epochs")
_RATES = ("learning_rate", "warmup_learning_rate")
_SYNTHETIC = ("synthetic_train_size", "synthetic_test_size")

# (fields, what each value must satisfy, the rule in words), checked in order; integers are bounded
# here, not overflowing in TensorFlow; NaN fails every comparison, so each rule says what must hold.
_CHOICES = {"shortcut": arch.SHORTCUTS, "dataset": DATASETS, "distribute": DISTRIBUTE,
            "mixed_precision": PRECISIONS, "weight_decay_scope": arch.WEIGHT_DECAY_SCOPES}
_RULES = (
    *(((name,), valid.__contains__, f"must be one of {', '.join(valid)}")
      for name, valid in _CHOICES.items()),
    (("epochs", "batch_size", *_SYNTHETIC, "steps_per_execution"), lambda v: v > 0,
     "must be positive"),
    (("steps_per_epoch", "eval_steps"), lambda v: v is None or v > 0, "must be positive"),
    (_SYNTHETIC, lambda v: v <= MAX_SYNTHETIC_IMAGES,
     f"must be at most {MAX_SYNTHETIC_IMAGES:,} (CIFAR-10's size)"),
    (("seed",), lambda v: 0 <= v <= MAX_SEED, f"must be in [0, {MAX_SEED}]"),
    (COUNT_FIELDS, lambda v: v is None or v <= MAX_COUNT, f"must be at most {MAX_COUNT} (int64)"),
    (_RATES, lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0"),
    (_RATES, lambda v: v <= MAX_LEARNING_RATE, f"must be at most {MAX_LEARNING_RATE:,g}"),
    (("lr_decay",), lambda v: math.isfinite(v) and 0 < v <= 1, "must be in (0, 1]"),
    (("momentum",), lambda v: 0 <= v < 1, "must be in [0, 1)"),
    (("weight_decay",), lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    (("weight_decay",), lambda v: v <= MAX_WEIGHT_DECAY, f"must be at most {MAX_WEIGHT_DECAY:g}"),
    (("warmup_epochs", "validation_split"), lambda v: v >= 0, "must not be negative"),
)


class ConfigError(UserError, ValueError):
    """A value TrainConfig refuses (a ValueError too, for callers that catch that)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    model: str = "resnet20"
    shortcut: str = "A"
    # Data.
    dataset: str = "cifar10"
    data_dir: str | None = None
    validation_split: int = 0          # images held out of training for model selection
    synthetic_train_size: int = 5000   # dataset="synthetic" only
    synthetic_test_size: int = 1000
    # Recipe.
    epochs: int = FULL_EPOCHS
    batch_size: int = 128              # global batch, split across replicas
    learning_rate: float = 0.1
    lr_boundaries: tuple[float, ...] = (80, 120)  # epochs (or fractions) after which lr *= lr_decay
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
        try:
            arch.parse_name(self.model)
        except ValueError as e:  # names the valid forms
            raise ConfigError(str(e), argument="model") from None
        for names, holds, rule in _RULES:
            for name in names:
                if not holds(getattr(self, name)):
                    raise ConfigError(f"{name} {rule}, got {getattr(self, name)!r}.", argument=name)
        if self.steps_per_epoch is not None and \
                self.epochs * self.steps_per_epoch * self.batch_size > MAX_COUNT:
            raise ConfigError(f"epochs x steps_per_epoch x batch_size must be at most {MAX_COUNT}"
                              f" images (int64), got {self.epochs} x {self.steps_per_epoch} x "
                              f"{self.batch_size}.", argument="steps_per_epoch")
        # 80 and 80.0 are one boundary: whole numbers stay ints (config.json reads as before),
        # fractions floats; "1.5" (a flag's text) becomes 1.5.
        object.__setattr__(self, "lr_boundaries", _boundaries(self.lr_boundaries))
        check_steps_per_execution(self.epoch_steps(), self.steps_per_execution)

    def epoch_steps(self, images: int | None = None) -> int:
        """`steps_per_epoch`, else one pass over `images` (default: the training set's)."""
        if images is None:
            images = max(1, train_images(self.dataset, self.synthetic_train_size,
                                         self.validation_split))
        return self.steps_per_epoch or batches(images, self.batch_size)

    @property
    def eval_set(self) -> str:
        """Which set is evaluated after each epoch (and "best" is chosen on)."""
        return "validation" if self.validation_split else "test"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"Unknown configuration keys: {', '.join(unknown)}.")
        return cls(**values)  # lr_boundaries: any sequence becomes a tuple


def check_steps_per_execution(steps: int, steps_per_execution: int, *,
                              other: str = "steps_per_epoch") -> None:
    """Refuses a `steps_per_execution` that does not divide an epoch's `steps` (`other`: the
    argument that sets them): Keras (3.15) runs every execution whole, so an epoch would run
    into the next one's batches (measured: 9 and 7 steps for epochs of 8 at 3), shifting all
    later data and rates."""
    if steps % steps_per_execution:
        divisors = [d for d in range(1, min(steps, 1000) + 1) if steps % d == 0]
        shown = ", ".join(map(str, divisors[:8])) + (", ..." if len(divisors) > 8
                                                       or steps > 1000 else "")
        raise ConfigError(
            f"steps_per_execution={steps_per_execution} does not divide the {steps} steps of "
            f"an epoch (an execution would run into the next epoch); use a divisor of {steps} "
            f"({shown}), or change {other}.", argument=("steps_per_execution", other))


def _boundaries(values) -> tuple[int | float, ...]:
    try:
        boundaries = tuple(as_epoch(b) for b in values)
    except (TypeError, ValueError):
        raise ConfigError(f"lr_boundaries must be numbers, got {list(values)}.",
                          argument="lr_boundaries") from None
    if list(boundaries) != sorted(set(boundaries)) or any(b <= 0 for b in boundaries):
        raise ConfigError(f"lr_boundaries must be increasing positive epochs, got "
                          f"{', '.join(map(str, values))}.", argument="lr_boundaries")
    return boundaries


def as_epoch(value: float | int | str) -> int | float:
    """An epoch count as a number: an int when whole ("3", 3.0 -> 3), else a float."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return int(number) if number.is_integer() else number


def learning_rate_at(epoch: float, config: TrainConfig) -> float:
    """The learning rate at 0-based `epoch`, e + s / steps_per_epoch before step s of
    epoch e: a boundary b applies from the first step with epoch >= b.

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
    """The `--name=value` flags of `python -m keras_resnet_cifar.train` that reproduce `config`.

    >>> changed_flags(TrainConfig(model="plain20", lr_boundaries=(1.5, 2)))
    ['--model=plain20', '--lr_boundaries=1.5,2']
    """
    defaults = TrainConfig()
    out = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.name in exclude or value == getattr(defaults, field.name):
            continue
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = str(value).lower()
        out.append(f"--{field.name}={value}")
    return out
