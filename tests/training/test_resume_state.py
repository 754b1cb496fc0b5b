"""resume_state: backup/state.npz cannot lie about the run it resumes."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import loop


def _rewrite_state(run_dir, change_meta=None, change_arrays=None, compressed=False):
    """Rewrites backup/state.npz (a valid zip, CRCs and all) with its metadata or arrays
    changed: what someone who edits the file can write."""
    target = run_dir / run_files.STATE
    with np.load(target) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if change_meta:
        meta = change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    save = np.savez_compressed if compressed else np.savez
    with open(target, "wb") as f:
        save(f, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)), **arrays)


def _rows(n):
    return [{"epoch": i, "loss": 1.0} for i in range(1, n + 1)]


def test_a_resume_state_that_lies_is_refused_in_one_line(tmp_path, tiny, one_epoch_run):
    # Issue 29: a CRC-valid state claiming epoch 99 of 3 was accepted ("resuming from epoch
    # 99 of 3") and the run written as finished; epoch 0 retrained a finished epoch
    # silently; malformed metadata ended in tracebacks.
    run_dir = one_epoch_run
    longer = dataclasses.replace(tiny, epochs=3)
    history_before = (run_dir / run_files.HISTORY_JSON).read_text()
    metrics_before = (run_dir / run_files.METRICS).read_text()
    deep = "[" * 100_000 + "]" * 100_000
    cases = [
        (lambda m: {**m, "epoch": 99, "history": _rows(99)},
         "claims 99 completed epochs of a run of 1"),  # config.json: 1 until it resumes
        (lambda m: {**m, "epoch": 0, "history": [], "best": None},
         "holds 0 epoch\\(s\\) whose rows differ from the 1 of"),
        (lambda m: {**m, "epoch": -1}, "has epoch=-1, not a count"),
        (lambda m: {**m, "epoch": "1"}, "has epoch='1', not a count"),
        (lambda m: {**m, "epoch": 1.0}, "has epoch=1.0, not a count"),
        (lambda m: {**m, "epoch": 2, "history": _rows(2)}, "claims 2 completed epochs of a "
                                                            "run of 1"),
        (lambda m: {**m, "history": [{"epoch": 1, "loss": 123.0}]},
         "holds 1 epoch\\(s\\) whose rows differ from the 1 of"),
        (lambda m: {**m, "history": [{"epoch": 1, "loss": "low"}]},
         "has a history row of epoch 1 with a bad field 'loss'"),
        (lambda m: {**m, "history": {"epoch": 1}}, "has no list of history rows"),
        (lambda m: {**m, "best": {"epoch": 7, "metric": "val_accuracy", "value": 0.5}},
         "has best="),
        (lambda m: {**m, "variables": "all"}, "has no list of \\[variable path, shape\\]"),
        (lambda m: {k: v for k, v in m.items() if k != "variables"}, "has no list of"),
        (lambda m: [m], "holds a JSON list as metadata"),
        (lambda m: deep, "is unreadable \\(RecursionError"),
    ]
    for change, message in cases:
        copy = tmp_path / "copy"
        shutil.copytree(run_dir, copy)
        _rewrite_state(copy, change_meta=change)
        with pytest.raises(UserError, match=f"the resume state {copy / run_files.STATE} {message}"):
            loop.train_and_evaluate(longer, copy, verbose=0)
        assert (copy / run_files.HISTORY_JSON).read_text() == history_before  # nothing trained
        assert (copy / run_files.METRICS).read_text() == metrics_before
        shutil.rmtree(copy)


def test_a_resume_state_whose_arrays_are_not_the_models_is_refused(tmp_path, tiny, one_epoch_run):
    run_dir = one_epoch_run
    longer = dataclasses.replace(tiny, epochs=2)

    def shape(arrays):
        arrays["v00000"] = arrays["v00000"][..., :1]

    def dtype(arrays):
        arrays["v00000"] = arrays["v00000"].astype(np.float64)

    def bomb(arrays):  # 64 MB of zeros, compressed to a few kilobytes on disk
        arrays["v00001"] = np.zeros(16 << 20, np.float32)

    def missing(arrays):
        del arrays["v00002"]

    for change, message in ((shape, r"holds float32 \(3, 3, 3, 1\) for"),
                            (dtype, "holds float64 .* for .*, which is float32"),
                            (bomb, "declares 67,108,992 bytes for"),
                            (missing, "is unreadable \\(KeyError")):
        copy = tmp_path / "copy"
        shutil.copytree(run_dir, copy)
        _rewrite_state(copy, change_arrays=change, compressed=True)
        assert (copy / run_files.STATE).stat().st_size < 2 << 20
        with pytest.raises(UserError, match=f"the resume state {copy / run_files.STATE} {message}"):
            loop.train_and_evaluate(longer, copy, verbose=0)
        assert [r["epoch"] for r in run_files.read_history(copy)] == [1]
        shutil.rmtree(copy)
