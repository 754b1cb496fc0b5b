"""The claims the study tests, each with a verdict decided over seeds.

Two sets of claims:

* :func:`paper_claims`: the four claims of the reproduction this project was
  specified from (V. R. Shinde, 2025, "Deep Residual Learning for Image
  Recognition: Implementation and Analysis"): (a) plain-56 below plain-20,
  (b) ResNet-56 above ResNet-20, (c) the residual advantage grows with depth
  (1.11 -> 6.54 points there), (d) ResNet-20 converges "2x faster" than plain-20;
* :func:`he_claims`: He et al.'s (2016) further claims: residual above plain at
  each depth, degradation through the run (the curves of their Figures 1 and 6),
  weaker responses of residual functions (Figure 7), and gradients reaching the
  early layers more evenly.

Every verdict follows :mod:`keras_resnet_cifar.analysis.report.stats` (Welch's t-test
over seeds, or a one-sample t-test of a per-seed quantity; p < 0.05 with the
claimed sign). A finding is a dict: "claim", "source", "verdict", "evidence" (a
sentence with the numbers) and "numbers", made with
:mod:`keras_resnet_cifar.analysis.report.evidence`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from keras_resnet_cifar.analysis.report import stats
from keras_resnet_cifar.analysis.report.evidence import (
    at_chance, compare, finding, pct_spread, test_error, training_error_measure,
    within_run_note)
from keras_resnet_cifar.analysis.report.runs import CHANCE_ERROR, Run, by_model, passes_to_train_error

PAPER = "Shinde (2025)"
HE = "He et al. (2016)"
# The reproduction's residual advantage (plain minus residual test error, points).
PAPER_ADVANTAGE = {20: 1.11, 56: 6.54}

CONVERGENCE_RULE = (
    "\"Converges 2x faster\" (claim (d)) is measured as the passes over the training set a "
    "network needs until its training error falls to a level: half-way from chance (90%) "
    "to the highest final training error among the runs compared, so that every run "
    "reaches it, and early enough to be about the speed of descent rather than where each "
    "run ends. The passes come from the curve points (each point's training error, over "
    "the batches since the point before, placed at the point; a run starts at chance; the "
    "crossing interpolated linearly between two points), not from the per-epoch "
    "evaluations, which seeds >= 1 do not have and which give one number per pass. Per seed "
    "(both networks of one seed see the same batches) the ratio plain / residual; ratios "
    "multiply, so the test is a one-sample t-test of the log ratios. **Supported**: the "
    "geometric mean ratio is at least 2 and the ratio is significantly above 1 (p < 0.05): "
    "faster, and by about the claimed factor. **Contradicted**: the ratio is significantly "
    "below 2. Otherwise not decided. Claim (c) is tested on the seed-paired growth of the "
    "advantage, (plain56 - resnet56) - (plain20 - resnet20) in test error per seed, with a "
    "one-sample t-test against 0 (a paired test: the four networks of a seed share its data "
    "order). Claim (a) needs both its parts (training and test error) supported.")


# ---------------------------------------------------------------------------
# The reproduction paper's four claims.

def _pair(groups, family: str, depths: tuple[int, int]) -> tuple[list[Run], list[Run]] | None:
    lo, hi = (groups.get(f"{family}{d}") for d in depths)
    return (lo, hi) if lo and hi else None


def _common_seeds(*groups: Sequence[Run]) -> list[int]:
    seeds = set.intersection(*({r.seed for r in g} for g in groups))
    return sorted(seeds)


def _seed(runs: Sequence[Run], seed: int) -> Run:
    return next(r for r in runs if r.seed == seed)


def convergence_level(nets: Sequence[Sequence[Run]]) -> float | None:
    """The training-error level of the speed comparison: half-way from chance down to
    the highest final (last curve segment) training error among the runs, so that
    every run reaches it; None when some run has no curve or ends at chance."""
    finals = [r.last_point["train_error"] for runs in nets for r in runs if r.last_point]
    if len(finals) < sum(len(runs) for runs in nets) or not finals:
        return None
    worst = max(finals)
    if worst >= CHANCE_ERROR:
        return None
    return CHANCE_ERROR - (CHANCE_ERROR - worst) / 2


def convergence_finding(plain: Sequence[Run], residual: Sequence[Run], depth: int,
                        source: str) -> dict[str, Any]:
    """"The residual net converges at least 2x faster" at one depth, measured per seed.

    Definition: passes over the training set until the training error (curve
    points, interpolated; :func:`~keras_resnet_cifar.analysis.report.runs.passes_to_train_error`)
    falls to the level half-way from chance to the highest final training error of
    the runs compared (:func:`convergence_level`: every run gets there). Per seed
    (the same seed of both nets sees the same batches), the ratio plain / residual.
    Test: one-sample t-tests of the log ratios (ratios multiply, so their logs are
    averaged). Supported when the geometric mean ratio is at least 2 and the ratio
    is significantly above 1; contradicted when it is significantly below 2.
    """
    claim = (f"At depth {depth}, the residual net converges at least 2x faster than the "
             "plain one (passes to a training-error level)")
    level = convergence_level([plain, residual])
    if level is None:
        return finding(claim, source, stats.NOT_MEASURED,
                        "needs curve points in every run, and runs that left chance.")
    seeds = _common_seeds(plain, residual)
    ratios, rows, early = [], [], 0
    for seed in seeds:
        runs = [_seed(g, seed) for g in (plain, residual)]
        p, r = (passes_to_train_error(x, level) for x in runs)
        if p and r:
            ratios.append(p / r)
            rows.append(f"seed {seed}: {p:.2f} vs {r:.2f} passes")
            # Before the first point the crossing rests on the assumed start at chance.
            early += sum(t <= x.curve_points[0]["epoch"] * x.passes_per_epoch
                         for t, x in zip((p, r), runs))
    logs = [math.log(x) for x in ratios]
    faster = stats.one_sample(logs, 0.0)
    twice = stats.one_sample(logs, math.log(2))
    geometric = math.exp(np.mean(logs)) if logs else None
    if faster is None:
        verdict = stats.ONE_SEED if ratios else stats.NOT_MEASURED
    elif geometric >= 2 and faster.p < stats.ALPHA and faster.difference > 0:
        verdict = stats.SUPPORTED
    elif twice.p < stats.ALPHA and twice.difference < 0:
        verdict = stats.CONTRADICTED
    else:
        verdict = stats.NOT_DECIDED
    evidence = (f"passes until the training error falls to {100 * level:.1f}% (half-way from "
                f"chance to the highest final training error of these runs; curve points, "
                f"interpolated), plain{depth} vs resnet{depth}: {'; '.join(rows) or 'none'}")
    if early:
        evidence += (f" ({early} of {2 * len(ratios)} crossings fall before the first curve "
                     "point, where only the start at chance locates them)")
    if geometric is not None:
        evidence += f"; ratio plain/residual, geometric mean over seeds {geometric:.2f}"
    if faster is not None:
        evidence += (f" (per seed {', '.join(f'{x:.2f}' for x in ratios)}); log ratio vs 0 "
                     f"(faster at all): {faster.describe(1, '', 3)}; vs log 2 (2x): "
                     f"{twice.describe(1, '', 3)}")
    return finding(claim, source, verdict, evidence + ".", depth=depth, level=level,
                    ratios=ratios, seeds=seeds, geometric_mean_ratio=geometric,
                    crossings_before_first_point=early,
                    test_faster=faster.as_dict() if faster else None,
                    test_twice=twice.as_dict() if twice else None)


def paper_claims(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The reproduction paper's four claims (see the module), each with a verdict."""
    groups = by_model(runs)
    train_name, train_error = training_error_measure(runs)
    out = []

    # (a) Degradation: plain-56 has higher training and test error than plain-20.
    claim = "(a) plain-56 is below plain-20: higher training and test error (degradation)"
    pair = _pair(groups, "plain", (20, 56))
    if pair:
        lo, hi = pair
        v_train, t_train, n_train = compare(hi, lo, train_error, +1, train_name, "train")
        v_test, t_test, n_test = compare(hi, lo, test_error, +1, "final test error")
        out.append(finding(claim, PAPER, stats.combine([v_train, v_test]),
                            f"{t_train} ({v_train}); {t_test} ({v_test})."
                            + at_chance(hi, train_error),
                            training_error=n_train, test_error=n_test))
    else:
        out.append(finding(claim, PAPER, stats.NOT_MEASURED, "needs plain20 and plain56 runs."))

    # (b) ResNet-56 above ResNet-20.
    claim = "(b) ResNet-56 is above ResNet-20: lower test error"
    pair = _pair(groups, "resnet", (20, 56))
    if pair:
        lo, hi = pair
        verdict, text, numbers = compare(hi, lo, test_error, -1, "final test error")
        _, t_train, n_train = compare(hi, lo, train_error, -1, train_name, "train")
        out.append(finding(claim, PAPER, verdict, f"{text}. Information: {t_train}.",
                            test_error=numbers, training_error=n_train))
    else:
        out.append(finding(claim, PAPER, stats.NOT_MEASURED,
                            "needs resnet20 and resnet56 runs."))

    # (c) The residual advantage grows with depth.
    claim = ("(c) the residual advantage (plain minus residual test error) grows with depth "
             f"(the paper: {PAPER_ADVANTAGE[20]} points at 20 layers, {PAPER_ADVANTAGE[56]} "
             "at 56)")
    nets = [groups.get(m) for m in ("plain20", "resnet20", "plain56", "resnet56")]
    if all(nets):
        seeds = _common_seeds(*nets)
        adv20, adv56, growth = [], [], []
        for seed in seeds:
            p20, r20, p56, r56 = (test_error(_seed(g, seed)) for g in nets)
            adv20.append(p20 - r20)
            adv56.append(p56 - r56)
            growth.append((p56 - r56) - (p20 - r20))
        test = stats.one_sample(growth, 0.0)
        verdict = stats.verdict(test, +1) if seeds else stats.NOT_MEASURED
        m20, m56 = (stats.mean_std(x) for x in (adv20, adv56))
        text = (f"advantage at 20 layers {100 * m20[0]:+.2f} points, at 56 layers "
                f"{100 * m56[0]:+.2f} points (means over seeds {', '.join(map(str, seeds))}); "
                "growth per seed (plain56 - resnet56) - (plain20 - resnet20), paired by seed: "
                + ", ".join(f"{100 * g:+.2f}" for g in growth) + "; "
                + (test.describe() if test else "no test with one seed") + " (one-sample "
                "t-test of the seed-paired growth against 0)") if seeds else \
            "no seed has all four networks"
        out.append(finding(claim, PAPER, verdict, text + ".", seeds=seeds,
                            advantage_20=adv20, advantage_56=adv56, growth=growth,
                            test=test.as_dict() if test else None))
    else:
        out.append(finding(claim, PAPER, stats.NOT_MEASURED,
                            "needs plain20, resnet20, plain56 and resnet56 runs."))

    # (d) ResNet-20 converges 2x faster than plain-20.
    pair = (groups.get("plain20"), groups.get("resnet20"))
    if all(pair):
        found = convergence_finding(*pair, 20, PAPER)
        found["claim"] = "(d) ResNet-20 converges 2x faster than plain-20 " \
                         "(passes to a training-error level)"
        out.append(found)
    else:
        out.append(finding("(d) ResNet-20 converges 2x faster than plain-20", PAPER,
                            stats.NOT_MEASURED, "needs plain20 and resnet20 runs."))
    return out


# ---------------------------------------------------------------------------
# He et al.'s further claims.

def curve_finding(shallow: Sequence[Run], deep: Sequence[Run], residual: bool) -> dict:
    """Degradation through the run (plain) or its absence (residual), point by point.

    At every curve step the runs share, Welch's t-test over seeds of the deep net's
    training error minus the shallow one's. Plain: supported when the deep net is
    significantly above at every step, contradicted when significantly below at
    any. Residual ("the deeper net trains at least as well"): decided at the last
    step, supported when significantly below, contradicted when significantly above.
    """
    a, b = deep[0].model, shallow[0].model
    claim = (f"Degradation through the run: {a}'s training error is above {b}'s at every "
             "curve point" if not residual else
             f"No degradation with residual connections: {a}'s training error ends below "
             f"{b}'s")
    by_step = [{p["step"]: p["train_error"] for p in r.curve_points} for r in (*deep, *shallow)]
    steps = sorted(set.intersection(*(set(s) for s in by_step))) if by_step else []
    if not steps:
        return finding(claim, HE, stats.NOT_MEASURED, f"{a} and {b} have no curve point "
                        "at the same step.")
    tests = []
    for step in steps:
        d = [r_steps[step] for r_steps in by_step[:len(deep)]]
        s = [r_steps[step] for r_steps in by_step[len(deep):]]
        tests.append((d, s, stats.welch(d, s)))
    last_d, last_s, last_test = tests[-1]
    where = f"{steps[-1] / deep[0].steps_per_epoch * deep[0].passes_per_epoch:g} passes " \
            f"({steps[-1]:,} iterations)"
    if last_test is None:
        verdict = stats.ONE_SEED
        counts = ""
    else:
        above = sum(t.p < stats.ALPHA and t.difference > 0 for *_, t in tests)
        below = sum(t.p < stats.ALPHA and t.difference < 0 for *_, t in tests)
        counts = (f"{a} significantly above at {above} of {len(steps)} common curve points, "
                  f"significantly below at {below}; ")
        if not residual:
            verdict = (stats.CONTRADICTED if below else
                       stats.SUPPORTED if above == len(steps) else stats.NOT_DECIDED)
        else:
            verdict = stats.verdict(last_test, -1)
    evidence = (counts + f"over the last curve segment, up to {where}: {a} {pct_spread(last_d)}"
                f" vs {b} {pct_spread(last_s)}; "
                + (last_test.describe() if last_test else
                   "no test with one seed" + (f" ({within_run_note(deep[0], shallow[0], 'train')})"
                                              if len(deep) == len(shallow) == 1 else "")) + ".")
    return finding(claim, HE, verdict, evidence, deep=a, shallow=b, steps=steps,
                    differences=[float(np.mean(d) - np.mean(s)) for d, s, _ in tests],
                    p_values=[t.p if t else None for *_, t in tests])


def _early_late_ratio(names: Sequence[str], norms: Sequence[float]) -> float:
    """Median gradient norm of the first third of conv layers over that of the last third."""
    conv = [v for n, v in zip(names, norms) if n != "logits"]
    third = max(1, len(conv) // 3)
    return float(np.median(conv[:third]) / max(np.median(conv[-third:]), 1e-30))


def _stats_at(run: Run, epoch: float) -> dict[str, Any] | None:
    return next((e for e in (run.layer_stats or {}).get("epochs", []) if e["epoch"] == epoch),
                None)


def _residual_vs_plain(claim: str, measure: Callable[[Run], float], residual: Sequence[Run],
                       plain: Sequence[Run], depth: int, epoch: float, evidence: str,
                       digits: int, after: str = "") -> dict[str, Any]:
    """A finding that ``measure`` (per seed) is lower in the residual net than the plain one.

    The evidence reads ``{evidence}resnetN <values> vs plainN <values>{after}; <test>.``
    """
    a, b = [measure(x) for x in residual], [measure(x) for x in plain]
    test = stats.welch(a, b)
    return finding(
        claim, HE, stats.verdict(test, -1),
        f"{evidence}resnet{depth} {', '.join(f'{v:.{digits}f}' for v in a)} vs plain{depth} "
        f"{', '.join(f'{v:.{digits}f}' for v in b)}{after}; "
        + (test.describe(1, "", 3) if test else "no test with one seed") + ".",
        depth=depth, epoch=epoch, residual=a, plain=b, test=test.as_dict() if test else None)


def layer_findings(plain: Sequence[Run], residual: Sequence[Run], depth: int) -> list[dict]:
    """He et al.'s Figure 7 and the "gradient highway" at one depth, over seeds."""
    p = [r for r in plain if r.layer_stats]
    r = [x for x in residual if x.layer_stats]
    if not p or not r:
        return []
    common = sorted(set.intersection(*({e["epoch"] for e in x.layer_stats["epochs"]}
                                       for x in (*p, *r))))
    out = []
    trained = [e for e in common if e > 0]
    if trained:
        last = trained[-1]
        out.append(_residual_vs_plain(
            f"At depth {depth}, residual functions respond more weakly than plain layers "
            "(He et al., Figure 7)",
            lambda run: float(np.mean(_stats_at(run, last)["response_std"])), r, p, depth, last,
            f"after epoch {last:g}, mean std of the 3x3 layers' BN outputs on one fixed batch: ",
            digits=3, after=" (per seed)"))
    for epoch in common:
        def unevenness(run, epoch=epoch):
            row = _stats_at(run, epoch)
            return abs(math.log10(_early_late_ratio(run.layer_stats["gradient_layers"],
                                                    row["gradient_norm"])))

        out.append(_residual_vs_plain(
            f"At depth {depth}, epoch {epoch:g}: gradients reach the early layers more evenly "
            "in the residual net (the 'gradient highway')", unevenness, r, p, depth, epoch,
            "|log10| of the median kernel-gradient norm of the first third of conv layers "
            "over the last third (0 = even), per seed: ", digits=2))
    return out


def he_claims(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """He et al.'s claims beyond the paper's four (see the module)."""
    groups = by_model(runs)
    depths = sorted({r.spec.depth for r in runs})
    out = []
    for depth in depths:
        p, r = groups.get(f"plain{depth}"), groups.get(f"resnet{depth}")
        if p and r:
            verdict, text, numbers = compare(r, p, test_error, -1, "final test error")
            out.append(finding(f"At depth {depth}, the residual net is more accurate than "
                                "the plain one (lower test error)", HE, verdict, text + ".",
                                depth=depth, **numbers))
    for family, residual in (("plain", False), ("resnet", True)):
        nets = [m for m in groups if m.startswith(family)]
        nets.sort(key=lambda m: groups[m][0].spec.depth)
        if len(nets) >= 2 and all(x.curve_points for m in nets for x in groups[m]):
            out.append(curve_finding(groups[nets[0]], groups[nets[-1]], residual))
    for depth in depths:
        p, r = groups.get(f"plain{depth}"), groups.get(f"resnet{depth}")
        if p and r and depth != 20:
            out.append(convergence_finding(p, r, depth, HE))
    for depth in depths:
        p, r = groups.get(f"plain{depth}"), groups.get(f"resnet{depth}")
        if p and r:
            out.extend(layer_findings(p, r, depth))
    return out


def derive(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Every finding: the paper's four claims, then He et al.'s."""
    return paper_claims(runs) + he_claims(runs)
