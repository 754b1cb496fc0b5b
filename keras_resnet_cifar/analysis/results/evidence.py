"""What every finding is made of: the per-run measures, Welch's t-test of one measure over
the seeds of two networks (compare), the within-run note, the chance warning."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from keras_resnet_cifar.analysis.results import stats
from keras_resnet_cifar.analysis.results.runs import CHANCE_ERROR, Run


def finding(claim: str, source: str, verdict: str, evidence: str, **numbers) -> dict[str, Any]:
    return {"claim": claim, "source": source, "verdict": verdict, "evidence": evidence,
            "numbers": numbers}


def pct_spread(values: Sequence[float]) -> str:
    """"41.29 ± 1.20 (std over 3 seeds)" or "41.29 (one seed)", in percent."""
    mean, std, n = stats.mean_std(values)
    if mean is None:
        return "n/a"
    return (f"{100 * mean:.2f}% ± {100 * std:.2f} (std over {n} seeds)" if n > 1
            else f"{100 * mean:.2f}% (one seed)")


def test_error(run: Run) -> float | None:
    return run.final_test_error


def training_error_measure(runs: Sequence[Run]) -> tuple[str, Callable[[Run], float | None]]:
    """How "training error" is measured for all of `runs`: the last curve segment's when
    every run has curve points, else the last epoch's (never a mix)."""
    if runs and all(r.curve_points for r in runs):
        return ("training error over the last curve segment",
                lambda r: r.last_point["train_error"])
    return ("training error over the last epoch", lambda r: (1 - r.history[-1]["accuracy"])
            if r.history and r.history[-1].get("accuracy") is not None else None)


def within_run_note(a: Run, b: Run, what: str) -> str:
    """A within-run standard error of one-run comparisons: information only."""
    if what == "test":
        errors = [(r.final_test_error, r.final_test[1]) for r in (a, b)]
        if all(e is not None and n for e, n in errors):
            se = math.sqrt(sum(e * (1 - e) / n for e, n in errors))
            return (f"within-run binomial SE of the difference {100 * se:.2f} points on "
                    f"{errors[0][1]:,} and {errors[1][1]:,} test images (information only)")
        return ""
    points = [r.last_point for r in (a, b)]
    if all(p and p.get("train_error_se") for p in points):
        se = math.hypot(*(p["train_error_se"] for p in points))
        return (f"within-run SE of the difference over the segments' batches "
                f"{100 * se:.2f} points (information only)")
    return ""


def compare(a_runs: Sequence[Run], b_runs: Sequence[Run], measure: Callable[[Run], Any],
            claimed_sign: int, what: str, kind: str = "test"
            ) -> tuple[str, str, dict, dict | None]:
    """(verdict, evidence sentence, numbers, stats.decision) of Welch's t-test of `measure`,
    a minus b."""
    a, b = [measure(r) for r in a_runs], [measure(r) for r in b_runs]
    test = stats.welch(a, b)
    decided = stats.decision(test, claimed_sign)
    verdict = stats.decide(decided)
    name_a, name_b = a_runs[0].model, b_runs[0].model
    text = f"{what}: {name_a} {pct_spread(a)} vs {name_b} {pct_spread(b)}; "
    if test is not None:
        text += test.describe()
    else:
        ma, mb = stats.mean_std(a)[0], stats.mean_std(b)[0]
        if ma is None or mb is None:
            verdict = stats.NOT_MEASURED
            text += "not measured"
        else:
            note = (within_run_note(a_runs[0], b_runs[0], kind)
                    if len(a_runs) == 1 and len(b_runs) == 1 else "")
            text += (f"difference {100 * (ma - mb):+.2f} points; no test with one seed"
                     + (f" ({note})" if note else ""))
    numbers = {"a": name_a, "b": name_b, "a_values": a, "b_values": b,
               "test": test.as_dict() if test else None}
    return verdict, text, numbers, decided


def at_chance(runs: Sequence[Run], measure: Callable[[Run], Any]) -> str:
    """A warning when a net's mean training error is within two binomial SEs of chance."""
    values = [v for v in (measure(r) for r in runs) if v is not None]
    if not values:
        return ""
    n = runs[0].images_per_epoch or runs[0].train_set_size
    if np.mean(values) < CHANCE_ERROR - 2 * math.sqrt(CHANCE_ERROR * (1 - CHANCE_ERROR) / n):
        return ""
    return (f" {runs[0].model}'s training error is at chance level ({100 * CHANCE_ERROR:.0f}%): it "
            "had not started learning, an extreme form of the degradation the claim describes.")
