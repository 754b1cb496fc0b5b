"""The training flags of train, study and benchmark: one per TrainConfig field (same name,
type and default; a new field needs only its line in HELP). TrainConfig checks the values.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Collection

from absl import flags

from keras_resnet_cifar.config import TrainConfig

PATH_FIELDS = ("data_dir",)  # expanded: ~ and environment variables

HELP = {
    "model": "plainN or resnetN with N = 6n+2: 20, 32, 44, 56, 110, ...",
    "shortcut": "Residual shortcut where the shape changes: A (zero-padded identity, the "
                "paper's CIFAR choice) or B (1x1 conv + BN projection).",
    "dataset": "cifar10 (tensorflow-datasets, or --data_dir) or synthetic.",
    "data_dir": "A local CIFAR-10 copy: cifar-10-batches-bin/, cifar-10-batches-py/, their "
                ".tar.gz archives, or a folder holding one of them.",
    "validation_split": "Hold this many training images out for model selection (He et al.: "
                        "5000). 0: evaluate on the test set after each epoch.",
    "synthetic_train_size": "Training images of --dataset=synthetic.",
    "synthetic_test_size": "Test images of --dataset=synthetic.",
    "epochs": "Epochs to train (the default recipe: 200).",
    "batch_size": "Global batch size, split across replicas.",
    "learning_rate": "Initial learning rate.",
    "lr_boundaries": "Epochs after which the learning rate is multiplied by --lr_decay (default "
                     "80,120 of 200: the reproduction paper's; He et al. drop at 50% and 75% of "
                     "their iterations); fractions of an epoch work (e.g. 1.2,1.8: the rate "
                     "changes at that step).",
    "lr_decay": "Learning-rate factor at each boundary.",
    "momentum": "SGD momentum.",
    "weight_decay": "Weight decay lambda, coupled as in torch.optim.SGD (gradient += lambda*w).",
    "weight_decay_scope": "Which weights are decayed: all (every parameter, as the reference "
                          "trainers) or kernels (conv and dense kernels only).",
    "warmup_epochs": "Epochs at --warmup_learning_rate first (He et al. did this for ResNet-110).",
    "warmup_learning_rate": "Learning rate during warm-up.",
    "steps_per_epoch": "Cap on training steps per epoch (short runs): an epoch is then steps x "
                       "batch shuffled, augmented images drawn from the whole training set.",
    "eval_steps": "Cap on evaluation steps (short runs).",
    "seed": "Random seed (weights, shuffling, augmentation).",
    "deterministic": "Enable TensorFlow op determinism (slower).",
    "distribute": "auto (MirroredStrategy when there are several GPUs), none, mirrored, or "
                  "multi_worker (TF_CONFIG).",
    "mixed_precision": "float32, mixed_float16 (GPUs) or mixed_bfloat16.",
    "jit_compile": "Compile the train step with XLA.",
    "steps_per_execution": "Training steps per tf.function call.",
}


def help_text(name: str) -> str:
    return HELP.get(name, f"TrainConfig.{name} (see keras_resnet_cifar/config.py).")


_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, int | None: flags.DEFINE_integer,
           float: flags.DEFINE_float, tuple[float, ...]: flags.DEFINE_list}


def define_config_flags(flag_values: flags.FlagValues = flags.FLAGS, *,
                        defaults: TrainConfig | None = None, exclude: Collection[str] = ()) -> None:
    defaults = defaults or TrainConfig()
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name not in exclude:
            default = getattr(defaults, name)
            if isinstance(default, tuple):
                default = [str(v) for v in default]
            _DEFINE.get(hint, flags.DEFINE_string)(name, default, help_text(name),
                                                   flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS, **overrides: Any) -> TrainConfig:
    """The config of the parsed flags, with `overrides` for the excluded fields (fields
    that are neither keep TrainConfig's defaults); ConfigError for a refused value."""
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif field.name in flag_values:
            value = flag_values[field.name].value
            if isinstance(value, list):  # TrainConfig turns the texts into numbers
                value = tuple(value)
            if field.name in PATH_FIELDS and value:
                # The shell leaves "~" after "--flag=" alone: expand it (and $VARS) here.
                value = os.path.expanduser(os.path.expandvars(value))
            values[field.name] = value
    return TrainConfig(**values)
