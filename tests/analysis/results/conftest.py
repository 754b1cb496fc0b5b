"""Fixtures shared by the results tests."""

import pytest

from tests.analysis.results.fake_runs import epoch_run, evaluation, layer_stats


@pytest.fixture
def epoch_study(tmp_path):
    """plain20/resnet20 with two seeds each, plain56/resnet56 with one.

    Degradation is built in: plain56 ends with 40% training error, plain20 with 20%.
    """
    return [
        epoch_run(tmp_path, "plain20", 0, [0.5, 0.7, 0.8], [0.45, 0.6, 0.70]),
        epoch_run(tmp_path, "plain20", 1, [0.5, 0.7, 0.8], [0.45, 0.6, 0.74]),
        epoch_run(tmp_path, "resnet20", 0, [0.6, 0.8, 0.9], [0.55, 0.7, 0.80],
                 evaluation=evaluation(0.81)),
        epoch_run(tmp_path, "resnet20", 1, [0.6, 0.8, 0.9], [0.55, 0.7, 0.78]),
        epoch_run(tmp_path, "plain56", 0, [0.3, 0.5, 0.6], [0.3, 0.45, 0.55],
                 stats=layer_stats(56, 1.0, 10.0, 1.0)),
        epoch_run(tmp_path, "resnet56", 0, [0.6, 0.85, 0.95], [0.6, 0.75, 0.85],
                 stats=layer_stats(56, 0.4, 1.5, 1.0)),
    ]
