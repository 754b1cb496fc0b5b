"""Reference PyTorch checkpoints (.th) to arrays under PyTorch's state-dict names, and .npz.

The reference CIFAR-10 ResNets (github.com/akamaster/pytorch_resnet_cifar10,
pretrained_models/; BSD 2-clause, Copyright (c) 2018 Yerlan Idelbayev) are read
without torch (torch_checkpoint.py: torch's zip format and the legacy one of those
2018 files); DataParallel's "module." prefix is stripped, BatchNorm's step counters
left out, and the arrays keep PyTorch's layouts.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import torch_checkpoint


def convert(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a .th checkpoint, floating-point arrays as float32."""
    loaded = torch_checkpoint.load(checkpoint)
    try:
        state = torch_checkpoint.state_dict(loaded)
    except UserError as e:
        raise UserError(f"{checkpoint}: {e}") from None
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}


def write_npz(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes `state` as an uncompressed .npz without pickled objects, atomically."""
    try:
        with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f:
            _savez(f, state)
    except OSError as e:
        raise UserError(f"Cannot write {path} ({e.strerror or e}).") from None


def _savez(file, arrays: dict[str, np.ndarray]) -> None:
    # What np.savez(file, **arrays) writes, for any key: savez takes a key named
    # allow_pickle (or file) as its own argument, and such an array was lost.
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
