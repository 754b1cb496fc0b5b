r"""Converts a PyTorch reference checkpoint (``.th``) into the ``.npz`` import_weights reads.

    python -m keras_resnet_cifar.convert_checkpoint --checkpoint=resnet20-12fca82f.th \
        --output=resnet20.npz
    python -m keras_resnet_cifar.import_weights --weights=resnet20.npz --output=...

The reference CIFAR-10 ResNets of He et al.'s paper (ResNet-20/32/44/56/110/1202,
BSD 2-clause, Copyright (c) 2018 Yerlan Idelbayev) are released as ``.th`` files in
the ``pretrained_models/`` folder of github.com/akamaster/pytorch_resnet_cifar10.
This reads them without torch (:mod:`keras_resnet_cifar.torch_checkpoint`: both
torch's zip format and the legacy format those 2018 files use), strips
DataParallel's ``module.`` prefix, leaves out BatchNorm's step counters and writes
the arrays under PyTorch's state-dict names, in PyTorch's layouts. Keep the
reference's licence with the weights and anything made from them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from absl import app, flags

from keras_resnet_cifar import fileio, torch_checkpoint
from keras_resnet_cifar.errors import UserError, run_cli


def convert(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a ``.th`` checkpoint as float32 arrays under PyTorch's names.

    Raises:
        UserError: not a readable torch checkpoint holding a state dict.
    """
    state = torch_checkpoint.state_dict(torch_checkpoint.load(checkpoint))
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}


def write_npz(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes ``state`` as an uncompressed ``.npz`` (no pickled objects), atomically."""
    with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **state)


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "The reference's .th checkpoint, e.g. "
                        "resnet20-12fca82f.th.")
    flags.DEFINE_string("output", None, "Where to write the .npz (default: the checkpoint's "
                        "name with .npz, beside it).")


def main(argv):
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    FLAGS = flags.FLAGS
    if not FLAGS.checkpoint:
        raise UserError("--checkpoint is required: the reference's .th file.")
    checkpoint = Path(os.path.expanduser(FLAGS.checkpoint))
    output = Path(os.path.expanduser(FLAGS.output)) if FLAGS.output else \
        checkpoint.with_suffix(".npz")
    state = convert(checkpoint)
    write_npz(state, output)
    params = sum(v.size for k, v in state.items() if not k.endswith(("running_mean",
                                                                     "running_var")))
    print(f"wrote {output}: {len(state)} arrays, {params:,} trainable parameters; "
          f"load it with python -m keras_resnet_cifar.import_weights --weights={output}")


if __name__ == "__main__":
    define_flags()
    app.run(run_cli(main))
