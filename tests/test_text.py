"""Counts and nouns in sentences, and the predict table's columns."""

from keras_resnet_cifar.data.labels import format_ranked
from keras_resnet_cifar.text import plural


def test_plural():
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(10000, "test image") == "10,000 test images"
    assert plural(2, "batch", "batches") == "2 batches"


def test_predict_table_columns_line_up():
    rows = [{"input": "cat.png", "top": [{"class": "cat", "probability": 0.9},
                                         {"class": "automobile", "probability": 0.05}]},
            {"input": "batch.npy[12]", "top": [{"class": "automobile", "probability": 0.5},
                                               {"class": "cat", "probability": 0.25}]}]
    lines = format_ranked(rows).splitlines()
    assert lines == ["cat.png        cat         90.0%  automobile   5.0%",
                     "batch.npy[12]  automobile  50.0%  cat         25.0%"]
    # Every column starts at the same place on every line.
    assert [line.index("%") for line in lines] == [lines[0].index("%")] * 2
