"""keras_resnet_cifar.deploy.evaluation_files: the evaluation files of a folder."""

from __future__ import annotations

import json
import os

import pytest

from keras_resnet_cifar.deploy import evaluation_files
from keras_resnet_cifar.errors import UserError

RESULT = {"class_names": ["a", "b"], "confusion_matrix": [[2, 0], [1, 1]],
          "per_class": [{"class": "a", "precision": 2 / 3, "recall": 1.0, "support": 2},
                        {"class": "b", "precision": 1.0, "recall": 0.5, "support": 2}]}


def test_the_three_files_and_their_staleness(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    os.utime(tmp_path / "model.keras", (1, 1))
    assert not evaluation_files.is_current(tmp_path)
    paths = evaluation_files.write_results(RESULT, tmp_path)
    assert [p.name for p in paths] == list(evaluation_files.RESULT_FILES)
    assert json.loads(paths[0].read_text()) == RESULT
    assert paths[1].read_text().splitlines() == [
        "class,precision,recall,support", "a,0.666667,1.000000,2", "b,1.000000,0.500000,2"]
    assert paths[2].read_text().splitlines() == ["true\\predicted,a,b", "a,2,0", "b,1,1"]
    assert evaluation_files.is_current(tmp_path)
    (tmp_path / "model.keras").touch()  # a newer model: the results are stale
    os.utime(paths[0], (1, 1))
    assert not evaluation_files.is_current(tmp_path)


def test_a_destination_that_cannot_take_every_file_is_refused_before_any(tmp_path):
    (tmp_path / "per_class.csv").mkdir()
    with pytest.raises(UserError, match="per_class.csv"):
        evaluation_files.write_results(RESULT, tmp_path)
    assert not (tmp_path / "evaluation.json").exists()
