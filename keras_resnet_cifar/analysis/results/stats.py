"""The verdict rule (RULE): tests over seeds, never over the images of one run. Welch's
two-sample t-test of per-seed values, or a one-sample t-test of a per-seed quantity;
Holm-Bonferroni over the family; adjusted p < ALPHA with the claimed sign."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import numpy as np

ALPHA = 0.05
SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_DECIDED = "not decided"
ONE_SEED = "not decided (one seed)"
NOT_MEASURED = "not measured"
NOT_TESTABLE = "not testable at this budget"
DESCRIBED = "no verdict (described, not tested)"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_DECIDED, ONE_SEED, NOT_MEASURED, NOT_TESTABLE, DESCRIBED)
# Verdicts that a multiplicity correction and a budget qualify ("supported at 3 passes").
TESTED = (SUPPORTED, CONTRADICTED, NOT_DECIDED)

RULE = ("A verdict rests on the spread between seeds, never on the images of one run: per-seed "
        "values of two networks are compared with Welch's two-sample t-test (unequal variances); "
        "a quantity computed per seed (a seed-paired difference, a log ratio) with a one-sample "
        "t-test (claims (c) and (d) and the convergence rows). Each tested claim has one p-value "
        "its verdict rests on (for a claim made of parts that must all hold, the largest of the "
        "parts' p-values). **Multiplicity**: the p-values of all tested claims of a report form "
        "one family, adjusted by Holm-Bonferroni (step-down; the family-wise error rate of the "
        f"verdicts is at most {ALPHA:g}); each verdict gives the raw and the adjusted p, and the "
        "verdict follows the adjusted one. **Supported**: the difference has the claimed sign and "
        f"the adjusted two-sided p < {ALPHA:g}. **Contradicted**: the opposite sign with adjusted "
        f"p < {ALPHA:g}. **Not decided**: neither. Every such verdict names the budget it was "
        "reached at (\"at 3 passes\"): it says nothing of the end of a full schedule. **Not "
        "testable at this budget**: the claim is about the end of the full schedule (final "
        "accuracies), which a short run does not reach; its numbers are shown, untested, outside "
        "the family. **Not decided (one seed)**: fewer than two seeds on a side, so no spread to "
        "test against; a within-run standard error (binomial on the test images, or over a "
        "training segment's batches) may be shown as information, but it is never a verdict. **No "
        "verdict (described, not tested)**: a count or a spread shown for a claim that three "
        "seeds cannot test. **Not measured**: the runs lack what the claim needs.")


@dataclasses.dataclass(frozen=True)
class Test:
    kind: str                   # "Welch" or "one-sample"
    difference: float           # mean(a) - mean(b), or mean(values) - null
    se: float                   # its standard error over seeds
    t: float
    df: float
    p: float                    # two-sided
    n: tuple[int, ...]          # seeds per side

    def describe(self, scale: float = 100, unit: str = " points", digits: int = 2) -> str:
        t = f"{self.t:.2f}" if math.isfinite(self.t) else ("inf" if self.t > 0 else "-inf")
        return (f"difference {scale * self.difference:+.{digits}f} ± {scale * self.se:.{digits}f}"
                f"{unit} (SE over seeds), {self.kind} t = {t}, df = {self.df:.1f}, "
                f"p = {format_p(self.p)}, n = {', '.join(map(str, self.n))}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The two-sided `level` confidence interval of the difference (Student's t)."""
        from scipy import stats

        half = self.se * float(stats.t.ppf(0.5 + level / 2, self.df)) if self.se else 0.0
        return self.difference - half, self.difference + half


def format_p(p: float) -> str:
    """0.032, 0.0004, < 1e-6."""
    if not math.isfinite(p):
        return "n/a"
    if p < 1e-6:
        return "< 1e-6"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and math.isfinite(v)], np.float64)


def _t_test(kind: str, diff: float, se: float, df: float, n: tuple[int, ...], scipy_test) -> Test:
    """Without any spread (se 0): t = ±inf and p = 0 when the difference is not 0, else t = 0
    and p = 1; otherwise scipy's t and p (one side without spread: scipy warns, it holds)."""
    if se == 0:
        return Test(kind, diff, 0.0, math.copysign(math.inf, diff) if diff else 0.0, df,
                    0.0 if diff else 1.0, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_test()
    return Test(kind, diff, se, float(result.statistic), df, float(result.pvalue), n)


def welch(a: Sequence[float | None], b: Sequence[float | None]) -> Test | None:
    """Welch's t-test of mean(a) - mean(b); None with fewer than 2 values a side."""
    from scipy import stats  # through scikit-learn's dependencies; imported when needed

    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    # Welch-Satterthwaite degrees of freedom (what ttest_ind uses).
    df = (float(len(a) + len(b) - 2) if va + vb == 0 else
          float((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))))
    return _t_test("Welch", float(a.mean() - b.mean()), math.sqrt(va + vb), df,
                   (len(a), len(b)), lambda: stats.ttest_ind(a, b, equal_var=False))


def one_sample(values: Sequence[float | None], null: float = 0.0) -> Test | None:
    from scipy import stats

    x = _clean(values)
    if len(x) < 2:
        return None
    return _t_test("one-sample", float(x.mean() - null),
                   float(x.std(ddof=1) / math.sqrt(len(x))), float(len(x) - 1), (len(x),),
                   lambda: stats.ttest_1samp(x, null))


def verdict(test: Test | None, claimed_sign: int) -> str:
    return decide(decision(test, claimed_sign))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (step-down: the k-th smallest
    of m times (m - k + 1), made non-decreasing, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def decision(test: Test | None, claimed_sign: int) -> dict | None:
    """What a verdict rests on: {"p": the raw p, "if_significant": the verdict when (the
    adjusted) p < ALPHA}; None without a test."""
    if test is None:
        return None
    return {"p": test.p, "if_significant": SUPPORTED if test.difference * claimed_sign > 0
            else CONTRADICTED if test.difference else NOT_DECIDED}


def all_of(decisions: Sequence[dict | None]) -> dict | None:
    """A claim whose parts must all hold (intersection-union): supported at the largest p
    when every part is; contradicted at the smallest contradicting p times the parts."""
    if not decisions or any(d is None for d in decisions):
        return None
    against = [d["p"] for d in decisions if d["if_significant"] == CONTRADICTED]
    if against:
        return {"p": min(1.0, min(against) * len(decisions)), "if_significant": CONTRADICTED}
    if all(d["if_significant"] == SUPPORTED for d in decisions):
        return {"p": max(d["p"] for d in decisions), "if_significant": SUPPORTED}
    return {"p": 1.0, "if_significant": NOT_DECIDED}


def decide(decided: dict | None, p: float | None = None) -> str:
    if decided is None:
        return ONE_SEED
    p = decided["p"] if p is None else p
    return decided["if_significant"] if p < ALPHA else NOT_DECIDED


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of parts that must all hold."""
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    for v in (NOT_MEASURED, ONE_SEED):
        if v in verdicts:
            return v
    return NOT_DECIDED


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    x = _clean(values)
    if not len(x):
        return None, None, 0
    return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None), len(x)


def mean_se(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    mean, std, n = mean_std(values)
    return mean, (None if std is None else std / math.sqrt(n)), n
