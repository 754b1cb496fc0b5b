"""The reference PyTorch CIFAR ResNets' weights in this package's builder, and back.

The weights (resnetN.npz: the reference's state dicts as NumPy arrays; BSD 2-clause,
Copyright (c) 2018 Yerlan Idelbayev, a licence that travels with any model made from them:
docs/exactness.md) fit resnetN with option-A shortcuts to the letter: 1-pixel padding on
every 3x3 convolution, x[::2, ::2] subsampling, zero channels half before and half after,
BatchNorm eps 1e-5. Only the input normalisation differs: ImageNet statistics on [0, 1]
pixels, which reference_model stores rescaled so the model still takes raw pixels.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError, first_line
from keras_resnet_cifar.models import arch

# The reference's licence (its LICENSE), beside the weights and in exports made from them.
LICENCE_FILE = "LICENSE.weights"
LICENCE_TEXT = """\
Copyright (c) 2018, Yerlan Idelbayev

Redistribution and use in source and binary forms, with or without modification, are permitted \
provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of \
conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice, this list of \
conditions and the following disclaimer in the documentation and/or other materials provided \
with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR \
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY \
AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR \
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR \
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR \
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY \
THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR \
OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE \
POSSIBILITY OF SUCH DAMAGE.
"""


# The reference's largest network, ResNet-1202, has 19.4 M float32 parameters (78 MB):
# a .npz's members are refused beyond these, from the sizes its zip directory declares.
MAX_NPZ_BYTES = 256 << 20
MAX_NPZ_MEMBERS = 10_000  # ResNet-1202's state dict has about 3,000 arrays

LICENCE_NOTE = ("Weights: reference PyTorch CIFAR ResNets, Copyright (c) 2018 Yerlan "
                f"Idelbayev, BSD 2-clause licence (see {LICENCE_FILE} beside the .npz).")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict saved as .npz (no pickled objects allowed)."""
    if not os.path.isfile(path):
        raise UserError(f"No weights file at {path}.")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} exists but is not a .npz weights file (not a zip archive).")
    try:
        with np.load(path, allow_pickle=False) as z:
            members = z.zip.infolist()
            declared = sum(m.file_size for m in members)
            if len(members) > MAX_NPZ_MEMBERS or declared > MAX_NPZ_BYTES:
                raise UserError(f"{path} announces {len(members):,} arrays of {declared:,} bytes, "
                                f"more than the {MAX_NPZ_MEMBERS:,} arrays and {MAX_NPZ_BYTES:,} "
                                "bytes of any reference network: refused before reading.")
            for member in members:
                _check_member(z.zip, member, path)
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path} is not a readable .npz state dict ({first_line(e)}).") from None


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path) -> None:
    """Refuses a member that is not a numeric .npy array as large as its header says; only
    the header is read, so a claim of 400 GB is refused before NumPy allocates it."""
    fmt = np.lib.format
    if not member.filename.endswith(".npy"):
        raise UserError(f"{path} holds {member.filename!r:.80}, not an array (.npy): not a "
                        ".npz state dict.")
    with archive.open(member) as f:
        version = fmt.read_magic(f)
        read_header = (fmt.read_array_header_1_0 if version == (1, 0)
                       else fmt.read_array_header_2_0)
        shape, _, dtype = read_header(f)
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.kind not in "biuf" or size > member.file_size or min(shape, default=0) < 0:
        raise UserError(f"{path}: its {member.filename!r:.80} claims a {dtype} array of shape "
                        f"{shape!s:.80} ({size:,} bytes in {member.file_size:,}): not an array "
                        "of weights.")


def _depth_of(state: Mapping[str, np.ndarray]) -> int:
    blocks = {k.split(".")[1] for k in state if k.startswith("layer1.")}
    if not blocks:
        raise UserError("The state dict has no layer1.* keys: not a CIFAR ResNet state dict.")
    depth = 6 * len(blocks) + 2
    if depth > arch.MAX_DEPTH:  # refused before a network of that depth is built
        raise UserError(f"The state dict's keys name {len(blocks):,} blocks per stage, a "
                        f"ResNet-{depth}: deeper than ResNet-{arch.MAX_DEPTH}, the deepest "
                        "reference network.")
    return depth


_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _keras_to_torch_names(spec) -> dict[str, str]:  # Keras layer -> PyTorch module prefix
    names = {"stem_conv": "conv1", "stem_bn": "bn1", "logits": "linear"}
    for s in range(1, 4):
        for b in range(1, spec.blocks_per_stage + 1):
            for layer in ("conv1", "bn1", "conv2", "bn2"):
                names[f"stage{s}_block{b}_{layer}"] = f"layer{s}.{b - 1}.{layer}"
    return names


def reference_model(state: Mapping[str, np.ndarray]):
    """resnetN (option A, reference normalisation) holding `state`; keys and shapes checked."""
    from keras_resnet_cifar.models import networks  # Keras loads here, not on import

    depth = _depth_of(state)
    model = networks.build_model(f"resnet{depth}", mean=arch.IMAGENET_MEAN, std=arch.IMAGENET_STD)
    spec = arch.parse_name(f"resnet{depth}")
    used = set()

    def take(key, shape):
        if key not in state:
            raise UserError(f"The state dict lacks {key!r} needed by resnet{depth}.")
        value = np.asarray(state[key], np.float32)
        if value.shape != shape:
            raise UserError(f"{key!r} has shape {value.shape}, resnet{depth} needs {shape}.")
        used.add(key)
        return value

    for keras_name, torch_name in _keras_to_torch_names(spec).items():
        layer = model.get_layer(keras_name)
        if keras_name.endswith(("conv", "conv1", "conv2")):
            kernel = layer.kernel
            kh, kw, cin, cout = kernel.shape
            w = take(f"{torch_name}.weight", (cout, cin, kh, kw))  # OIHW -> HWIO
            layer.set_weights([w.transpose(2, 3, 1, 0)])
        elif keras_name == "logits":
            cin, cout = layer.kernel.shape
            layer.set_weights([take("linear.weight", (cout, cin)).T, take("linear.bias", (cout,))])
        else:
            c = layer.gamma.shape[0]
            layer.set_weights([take(f"{torch_name}.{k}", (c,)) for k in _BN_KEYS])
    extra = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if extra:
        raise UserError(f"The state dict has {len(extra)} keys resnet{depth} does not use, "
                        f"e.g. {extra[0]!r}.")
    return model


def to_state_dict(model) -> dict[str, np.ndarray]:
    """The reference state dict of a plainN/resnetN (option A) model: reference_model's
    inverse, without the input normalisation (no PyTorch counterpart)."""
    if any(layer.name.endswith("_shortcut_conv") for layer in model.layers):
        raise ValueError("Option-B shortcuts have no counterpart in the reference network.")
    spec = arch.parse_name(model.name)
    state = {}
    for keras_name, torch_name in _keras_to_torch_names(spec).items():
        weights = model.get_layer(keras_name).get_weights()
        if keras_name == "logits":
            state["linear.weight"], state["linear.bias"] = weights[0].T, weights[1]
        elif keras_name.endswith(("conv", "conv1", "conv2")):
            state[f"{torch_name}.weight"] = weights[0].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            state.update({f"{torch_name}.{k}": v for k, v in zip(_BN_KEYS, weights)})
    return {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}


def write_licence(folder: str | os.PathLike) -> Path:
    path = Path(folder) / LICENCE_FILE
    try:
        fileio.write_text(path, LICENCE_TEXT)
    except OSError as e:
        raise UserError(f"Cannot write {path} ({e.strerror or e}).") from None
    return path
