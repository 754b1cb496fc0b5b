"""The released reference checkpoints: fetched through keras.utils.get_file, checked, cached.

Every download here comes from a loopback HTTP server holding the real released
ResNet-20 file (tests/fixtures/resnet20-12fca82f.th); nothing reaches the internet.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import pretrained



def test_the_pinned_hashes_agree_with_the_file_names():
    """torch hub's convention: the 8 hex digits in a released file's name start its sha256."""
    assert set(pretrained.RELEASES) == {f"resnet{n}" for n in (20, 32, 44, 56, 110, 1202)}
    for name, rel in pretrained.RELEASES.items():
        assert rel.file.startswith(name + "-") and rel.file.endswith(".th")
        if rel.sha256:
            assert len(rel.sha256) == 64 and rel.sha256.startswith(rel.prefix)
    assert pretrained.url("resnet56") == (
        "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
        "resnet56-4bfd9763.th")


def test_the_fixture_is_the_released_resnet20(released_resnet20):
    assert hashlib.sha256(released_resnet20.read_bytes()).hexdigest() == \
        pretrained.RELEASES["resnet20"].sha256


def test_fetch_downloads_checks_and_caches(tmp_path, released_resnet20, http_server):
    site = tmp_path / "site" / "models"
    site.mkdir(parents=True)
    shutil.copy(released_resnet20, site)
    cache = tmp_path / "cache"
    base, asked = http_server(tmp_path / "site")
    path = pretrained.fetch("resnet20", base_url=base, cache=cache)
    assert path == cache / "resnet20-12fca82f.th"
    assert path.read_bytes() == released_resnet20.read_bytes()
    assert asked == ["/models/resnet20-12fca82f.th"]
    pretrained.fetch("resnet20", base_url=base, cache=cache)  # the cache answers
    assert len(asked) == 1
    assert sorted(p.name for p in cache.iterdir()) == ["resnet20-12fca82f.th"]


def test_a_wrong_file_is_refused_and_nothing_is_cached(tmp_path, released_resnet20, http_server):
    site = tmp_path / "site" / "models"
    site.mkdir(parents=True)
    data = bytearray(released_resnet20.read_bytes())
    data[-100] ^= 1  # one bit: a corrupt or substituted file
    (site / "resnet20-12fca82f.th").write_bytes(bytes(data))
    cache = tmp_path / "cache"
    base, _ = http_server(tmp_path / "site")
    with pytest.raises(UserError, match="is not the released resnet20-12fca82f.th: its "
                                        "sha256 is .*, not 12fca82f0beb"):
        pretrained.fetch("resnet20", base_url=base, cache=cache)
    assert list(cache.iterdir()) == []


def test_offline_names_the_url_and_the_manual_route(tmp_path, closed_port_url):
    base = closed_port_url
    with pytest.raises(UserError) as e:
        pretrained.fetch("resnet20", base_url=base, cache=tmp_path)
    message = str(e.value)
    assert f"Cannot download {base}resnet20-12fca82f.th" in message
    assert f"put it at {tmp_path / 'resnet20-12fca82f.th'}" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_prefilled_cache_needs_no_network(tmp_path, released_resnet20, closed_port_url):
    shutil.copy(released_resnet20, tmp_path)
    assert pretrained.fetch("resnet20", base_url=closed_port_url, cache=tmp_path) == \
        tmp_path / "resnet20-12fca82f.th"


def test_a_damaged_cached_file_is_downloaded_again(tmp_path, released_resnet20, http_server):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "resnet20-12fca82f.th").write_bytes(b"truncated")
    site = tmp_path / "site" / "models"
    site.mkdir(parents=True)
    shutil.copy(released_resnet20, site)
    base, asked = http_server(tmp_path / "site")
    path = pretrained.fetch("resnet20", base_url=base, cache=cache)
    assert asked and path.read_bytes() == released_resnet20.read_bytes()


def test_without_a_full_hash_the_name_prefix_is_checked(released_resnet20, monkeypatch):
    """ResNet-110 and 1202 have no pinned sha256 (see the module docstring): the prefix is."""
    assert pretrained.RELEASES["resnet110"].sha256 is None
    monkeypatch.setitem(pretrained.RELEASES, "resnet20",
                        pretrained.Release("resnet20-12fca82f.th"))
    assert pretrained.check(released_resnet20, "resnet20") is None
    monkeypatch.setitem(pretrained.RELEASES, "resnet20",
                        pretrained.Release("resnet20-12fca82e.th"))
    assert "not 12fca82e..." in pretrained.check(released_resnet20, "resnet20")


def test_unknown_names_are_refused():
    with pytest.raises(UserError, match="No released reference checkpoint 'resnet21'"):
        pretrained.fetch("resnet21")
