r"""Converts PyTorch reference checkpoints (``.th``) into the ``.npz`` import_weights reads.

    python -m keras_resnet_cifar.convert_checkpoint resnet20-12fca82f.th --out=resnet20.npz
    python -m keras_resnet_cifar.convert_checkpoint pretrained_models/*.th --out=weights/
    python -m keras_resnet_cifar.import_weights --weights=resnet20.npz

Each ``.th`` file given is written as a ``.npz``: to ``--out`` if it ends in
``.npz`` (one checkpoint), into the folder ``--out`` otherwise, and beside the
checkpoint (same name, ``.npz``) without ``--out``. The reference's licence is
written beside them as ``LICENSE.weights``, where ``import_weights`` and ``export``
look for it (an export made from the weights carries it).

The reference CIFAR-10 ResNets of He et al.'s paper (ResNet-20/32/44/56/110/1202,
BSD 2-clause, Copyright (c) 2018 Yerlan Idelbayev) are released as ``.th`` files in
the ``pretrained_models/`` folder of github.com/akamaster/pytorch_resnet_cifar10.
This reads them without torch (:mod:`keras_resnet_cifar.models.torch_checkpoint`: both
torch's zip format and the legacy format those 2018 files use), strips
DataParallel's ``module.`` prefix, leaves out BatchNorm's step counters and writes
the arrays under PyTorch's state-dict names, in PyTorch's layouts. Keep the
reference's licence with the weights and anything made from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import flags

from keras_resnet_cifar import cli, fileio
from keras_resnet_cifar.models import torch_checkpoint
from keras_resnet_cifar.models.reference_weights import write_licence
from keras_resnet_cifar.errors import UserError



def convert(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a ``.th`` checkpoint as float32 arrays under PyTorch's names.

    Raises:
        UserError: not a readable torch checkpoint holding a state dict.
    """
    loaded = torch_checkpoint.load(checkpoint)
    try:
        state = torch_checkpoint.state_dict(loaded)
    except UserError as e:
        raise UserError(f"{checkpoint}: {e}") from None
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}


def write_npz(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes ``state`` as an uncompressed ``.npz`` (no pickled objects), atomically.

    Raises:
        UserError: ``path`` cannot be written.
    """
    try:
        with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f:
            _savez(f, state)
    except OSError as e:
        raise UserError(f"Cannot write {path} ({e.strerror or e}).") from None


def _savez(file, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez(file, **arrays)`` writes, for any key: savez takes a key named
    ``allow_pickle`` (or ``file``) as its own argument, and an array of that name was lost."""
    import zipfile

    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def output_paths(checkpoints: Sequence[str | os.PathLike],
                 out: str | os.PathLike | None) -> list[Path]:
    """Where each checkpoint's ``.npz`` goes (see the module docstring).

    Raises:
        UserError: an ``.npz`` file named as ``--out`` for several checkpoints.
    """
    checkpoints = [Path(c) for c in checkpoints]
    if out is None:
        return [c.with_suffix(".npz") for c in checkpoints]
    out = Path(out)
    if out.suffix == ".npz":
        if len(checkpoints) > 1:
            raise UserError(f"--out={out} is one file for {len(checkpoints)} checkpoints: "
                            "give a folder.")
        return [out]
    return [out / c.with_suffix(".npz").name for c in checkpoints]


def define_flags() -> None:
    flags.DEFINE_string("out", None, "The .npz to write (one checkpoint) or a folder "
                        "(default: beside each checkpoint, with .npz).")


def main(argv):
    FLAGS = flags.FLAGS
    checkpoints = argv[1:]
    if not checkpoints:
        raise UserError("Give the reference's .th checkpoints to convert, e.g. "
                        "resnet20-12fca82f.th.")
    outputs = output_paths(checkpoints, FLAGS.out)
    for checkpoint, output in zip(checkpoints, outputs):
        state = convert(checkpoint)
        write_npz(state, output)
        params = sum(v.size for k, v in state.items() if not k.endswith(("running_mean",
                                                                         "running_var")))
        print(f"wrote {output}: {len(state)} arrays, {params:,} trainable parameters")
    for folder in dict.fromkeys(output.parent for output in outputs):
        print(f"wrote {write_licence(folder)}: the weights' BSD 2-clause licence; keep it "
              "with them and with anything made from them")
    weights = outputs[0] if len(outputs) == 1 else "<one of them>"
    print(f"load it with python -m keras_resnet_cifar.import_weights --weights={weights}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_files=True)
