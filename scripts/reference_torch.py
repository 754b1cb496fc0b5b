"""The reference PyTorch CIFAR network and training step, for the comparison scripts.

The network is akamaster/pytorch_resnet_cifar10's ``resnet.py`` (the implementation
whose trained weights the project imports), with its parameter names (``conv1``,
``bn1``, ``layer{1,2,3}.{i}.conv{1,2}``/``bn{1,2}``, ``linear``) and its
initialisation (``kaiming_normal_`` on every convolution and linear weight,
PyTorch's defaults elsewhere), extended with the plain twin (no shortcut) the
project also builds. It takes raw [0, 255] RGB pixels and normalises them with
the per-channel mean and std it is given, as the project's models do.

Used by ``compare_sgd_with_pytorch.py`` (step-by-step check from shared weights)
and ``train_reference_pytorch.py`` (the reference trainer at the study's budget).
PyTorch is not a dependency of the project: install it beside it to run these.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ option-A shortcut) - ReLU, as the reference."""

    def __init__(self, cin: int, cout: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)  # eps 1e-5, momentum 0.1
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.residual, self.stride, self.pad = residual, stride, (cout - cin) // 2

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            # Option A: x[:, :, ::2, ::2] with zero channels half before, half after.
            s = x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                s = F.pad(s, (0, 0, 0, 0, self.pad, self.pad))
            y = y + s
        return F.relu(y)


class CifarNet(nn.Module):
    """plainN / resnetN of He et al. section 4.2: 3 stages of ``blocks`` blocks (16, 32, 64)."""

    def __init__(self, blocks: int, residual: bool, mean, std, widths=(16, 32, 64)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for s, cout in enumerate(widths, start=1):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if s > 1 and b == 0 else 1, residual))
                cin = cout
            setattr(self, f"layer{s}", nn.Sequential(*layers))
        self.linear = nn.Linear(cin, 10)

    def forward(self, pixels):  # raw [0, 255] pixels, NCHW
        x = F.relu(self.bn1(self.conv1((pixels - self.mean) / self.std)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def init_weights(net: nn.Module) -> None:
    """The reference's ``_weights_init``: ``kaiming_normal_`` on conv and linear weights."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)


def to_nchw(images: np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """(B, 32, 32, 3) pixels of any dtype as a float32 NCHW tensor (optionally NHWC in memory)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """torchvision's ``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip()``, per image.

    ``images``: uint8 (B, 32, 32, 3). Zero padding, each image's crop offset
    uniform in 0..2*pad on both axes, mirrored with probability 1/2; the draws
    come from ``generator``.
    """
    b, size = images.shape[0], images.shape[1]
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    steps = torch.arange(size)
    rows = dy[:, None] + steps                                          # (B, 32)
    cols = dx[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)
    index = torch.arange(b)[:, None, None]
    return padded[index, rows[:, :, None], cols[:, None, :]]           # (B, 32, 32, 3)
