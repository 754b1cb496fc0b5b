"""evidence: one measure compared over seeds, the within-run note, the chance warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from keras_resnet_cifar.analysis.results import evidence
from keras_resnet_cifar.analysis.results.runs import Run


def _run(model, seed, test_accuracy, train_accuracy=0.8, test_images=512):
    """A Run as load_run makes it, with only what the comparisons read."""
    return Run(path=Path(f"{model}-seed{seed}"),
               config={"model": model, "seed": seed, "batch_size": 128, "epochs": 1,
                       "steps_per_epoch": 10},
               history=[{"epoch": 1, "accuracy": train_accuracy}],
               metrics={"test_accuracy": test_accuracy, "test_images": test_images},
               evaluation=None, layer_stats=None)


def test_compare_decides_over_seeds_with_the_claimed_sign():
    a = [_run("plain56", s, acc) for s, acc in enumerate((0.60, 0.61, 0.59))]
    b = [_run("plain20", s, acc) for s, acc in enumerate((0.70, 0.71, 0.69))]
    verdict, text, numbers, decided = evidence.compare(a, b, evidence.test_error, +1,
                                                       "final test error")
    assert verdict == "supported" and decided["if_significant"] == "supported"
    assert text.startswith("final test error: plain56 40.00% ± 1.00 (std over 3 seeds) vs "
                           "plain20 30.00% ± 1.00 (std over 3 seeds); ")
    assert numbers["a_values"] == pytest.approx([0.40, 0.39, 0.41])
    assert evidence.compare(a, b, evidence.test_error, -1, "e")[0] == "contradicted"


def test_one_seed_each_is_not_decided_and_shows_the_within_run_error():
    verdict, text, numbers, decided = evidence.compare(
        [_run("resnet20", 0, 0.62)], [_run("plain20", 0, 0.60)], evidence.test_error, -1,
        "final test error")
    assert decided is None
    # -2 points on 512 test images each: sqrt(.62 * .38 / 512 + .6 * .4 / 512) = 3.05 points.
    assert verdict == "not decided (one seed)" and numbers["test"] is None
    assert text.endswith("difference -2.00 points; no test with one seed (within-run "
                         "binomial SE of the difference 3.05 points on 512 and 512 test "
                         "images (information only))")


def test_training_error_comes_from_one_source_for_all_runs():
    name, measure = evidence.training_error_measure([_run("plain20", 0, 0.6, 0.75)])
    assert name == "training error over the last epoch"
    assert measure(_run("plain20", 0, 0.6, 0.75)) == pytest.approx(0.25)


def test_at_chance_warns_only_within_two_binomial_errors_of_chance():
    # 1,280 training images per epoch: the chance band is 88.3-90% training error.
    stuck = [_run("plain56", s, 0.1, train_accuracy=0.11) for s in (0, 1)]
    measure = lambda r: 1 - r.history[-1]["accuracy"]  # noqa: E731
    assert "plain56's training error is at chance level (90%)" in evidence.at_chance(
        stuck, measure)
    learning = [_run("plain56", s, 0.5, train_accuracy=0.2) for s in (0, 1)]
    assert evidence.at_chance(learning, measure) == ""
