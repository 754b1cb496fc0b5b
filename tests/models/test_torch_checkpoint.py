"""The PyTorch .th reader: exactly the arrays torch saved (tests/fixtures, see its script),
the .npz written from them, hostile pickles and declared sizes refused."""

import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar.models import torch_checkpoint
from keras_resnet_cifar.errors import UserError

DATA = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = dict(np.load(DATA / "torch_tiny.npz"))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_with_other_globals_is_refused(tmp_path):
    path = tmp_path / "evil.th"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"state_dict": _Evil()}, protocol=2))
    with pytest.raises(UserError, match=r"print, which .* refusing"):
        torch_checkpoint.load(path)


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable torch checkpoint"),
    (b"not a checkpoint at all", "not a readable torch checkpoint"),
    (None, "ends early"),
])
def test_broken_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad.th"
    path.write_bytes(content if content is not None else
                     (DATA / "torch_tiny_legacy.th").read_bytes()[:-100])
    with pytest.raises(UserError, match=message):
        torch_checkpoint.load(path)
    with pytest.raises(UserError, match="No checkpoint at"):
        torch_checkpoint.load(tmp_path / "missing.th")


def _fake_torch_pickle(tensors: dict, storage_elements: int, protocol: int = 2) -> bytes:
    """A pickle of {name: tensor} as torch.save writes it, made without torch: the tensors
    are (shape, strides) over one FloatStorage of ``storage_elements`` elements."""
    import collections
    import types

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, \
        _rebuild_tensor_v2
    storage = object()

    class Tensor:
        def __init__(self, shape, strides):
            self.layout = (shape, strides)

        def __reduce__(self):
            return _rebuild_tensor_v2, (storage, 0, *self.layout, False,
                                        collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", storage_elements) \
                if obj is storage else None

    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        buf = __import__("io").BytesIO()
        Pickler(buf, protocol=protocol).dump(
            {"state_dict": {k: Tensor(*v) for k, v in tensors.items()}})
        return buf.getvalue()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name)
            else:
                sys.modules[name] = module


def _zip_th(path, tensors, storage_elements, declared=None):
    """A zip checkpoint; ``declared`` patches the size its directory announces for the
    storage (the bytes on disk stay a few)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("bomb/data.pkl", _fake_torch_pickle(tensors, storage_elements))
        z.writestr("bomb/data/0", np.zeros(storage_elements, np.float32).tobytes())
    if declared is not None:
        raw = bytearray(path.read_bytes())
        entry = raw.rindex(b"bomb/data/0") - 46  # its central directory entry
        assert raw[entry:entry + 4] == b"PK\x01\x02"
        raw[entry + 24:entry + 28] = declared.to_bytes(4, "little")
        path.write_bytes(bytes(raw))
    return path


def test_a_checkpoint_that_would_cost_gigabytes_is_refused_before_it_is_read(tmp_path):
    # Issue 29: a stride-0 tensor expanded to 1.6 GB and accepted; a zip storage of 2 GB;
    # a legacy storage count of terabytes; negative and float shapes were tracebacks.
    import struct

    assert torch_checkpoint.load(_zip_th(tmp_path / "ok.th", {"w": ((2, 3), (3, 1))}, 6))[
        "state_dict"]["w"].shape == (2, 3)
    for name, tensors, elements, declared, message in (
            ("stride0", {"w": ((20_000, 20_000), (0, 0))}, 1, None,
             r"A tensor of shape \(20000, 20000\) repeats its storage of 1 elements"),
            ("storage", {"w": ((4,), (1,))}, 4, 2_000_000_000,
             "Its members announce 2,000,000,.* bytes, more than the 268,435,456"),
            ("negative", {"w": ((-4,), (1,))}, 4, None, "A tensor has a malformed layout"),
            ("float", {"w": ((2.0,), (1,))}, 4, None, "A tensor has a malformed layout")):
        path = _zip_th(tmp_path / f"{name}.th", tensors, elements, declared)
        assert path.stat().st_size < 4096
        with pytest.raises(UserError, match=message):
            torch_checkpoint.load(path)
    legacy = tmp_path / "legacy.th"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
                       + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2)
                       + _fake_torch_pickle({"w": ((4,), (1,))}, 4)
                       + pickle.dumps(["0"], protocol=2) + struct.pack("<q", 1 << 40))
    with pytest.raises(UserError, match="A storage announces 1,099,511,627,776 elements"):
        torch_checkpoint.load(legacy)


def test_state_dicts_of_other_keys_values_or_depths_are_one_line(tmp_path):
    # Issue 29: int keys and nesting thousands deep were tracebacks; an int storage was
    # written to the .npz as weights.
    int_key = _zip_th(tmp_path / "int_key.th", {7: ((4,), (1,))}, 4)
    int_storage = tmp_path / "int_storage.th"
    with zipfile.ZipFile(int_storage, "w") as z:
        z.writestr("bomb/data.pkl", _fake_torch_pickle({"w": ((4,), (1,))}, 4).replace(
            b"FloatStorage", b"IntStorage"))
        z.writestr("bomb/data/0", np.zeros(4, np.int32).tobytes())
    deep = tmp_path / "deep.th"
    with zipfile.ZipFile(deep, "w") as z:  # {"state_dict": [[[...]]]}, 100,000 deep
        z.writestr("bomb/data.pkl", b"\x80\x02}X\n\x00\x00\x00state_dict"
                   + b"]" * 100_001 + b"a" * 100_000 + b"s.")
    for path, message in ((int_key, r"int_key.th: The checkpoint holds no state dict of "
                                    r"tensors \(names to tensors\)"),
                          (int_storage, r"int_storage.th: The checkpoint's 'w' holds int32 "
                                        r"values, not float weights"),
                          (deep, r"deep.th is not a readable torch checkpoint \(maximum "
                                 r"recursion depth exceeded")):
        with pytest.raises(UserError, match=message):
            torch_checkpoint.convert(path)


@pytest.mark.parametrize("name", ["torch_tiny_zip.th", "torch_tiny_legacy.th"])
def test_both_formats_give_exactly_torch_arrays(name):
    checkpoint = torch_checkpoint.load(DATA / name)
    assert float(checkpoint["best_prec1"]) == 91.25
    raw = checkpoint["state_dict"]
    assert list(raw) == [f"module.{k}" for k in EXPECTED]  # order kept
    for key, want in EXPECTED.items():
        got = raw[f"module.{key}"]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    state = torch_checkpoint.convert(DATA / name)
    assert set(state) == {k for k in EXPECTED if not k.endswith("num_batches_tracked")}
    for key, value in state.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, EXPECTED[key])


def test_write_npz_keeps_every_key_and_no_pickle(tmp_path):
    state = {"allow_pickle": np.ones(2, np.float32), "file": np.zeros(3, np.int64),
             "layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    torch_checkpoint.write_npz(state, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as loaded:
        assert set(loaded) == set(state)
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # no temporary left
