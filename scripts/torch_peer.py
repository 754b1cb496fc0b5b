#!/usr/bin/env python3
r"""Peer for training-speed comparisons: the CIFAR ResNet / plain net of He et al. (2016) in PyTorch.

The architecture is the standard option-A network (conv3x3-16, three stages of n basic
blocks at 16/32/64 filters, global average pool, 10-way linear), as in the widely used
PyTorch reference implementations; it is the figure a user would compare against.

It prints one line: `peer=<name> ... img/s=<float>` for training (SGD momentum 0.9,
weight decay 1e-4, cross-entropy, batch 128 by default) on random CIFAR-shaped data
(data loading excluded: this is the model's compute ceiling, the best case for the peer).
`python -m keras_resnet_cifar.benchmark --peer=<this environment's python>`, from a
checkout of the repository, runs it between its own timed repeats, once per
`--peer_modes` name (its `--mode`; docs/performance.md).

Setup, in an environment of its own (the project never imports torch):
    python3 -m venv ~/venvs/torch-peer
    ~/venvs/torch-peer/bin/pip install torch==2.13.0 numpy
Usage:
    ~/venvs/torch-peer/bin/python scripts/torch_peer.py --model resnet20 --steps 20 \
        [--threads 2] [--batch 128] [--channels_last] [--compile] [--mode channels_last] \
        [--precision bfloat16]
On a 2-core AMD EPYC CPU (2026-11-27) --channels_last alone was fastest; torch.compile
was slower. The benchmark runs --channels_last by default (its --peer_modes).
--precision bfloat16 (float16) runs forward and loss under torch.autocast("cpu", dtype),
PyTorch's mixed precision (weights and optimizer stay float32), as the benchmark asks
when it times the project's --mixed_precision=mixed_bfloat16 (mixed_float16).
"""
import argparse
import contextlib
import sys
import time

try:
    import torch
    from torch import nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("error: the peer needs PyTorch in the Python that runs it (setup: see "
             "scripts/torch_peer.py's docstring; benchmark --peer names that Python)")


# The configurations the benchmark asks for by name (--mode): name -> the flags it sets.
MODES = {"default": (), "channels_last": ("channels_last",), "compile": ("compile",),
         "channels_last+compile": ("channels_last", "compile")}


class Block(nn.Module):
    def __init__(self, cin, cout, stride, residual):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.residual, self.pad = residual, (cout - cin) // 2
        self.stride = stride

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        if self.residual:
            s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.pad:
                s = F.pad(s, (0, 0, 0, 0, self.pad, self.pad))
            y = y + s
        return F.relu(y)


class CifarNet(nn.Module):
    def __init__(self, depth, residual):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(Block(cin, cout, 2 if stage and not i else 1, residual))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20", help="resnetN or plainN, N = 6n+2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--channels_last", action="store_true", help="NHWC memory format (faster on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    p.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="compute dtype of forward and loss (torch.autocast); float32: none")
    p.add_argument("--mode", choices=MODES, default="default",
                   help="a named configuration: the flags of MODES (the benchmark's --peer_modes)")
    a = p.parse_args()
    for flag in MODES[a.mode]:
        setattr(a, flag, True)
    if a.threads:
        torch.set_num_threads(a.threads)
    residual = a.model.startswith("resnet")
    depth = int(a.model.removeprefix("resnet").removeprefix("plain"))
    model = CifarNet(depth, residual).train()
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    if a.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if a.compile else model
    autocast = (contextlib.nullcontext() if a.precision == "float32"
                else torch.autocast("cpu", dtype=getattr(torch, a.precision)))
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    print(f"peer={a.model} params={params} threads={torch.get_num_threads()} "
          f"channels_last={int(a.channels_last)} compile={int(a.compile)} precision={a.precision} "
          f"img/s={a.steps * a.batch / dt:.1f}")


if __name__ == "__main__":
    main()
