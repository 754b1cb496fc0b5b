"""Builds this package's ResNet holding the reference PyTorch implementation's trained weights.

    python -m keras_resnet_cifar.import_weights --weights=resnet56
    python -m keras_resnet_cifar.import_weights --weights=~/data/reference/resnet56.npz

A released model is downloaded once, checked against its pinned hash and cached. Writes
runs/reference/resnetN.keras (or --out), taking raw pixels like every model here, with the
weights' licence beside it as LICENSE.weights (BSD 2-clause, Copyright (c) 2018 Yerlan
Idelbayev: it travels with any model made from them).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from keras_resnet_cifar import cli, fileio
from keras_resnet_cifar.models import pretrained, reference_weights
from keras_resnet_cifar.errors import UserError

DEFAULT_OUT = Path("runs") / "reference"  # <DEFAULT_OUT>/resnetN.keras


def define_flags() -> None:
    flags.DEFINE_string("weights", None, "A released model (resnet20, resnet32, resnet44, "
                        "resnet56, resnet110, resnet1202: downloaded once and cached), or a "
                        "reference .th checkpoint, or a .npz made from one.")
    flags.DEFINE_string("weights_url", pretrained.BASE_URL, "The folder (a mirror's) the released "
                        "checkpoints are downloaded from.")
    flags.DEFINE_string("out", None, f"Where to write the .keras model (default: "
                        f"{DEFAULT_OUT}/<resnetN>.keras).")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.out and not FLAGS.out.endswith(".keras"):
        raise UserError(f"--out must end in .keras, got {FLAGS.out!r}.")
    weights = FLAGS.weights
    if weights in pretrained.RELEASES:
        path = pretrained.fetch(weights, base_url=FLAGS.weights_url)
        checked = ("its sha256" if pretrained.RELEASES[weights].sha256
                   else "only the 8 hex digits of its name: no full sha256 is pinned")
        print(f"using {path} (checked: {checked})")
        weights = str(path)
    state = pretrained.load_weights(weights)
    from keras_resnet_cifar.models import networks  # Keras loads here

    model = reference_weights.reference_model(state)
    out = Path(FLAGS.out) if FLAGS.out else DEFAULT_OUT / f"{model.name}.keras"
    with fileio.atomic_path(out) as tmp:
        model.save(tmp)
    licence = reference_weights.write_licence(out.parent)
    print(f"wrote {out}: {model.name}, "
          f"{networks.count_trainable_params(model):,} trainable parameters")
    print(f"wrote {licence}: the weights' BSD 2-clause licence (Copyright (c) 2018 Yerlan "
          "Idelbayev); keep it with the model and anything made from it")


if __name__ == "__main__":
    define_flags()
    cli.run(main, required={"weights": "a released model (resnet20 ... resnet1202) or "
                                       "a reference .th or .npz file"})
