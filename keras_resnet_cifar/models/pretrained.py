"""The reference implementation's released checkpoints: where they are, their hashes, fetching.

The reference CIFAR-10 ResNets (github.com/akamaster/pytorch_resnet_cifar10, BSD 2-clause,
Copyright (c) 2018 Yerlan Idelbayev), .th files in its pretrained_models/ named like torch
hub files (resnet20-12fca82f.th: the start of the sha256), fetched into Keras' cache. The
full sha256 of ResNet-20, 32, 44 and 56 are pinned, from the reference repository's git
history (commit d5489e8995e81e91ce6b1d69dcc98ad579b0b153, 2021-07-20; blob ids match);
converted, they equal the arrays the exactness tests score at the published accuracies.
ResNet-110 and 1202 could not be read here: only their names' 8 hex digits are checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from keras_resnet_cifar.errors import UserError, first_line
from keras_resnet_cifar.models import reference_weights, torch_checkpoint

REPOSITORY = "https://github.com/akamaster/pytorch_resnet_cifar10"
BASE_URL = f"{REPOSITORY}/raw/master/pretrained_models/"


@dataclasses.dataclass(frozen=True)
class Release:
    file: str
    sha256: str | None = None

    @property
    def prefix(self) -> str:
        return self.file.rsplit("-", 1)[1].split(".")[0]


RELEASES = {
    "resnet20": Release("resnet20-12fca82f.th",
                        "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
    "resnet32": Release("resnet32-d509ac18.th",
                        "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850"),
    "resnet44": Release("resnet44-014dd654.th",
                        "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4"),
    "resnet56": Release("resnet56-4bfd9763.th",
                        "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"),
    "resnet110": Release("resnet110-1d1ed7c2.th"),   # full sha256 not established
    "resnet1202": Release("resnet1202-f3b1deed.th"),  # full sha256 not established
}


def release(name: str) -> Release:
    if name not in RELEASES:
        raise UserError(f"No released reference checkpoint {name!r}: there are "
                        f"{', '.join(RELEASES)}.")
    return RELEASES[name]


def url(name: str, base_url: str = BASE_URL) -> str:
    return base_url.rstrip("/") + "/" + release(name).file


def cache_dir() -> Path:
    """Keras' cache of downloaded models, as Keras Applications use it."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "models"


def check(path: str | os.PathLike, name: str) -> str | None:
    """Why `path` is not `name`'s released file (whole sha256 where pinned, else the name's
    8 hex digits), or None when it is."""
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    rel = release(name)
    expected = rel.sha256 or rel.prefix
    if actual.startswith(expected):
        return None
    return f"its sha256 is {actual}, not {expected}{'' if rel.sha256 else '...'}"


def fetch(name: str, *, base_url: str = BASE_URL, cache: str | os.PathLike | None = None) -> Path:
    """The checked copy of `name`'s released checkpoint in `cache`, downloaded if needed; a
    download enters the cache only once its hash is right (get_file would keep a wrong one)."""
    rel = release(name)
    folder = Path(cache) if cache is not None else cache_dir()
    cached = folder / rel.file
    if cached.is_file() and check(cached, name) is None:
        return cached
    source = url(name, base_url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    except OSError as e:
        raise UserError(f"Cannot write to the cache {folder}: {e.strerror}.") from None
    try:
        import keras  # only now: downloading is the one thing here that needs it

        try:
            downloaded = Path(keras.utils.get_file(rel.file, source, cache_dir=str(tmp),
                                                   cache_subdir="."))
        except Exception as e:  # get_file raises a bare Exception for HTTP and URL errors
            raise UserError(
                f"Cannot download {source} ({first_line(e)}). Without internet, download it "
                f"on another machine and put it at {cached} (it is checked against the same "
                "hash), or give its path as weights.", argument="weights") from None
        problem = check(downloaded, name)
        if problem:
            raise UserError(f"{source} is not the released {rel.file}: {problem}. Nothing "
                            "was kept.")
        os.replace(downloaded, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


def load_weights(weights: str, *, base_url: str = BASE_URL) -> dict:
    """The reference state dict (arrays under PyTorch's names) of `weights`: a name in
    RELEASES (fetched), a released .th checkpoint, or a .npz that convert_checkpoint made."""
    weights = str(fetch(weights, base_url=base_url)) if weights in RELEASES \
        else os.path.expanduser(str(weights))
    if str(weights).endswith(".th"):
        return torch_checkpoint.convert(weights)
    if str(weights).endswith(".npz"):
        return reference_weights.load_state_dict(weights)
    raise UserError(f"{weights} is neither a released model ({', '.join(RELEASES)}) nor a "
                    ".th or .npz file.")
