"""This machine's own record that this project exported a model: an HMAC-SHA256 seal.

A SavedModel is a program, and whoever writes a hostile one writes a matching card too. The
exporter signs the card and every file's sha256 with a key only this user here has
(`key_path()`: 32 random bytes, 0600 in a 0700 folder, made by the first export): a copy
taken elsewhere needs trust_savedmodel; removing the key revokes every seal. No TensorFlow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

SEAL = "local_seal"      # the model-card key holding {"algorithm", "key_id", "tag"}
ALGORITHM = "hmac-sha256"
KEY_BYTES = 32
_DOMAIN = b"keras_resnet_cifar export seal v1\n"


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "keras-resnet-cifar" / "export.key"


def _read_key(path: Path) -> bytes:
    with fileio.open_regular(path, max_bytes=KEY_BYTES) as f:
        info = os.fstat(f.fileno())
        key = f.read()
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise UserError(f"{path} belongs to another user: refused as the export key.")
    if info.st_mode & 0o077:
        raise UserError(f"{path} can be read by other users (mode "
                        f"{stat.S_IMODE(info.st_mode):o}): refused as the export key. "
                        f"chmod 600 {path} if you trust it, or remove it.")
    if len(key) != KEY_BYTES:
        raise UserError(f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte export "
                        "key: remove it (the next export makes a new one).")
    return key


def load_key(*, create: bool = False) -> bytes | None:
    """This user's export key (checked), made if absent and `create`, else None. A new key is
    linked into place from a private file: exports starting together agree on one, whole."""
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fileio.check_not_link(path.parent, directory=True)
        fd, tmp = tempfile.mkstemp(prefix=".export.key.", dir=path.parent)  # 0600
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another export made it first: use that one
        finally:
            os.unlink(tmp)
    except OSError as e:
        raise UserError(f"Cannot make the export key {path}: {e.strerror or e}.") from None
    return _read_key(path)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"key id\n" + key).hexdigest()[:16]


def _tag(key: bytes, card: dict[str, Any], files: dict[str, str]) -> str:
    card = {k: v for k, v in card.items() if k != SEAL}
    message = json.dumps({"card": card, "files": files}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, _DOMAIN + message, hashlib.sha256).hexdigest()


def seal(card: dict[str, Any], files: dict[str, str]) -> dict[str, str]:
    """The seal of a version's card (without the seal) and `files` ({path: sha256})."""
    key = load_key(create=True)
    return {"algorithm": ALGORITHM, "key_id": _key_id(key), "tag": _tag(key, card, files)}


def problem(card: dict[str, Any], files: dict[str, str]) -> str | None:
    """Why `card`'s seal does not vouch for a version whose files are now `files`, or None:
    a file added, removed or changed since the export breaks it as a forged tag does."""
    recorded = card.get(SEAL)
    if not (isinstance(recorded, dict) and recorded.get("algorithm") == ALGORITHM
            and isinstance(recorded.get("tag"), str)):
        return ("has a model card without this machine's seal (it was not exported here, "
                "or by an older version of keras_resnet_cifar.export)")
    key = load_key()
    if key is None or recorded.get("key_id") != _key_id(key):
        return ("has a model card sealed with another key than this user's "
                f"{key_path()} (exported on another machine, or the key was replaced)")
    if not hmac.compare_digest(recorded["tag"], _tag(key, card, files)):
        return ("does not match its model card's seal: its files or its card changed "
                "after the export (or the seal is forged)")
    return None
