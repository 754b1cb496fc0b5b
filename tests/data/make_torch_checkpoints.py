"""Writes the tiny torch checkpoints that tests/test_convert_checkpoint.py reads.

Run once, with real torch, in an environment of its own (the project never depends
on torch); the outputs are committed:

    python3 -m venv ~/venvs/torch-peer && ~/venvs/torch-peer/bin/pip install torch==2.13.0 numpy
    ~/venvs/torch-peer/bin/python tests/data/make_torch_checkpoints.py tests/data

It saves one small random state dict with the reference's resnet8 key names
(``module.`` prefix as DataParallel writes it, BatchNorm counters included) in the
shape of the reference's release, ``{"state_dict": ..., "best_prec1": ...}``,
twice: in torch's zip format and in the legacy format of torch < 1.6
(``_use_new_zipfile_serialization=False``, the format of the 2018 release). The
tensors are tiny (the converter's reading, not the network, is under test), and
include a transposed one and two views of one storage so that offsets and strides
are exercised. ``torch_tiny.npz`` holds what torch itself reads back from them,
keys without the prefix: the converter must give exactly these arrays.
"""

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch


def state_dict() -> OrderedDict:
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    sd["conv1.weight"] = torch.randn(2, 3, 3, 3, generator=g)
    for bn in ("bn1", "layer1.0.bn1", "layer1.0.bn2"):
        sd[f"{bn}.weight"] = torch.rand(2, generator=g)
        sd[f"{bn}.bias"] = torch.randn(2, generator=g)
        sd[f"{bn}.running_mean"] = torch.randn(2, generator=g)
        sd[f"{bn}.running_var"] = torch.rand(2, generator=g) + 0.5
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(390)
    sd["layer1.0.conv1.weight"] = torch.randn(3, 2, 3, 3, generator=g).transpose(0, 1)
    shared = torch.randn(2 * 2 * 9 + 20, generator=g)
    sd["layer1.0.conv2.weight"] = shared[:36].view(2, 2, 3, 3)
    sd["linear.weight"] = shared[36:56].view(10, 2)  # same storage, offset 36
    sd["linear.bias"] = torch.randn(10, generator=g, dtype=torch.float64).float()
    return OrderedDict((f"module.{k}", v) for k, v in sd.items())


def main(out: str) -> None:
    out = Path(out)
    sd = state_dict()
    torch.save({"state_dict": sd, "best_prec1": torch.tensor(91.25)}, out / "torch_tiny_zip.th")
    torch.save({"state_dict": sd, "best_prec1": 91.25}, out / "torch_tiny_legacy.th",
               _use_new_zipfile_serialization=False)
    for name in ("torch_tiny_zip.th", "torch_tiny_legacy.th"):
        back = torch.load(out / name, weights_only=True)["state_dict"]
        assert all(torch.equal(back[k], v) for k, v in sd.items())
    np.savez(out / "torch_tiny.npz", **{k[len("module."):]: v.numpy() for k, v in sd.items()})


if __name__ == "__main__":
    main(sys.argv[1])
