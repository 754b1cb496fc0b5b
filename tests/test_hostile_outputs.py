"""Issue 29: evaluate's results are written whole or not at all; text from model files is escaped."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from keras_resnet_cifar.deploy import evaluation, evaluation_files, sources
from keras_resnet_cifar.errors import UserError

RESULT = {"images": 2, "accuracy": 0.5, "loss": 1.0, "macro_precision": 0.5, "macro_recall": 0.5,
          "class_names": ["a\x1b[2J", "b"], "confusion_matrix": [[1, 0], [1, 0]],
          "per_class": [{"class": "a\x1b[2J", "precision": 0.5, "recall": 1.0, "support": 1},
                        {"class": "b", "precision": 0.0, "recall": 0.0, "support": 1}]}


@pytest.mark.parametrize("blocked", ["per_class.csv", "confusion_matrix.csv"])
def test_no_result_is_written_unless_all_can_be(tmp_path, blocked):
    (tmp_path / blocked).mkdir()
    with pytest.raises(UserError, match=f"{blocked} is a directory, where a regular file "
                                        "belongs"):
        evaluation_files.write_results(RESULT, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [blocked]


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "o"):
        with pytest.raises(UserError, match=f"Cannot create {out}: {tmp_path / 'f'} is not a "
                                            "folder"):
            evaluation_files.write_results(RESULT, out)
    assert (tmp_path / "f").read_text() == "x"


def test_class_names_from_a_model_are_printed_escaped():
    table = evaluation.format_table(RESULT)
    assert "\x1b" not in table and "a\\x1b[2J" in table


@pytest.mark.parametrize("name", [5, ["x"], "a\x1b[31m", "../up"])
def test_a_card_name_that_is_no_model_name_is_not_the_export_name(name):
    source = SimpleNamespace(keras_model=None, model=SimpleNamespace(
        card={"name": name}, path=Path("exports/resnet20/1")))
    assert sources.default_name(source) == "resnet20"
