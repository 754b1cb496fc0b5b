r"""Converts reference PyTorch checkpoints (.th) into the .npz that import_weights reads.

    python -m keras_resnet_cifar.convert_checkpoint resnet20-12fca82f.th --out=resnet20.npz
    python -m keras_resnet_cifar.convert_checkpoint pretrained_models/*.th --out=weights/

Each .th goes to --out if it ends in .npz (one checkpoint), into the folder --out otherwise,
or beside the checkpoint. The weights' licence (BSD 2-clause, Copyright (c) 2018 Yerlan
Idelbayev) is written beside them as LICENSE.weights: keep it with the weights and anything
made from them. No torch is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models.torch_checkpoint import convert, write_npz
from keras_resnet_cifar.models.reference_weights import write_licence


def output_paths(checkpoints: Sequence[str | os.PathLike],
                 out: str | os.PathLike | None) -> list[Path]:
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
    flags.DEFINE_string("out", None, "The .npz (one checkpoint) or folder to write; default: "
                        "beside each checkpoint.")


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
