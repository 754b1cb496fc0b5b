"""Loads trained reference PyTorch CIFAR ResNet weights into this package's builder.

Usage:
    python -m keras_resnet_cifar.import_weights --weights=~/data/reference/resnet56.npz

writes ``runs/reference/resnet56.keras`` (``runs/`` is not tracked by git), or
the ``.keras`` path given as ``--out``: this package's ``resnetN`` (option-A
shortcuts) holding the reference weights, with the reference's input
normalisation in its ``normalize`` layer, so it takes raw pixels like every
model here (see :mod:`keras_resnet_cifar.models.reference_weights`).

The reference weights (``resnetN.npz``, converted from the reference's released
``.th`` checkpoints by ``keras_resnet_cifar.convert_checkpoint``) are BSD
2-clause, Copyright (c) 2018 Yerlan Idelbayev: the licence must travel with any
model made from them (docs/exactness.md, "Reference weights").
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.models import reference_weights
from keras_resnet_cifar.errors import UserError

DEFAULT_OUT = Path("runs") / "reference"  # <DEFAULT_OUT>/resnetN.keras


def define_flags() -> None:
    flags.DEFINE_string("weights", None, "Reference state dict, resnetN.npz.")
    flags.DEFINE_string("out", None, f"Where to write the .keras model (default: "
                        f"{DEFAULT_OUT}/<resnetN>.keras).")


def main(argv):
    del argv  # cli.run refuses positional arguments
    FLAGS = flags.FLAGS
    if FLAGS.out and not FLAGS.out.endswith(".keras"):
        raise UserError(f"--out must end in .keras, got {FLAGS.out!r}.")
    state = reference_weights.load_state_dict(FLAGS.weights)
    from keras_resnet_cifar import fileio
    from keras_resnet_cifar.models import networks  # Keras loads here

    model = reference_weights.reference_model(state)
    out = Path(FLAGS.out) if FLAGS.out else DEFAULT_OUT / f"{model.name}.keras"
    with fileio.atomic_path(out) as tmp:
        model.save(tmp)
    print(f"wrote {out}: {model.name}, "
          f"{networks.count_trainable_params(model):,} trainable parameters")
    print(reference_weights.LICENSE_NOTE)


if __name__ == "__main__":
    define_flags()
    cli.run(main, required={"weights": "the reference weights, resnetN.npz"})
