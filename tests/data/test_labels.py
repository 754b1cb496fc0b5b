"""labels: CIFAR-10's class names, ranked predictions and the predict table."""

import numpy as np

from keras_resnet_cifar.data.labels import CIFAR10_CLASSES, format_ranked, top_k


def test_top_k_ranks_best_first_and_ties_keep_label_order():
    probabilities = np.array([[0.1, 0.3, 0.3, 0.2, 0.1], [0.7, 0.0, 0.1, 0.1, 0.1]])
    names = CIFAR10_CLASSES[:5]
    assert top_k(probabilities, names, k=3) == [
        [("automobile", 0.3), ("bird", 0.3), ("cat", 0.2)],
        [("airplane", 0.7), ("bird", 0.1), ("cat", 0.1)]]
    assert [len(row) for row in top_k(probabilities, names, k=99)] == [5, 5]
    assert [len(row) for row in top_k(probabilities, names, k=0)] == [1, 1]


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
