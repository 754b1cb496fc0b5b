"""stats: the verdict rule (Welch's t-test over seeds, p < 0.05 with the claimed sign)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_resnet_cifar.analysis.results import stats


def test_welch_matches_scipy_and_the_verdict_rule():
    a, b = [0.50, 0.52, 0.55], [0.40, 0.41, 0.45]
    test = stats.welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert test.t == pytest.approx(ref.statistic) and test.p == pytest.approx(ref.pvalue)
    assert test.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert test.se == pytest.approx(math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3))
    assert test.n == (3, 3) and 2 < test.df < 4
    assert stats.verdict(test, +1) == "supported"
    assert stats.verdict(test, -1) == "contradicted"
    assert stats.verdict(stats.welch([0.5, 0.6, 0.4], [0.5, 0.55, 0.45]), +1) == "not decided"
    assert stats.welch([0.5], [0.4, 0.41]) is None
    assert stats.verdict(None, +1) == "not decided (one seed)"
    same = stats.welch([0.5, 0.5], [0.4, 0.4])  # no spread on either side
    assert same.p == 0 and same.t == math.inf and stats.verdict(same, +1) == "supported"
    assert stats.combine(["supported", "not decided"]) == "not decided"
    assert stats.combine(["supported", "contradicted"]) == "contradicted"
    assert stats.combine(["supported", "supported"]) == "supported"
    paired = stats.one_sample([0.1, 0.2, 0.15])
    assert paired.p == pytest.approx(scipy_stats.ttest_1samp([0.1, 0.2, 0.15], 0).pvalue)


def test_holm_adjusts_step_down_and_keeps_the_order():
    # m = 4: the smallest times 4, the next times 3 (but never below the one before), ...
    adjusted = stats.holm([0.04, 0.001, 0.03, 0.2])
    assert adjusted == pytest.approx([0.09, 0.004, 0.09, 0.2])
    assert stats.holm([]) == [] and stats.holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])


def test_all_of_is_an_intersection_union_test():
    sup = {"p": 0.01, "if_significant": stats.SUPPORTED}
    weaker = {"p": 0.04, "if_significant": stats.SUPPORTED}
    against = {"p": 0.02, "if_significant": stats.CONTRADICTED}
    assert stats.all_of([sup, weaker]) == {"p": 0.04, "if_significant": stats.SUPPORTED}
    assert stats.all_of([sup, against]) == {"p": 0.04, "if_significant": stats.CONTRADICTED}
    assert stats.all_of([sup, None]) is None
    assert stats.decide(weaker) == stats.SUPPORTED
    assert stats.decide(weaker, 0.08) == stats.NOT_DECIDED
