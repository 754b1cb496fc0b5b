"""keras_resnet_cifar.deploy.seal: this machine's HMAC seal of an export, and its key."""

from __future__ import annotations

import os

import pytest

from keras_resnet_cifar.deploy import seal
from keras_resnet_cifar.errors import UserError

CARD = {"name": "m", "version": 1}
FILES = {"saved_model.pb": "0" * 64}


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def test_a_seal_vouches_for_exactly_its_card_and_files(config):
    assert seal.load_key() is None  # no key until the first export
    sealed = {**CARD, seal.SEAL: seal.seal(CARD, FILES)}
    assert seal.key_path().stat().st_mode & 0o777 == 0o600
    assert seal.problem(sealed, FILES) is None
    assert "changed after the export" in seal.problem({**sealed, "version": 2}, FILES)
    assert "changed after the export" in seal.problem(sealed, {**FILES, "extra": "1" * 64})
    assert "without this machine's seal" in seal.problem(CARD, FILES)


def test_another_key_does_not_vouch(config):
    sealed = {**CARD, seal.SEAL: seal.seal(CARD, FILES)}
    seal.key_path().unlink()
    seal.load_key(create=True)
    assert "another key" in seal.problem(sealed, FILES)


@pytest.mark.parametrize("mode, size, found", [(0o644, seal.KEY_BYTES, "mode 644"),
                                               (0o600, 5, "holds 5 bytes")])
def test_a_key_others_can_read_or_of_the_wrong_size_is_refused(config, mode, size, found):
    path = seal.key_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(size))
    path.chmod(mode)
    with pytest.raises(UserError, match=found):
        seal.load_key()
