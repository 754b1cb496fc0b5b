"""The public Python API: its names are pinned, they load lazily, and docs/api.md runs."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest

import keras_resnet_cifar

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"

# The stable names. Changing this set changes the API: say so in docs/api.md.
PUBLIC = {"__version__", "TrainConfig", "build_model", "load_data", "train_and_evaluate",
          "load_model", "Predictor", "classify", "evaluate", "export", "read_run",
          "reference_model", "UserError", "CLASS_NAMES"}


def test_the_public_names_are_pinned():
    assert set(keras_resnet_cifar.__all__) == PUBLIC
    assert PUBLIC <= set(dir(keras_resnet_cifar))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_resnet_cifar.nope  # noqa: B018


def test_every_public_name_resolves_and_is_documented():
    text = DOCS.read_text()
    for name in PUBLIC - {"__version__"}:
        assert getattr(keras_resnet_cifar, name) is not None
        assert f"`{name}" in text or f" {name}," in text, name


def test_the_names_load_no_tensorflow_until_used():
    """A fresh interpreter: importing the API's names loads neither TensorFlow nor Keras."""
    code = ("import sys\n"
            "from keras_resnet_cifar import (TrainConfig, load_data, load_model, Predictor,\n"
            "    classify, evaluate, export, read_run, reference_model, UserError, CLASS_NAMES)\n"
            "import json\n"
            "print(json.dumps(sorted(m for m in ('tensorflow', 'keras', 'matplotlib')\n"
            "                        if m in sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout) == []


def test_read_run_of_something_else_is_one_sentence(tmp_path):
    with pytest.raises(keras_resnet_cifar.UserError, match="is not a training run directory"):
        keras_resnet_cifar.read_run(tmp_path)


def test_docs_api_examples_run():
    """docs/api.md's examples, as doctests (tiny models, synthetic data)."""
    failures, tried = doctest.testfile(
        str(DOCS), module_relative=False, report=True,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried > 20
    assert failures == 0
