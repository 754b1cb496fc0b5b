"""Issue 29: numeric flags beyond their range, and inputs that were tracebacks, are one line.

Each command runs in a fresh interpreter (the refusal comes before TensorFlow loads,
so each takes seconds), and leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_resnet_cifar import convert_checkpoint, fileio
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.models import reference_weights

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# What the one error line must name: the flag, the value refused and the bound it broke
# (absl's bounds or the command's own check: the wording is not the contract).
@pytest.mark.parametrize("command,args,named", [
    ("train", ["--cpu_devices=-1"], ("--cpu_devices=-1", "[0, 64]")),
    ("train", ["--cpu_devices=100000"], ("--cpu_devices=100000", "[0, 64]")),
    # Refused before the run directory exists (a NaN loss in it was the refusal).
    ("train", ["--learning_rate=1e300"], ("--learning_rate", "at most 1,000", "1e+300")),
    ("train", ["--warmup_learning_rate=1e300"],
     ("--warmup_learning_rate", "at most 1,000", "1e+300")),
    ("train", ["--weight_decay=1e300"], ("--weight_decay", "at most 1,", "1e+300")),
    ("predict", ["--num_threads=2147483648", "--model_path=m.keras", "a.png"],
     ("--num_threads=2147483648", "[1, 1024]")),
    ("evaluate", ["--num_threads=2147483648", "--model_path=m.keras"],
     ("--num_threads=2147483648", "[1, 1024]")),
    ("benchmark", ["--intra_op_threads=2147483647", "--models=resnet8"],
     ("--intra_op_threads", "[0, 1024]", "2147483647")),
    ("study", ["--layer_stats_batch=0", "--models=resnet8"],
     ("--layer_stats_batch=0", "[1, 10000]")),
    ("study", ["--layer_stats_batch=-5", "--models=resnet8"],
     ("--layer_stats_batch=-5", "[1, 10000]")),
])
def test_thread_and_batch_counts_out_of_range_are_one_line(tmp_path, command, args, named):
    done = subprocess.run([sys.executable, "-m", f"keras_resnet_cifar.{command}", *args],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(part in line for part in named), line
    assert list(tmp_path.iterdir()) == []


def test_an_array_named_like_a_savez_keyword_is_not_lost(tmp_path):
    # Issue 29: convert_checkpoint dropped an array named allow_pickle from its .npz.
    state = {"allow_pickle": np.arange(3, dtype=np.float32), "file": np.ones(2, np.float32),
             "layer1.0.conv1.weight": np.zeros((4, 4, 3, 3), np.float32)}
    convert_checkpoint.write_npz(state, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(state)
        for key, value in state.items():
            np.testing.assert_array_equal(z[key], value)


def test_npz_members_that_are_not_weights_are_one_line(tmp_path):
    # Issue 29: string dtypes, non-.npy members and a header claiming 400 GB.
    import zipfile

    np.savez(tmp_path / "strings.npz", a=np.array(["x", "y"]))
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("notes.txt", "hello")
    header = {"descr": "<f4", "fortran_order": False, "shape": (100_000, 1_000_000)}
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        with z.open("a.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 16)
    header["shape"] = (1 << 40, -(1 << 40))  # its byte count is negative: it passed
    with zipfile.ZipFile(tmp_path / "negative.npz", "w") as z:
        with z.open("a.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 16)
    for name, message in (("strings", r"claims a <U1 array of shape \(2,\)"),
                          ("negative", r"shape \(1099511627776, -1099511627776\)"),
                          ("other", "holds 'notes.txt', not an array"),
                          ("huge", r"claims a float32 array of shape \(100000, 1000000\) "
                                   r"\(400,000,000,000 bytes")):
        with pytest.raises(UserError, match=message):
            reference_weights.load_state_dict(tmp_path / f"{name}.npz")


def test_a_directory_where_a_file_is_written_is_one_line(tmp_path):
    # Issue 29: run-folder files replaced by directories (evaluation.json, per_class.csv).
    (tmp_path / "evaluation.json").mkdir()
    with pytest.raises(UserError, match="evaluation.json is a directory, where the file it "
                                        "names is written"):
        fileio.write_json(tmp_path / "evaluation.json", {})
    with pytest.raises(UserError, match="evaluation.json is a directory, not a regular file"):
        fileio.read_json(tmp_path / "evaluation.json")
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]


def test_an_export_version_beyond_int64_is_refused_before_anything_is_made():
    # Issue 29: export --version=1e20 wrote a version folder TF Serving cannot load.
    from keras_resnet_cifar.deploy import exporter

    exporter.check_options(version=2**63 - 1, variants=())
    for version in (2**63, 10**20, 0):
        with pytest.raises(UserError, match=rf"\[1, {2**63 - 1}\] .*got {version}\.") as e:
            exporter.check_options(version=version, variants=())
        assert e.value.argument == "version"
