"""The architecture as data: what plainN / resnetN means, Keras-free so that a bad model
name is refused before TensorFlow loads (seconds). networks.py builds from an ArchSpec.
"""

from __future__ import annotations

import dataclasses
import re

# He et al.: "The numbers of filters are {16, 32, 64} respectively."
STAGE_WIDTHS = (16, 32, 64)
# The input normalisation (shared with the PyTorch reference trainer): per-channel statistics
# of the 50,000 training images on [0, 255] (the usual published values, as the Torch code).
CIFAR10_MEAN = (125.307, 122.950, 113.865)
CIFAR10_STD = (62.993, 62.089, 66.705)
# What the reference PyTorch weights were trained with (ImageNet statistics on
# [0, 1] pixels), rescaled to [0, 255] (akamaster/pytorch_resnet_cifar10's trainer).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Where a block changes the shape: A (zero-padded identity, the paper's CIFAR choice) or B
# (1x1 convolution + BN projection).
SHORTCUTS = ("A", "B")
# Which weights weight decay applies to (models.build_model's weight_decay_scope).
WEIGHT_DECAY_SCOPES = ("all", "kernels")

# ASCII digits only, the whole name (`$` would accept a trailing newline, `\d` any
# script's digits); six digits at most, so a huge depth is refused before int() reads it.
_NAME = re.compile(r"(plain|resnet)([0-9]{1,6})")
# The deepest network of He et al. (2016, Table 6): ResNet-1202 (n = 200). A deeper name
# would build a model of gigabytes before any check could refuse it.
MAX_DEPTH = 1202


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    name: str
    residual: bool
    depth: int
    blocks_per_stage: int
    widths: tuple[int, ...] = STAGE_WIDTHS


def parse_name(name: str) -> ArchSpec:
    """The spec of plainN / resnetN (N = 6n + 2); ValueError for anything else."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if not match:
        raise ValueError(f"Unknown model name {name!r}: expected 'plainN' or 'resnetN' with "
                         "N = 6n+2, e.g. plain20, resnet20, plain56, resnet56, resnet110.")
    family, depth = match.group(1), int(match.group(2))
    if depth > MAX_DEPTH:
        raise ValueError(f"Depth {depth} in {name!r} is beyond {MAX_DEPTH}, the deepest "
                         "network of the paper (ResNet-1202).")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"Invalid depth {depth} in {name!r}: the CIFAR networks have 6n+2 "
                         "layers (n >= 1), e.g. 8, 14, 20, 32, 44, 56, 110.")
    return ArchSpec(name=name, residual=family == "resnet", depth=depth,
                    blocks_per_stage=(depth - 2) // 6)
