"""The claims the study tests, each with a verdict decided over seeds: paper_claims, the
reproduction's (V. R. Shinde, 2025, "Deep Residual Learning for Image Recognition:
Implementation and Analysis"; _PAPER_CLAIMS, "better across all classes", stability);
he_claims, He et al.'s (2016: Figures 1, 6 and 7, section 4.1) and this study's extension
of (d) to 56 layers. adjust applies Holm-Bonferroni over the tested claims and names the
budget in every verdict (stats.RULE, SCOPE_RULE)."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from keras_resnet_cifar.analysis.results import stats
from keras_resnet_cifar.analysis.results.evidence import (
    at_chance, compare, finding, pct_spread, test_error, training_error_measure, within_run_note)
from keras_resnet_cifar.analysis.results.runs import (
    CHANCE_ERROR, Run, by_model, passes_to_train_error)
from keras_resnet_cifar.config import FULL_EPOCHS

PAPER = "Shinde (2025)"
HE = "He et al. (2016)"
STUDY = "this study (exploratory)"
NOT_RECORDED = "section not recorded"
# The reproduction's Table 1 (test accuracy after 200 epochs), the residual advantage its
# text reads from it (plain minus residual test error, points) and the factor it draws.
REPRODUCTION = {"plain20": 0.9084, "resnet20": 0.9195, "plain56": 0.8671, "resnet56": 0.9325}
PAPER_ADVANTAGE = {20: 1.11, 56: 6.54}
PAPER_AMPLIFICATION = "6-fold"
# He et al. (2016), Table 6 (test error, 64k iterations); their plain nets appear only in figures.
HE_TABLE6 = {"resnet20": 1 - 0.0875, "resnet56": 1 - 0.0697}

CONVERGENCE_RULE = (
    "\"Converges 2x faster\" (claim (d)) is measured as the passes over the training set a "
    "network needs until its training error falls to a level: half-way from chance (90%) to the "
    "highest final training error among the runs compared, so that every run reaches it, and "
    "early enough to be about the speed of descent rather than where each run ends. The passes "
    "come from the curve points (each point's training error, over the batches since the point "
    "before, placed at the point; a run starts at chance; the crossing interpolated linearly "
    "between two points), not from the per-epoch evaluations, which seeds >= 1 do not have and "
    "which give one number per pass. Per seed (both networks of one seed see the same batches) "
    "the ratio plain / residual; ratios multiply, so the test is a one-sample t-test of the log "
    "ratios. **Supported**: the geometric mean ratio is at least 2 and the ratio is significantly "
    "above 1 (adjusted p < 0.05): faster, and by about the claimed factor. **Contradicted**: the "
    "ratio is significantly below 2. Otherwise not decided (the p of the row is that of the test "
    "its estimate points to). Claim (c) is tested on the seed-paired growth of the advantage, "
    "(plain56 - resnet56) - (plain20 - resnet20) in test error per seed, with a one-sample t-test "
    "against 0 (a paired test: the four networks of a seed share its data order). Claim (a) needs "
    "both its parts (training and test error) supported: its p is the larger of the two (an "
    "intersection-union test).")

SCOPE_RULE = (
    "**What a short budget can test.** Claims about the ordering of final accuracies after the "
    "full schedule (the reproduction paper's (b) ResNet-56 above ResNet-20, (c) the growing "
    "advantage and its \"6-fold amplification\", residual above plain at each depth, \"better "
    "across all classes\"; He et al.'s deeper ResNet with the lower training error, Figure 6 "
    "right) are *not testable at this budget* unless every run completed the full schedule: a "
    "deeper net descends later, so an early ordering says nothing of the final one. Claims about "
    "what training shows throughout (the plain nets' degradation, present from the first "
    "iterations in He et al.'s Figure 1; the speed of the early descent; layer responses and "
    "gradients at the recorded epochs) are tested, and their verdict names the budget "
    "(\"supported at 3 passes\").")


def _common_seeds(*groups: Sequence[Run]) -> list[int]:
    return sorted(set.intersection(*({r.seed for r in g} for g in groups)))


def _pairs(runs: Sequence[Run]) -> list[tuple[int, list[Run], list[Run]]]:
    """(depth, plain runs, residual runs) for each depth that has both networks."""
    groups = by_model(runs)
    return [(d, groups[f"plain{d}"], groups[f"resnet{d}"])
            for d in sorted({r.spec.depth for r in runs})
            if f"plain{d}" in groups and f"resnet{d}" in groups]


def _seed(runs: Sequence[Run], seed: int) -> Run:
    return next(r for r in runs if r.seed == seed)


def _with(found: dict[str, Any], *, section: str = NOT_RECORDED,
          end_of_schedule: bool = False, decision: dict | None = None,
          wording: str | None = None, measured: str | None = None) -> dict[str, Any]:
    """`found` with its place in the paper, whether it is about the end of the full
    schedule (a short run cannot test it) and the decision its verdict rests on."""
    found.update(section=section, end_of_schedule=end_of_schedule, decision=decision,
                 wording=wording or found.get("wording"))
    if measured or found.get("measured"):
        found["measured"] = measured or found["measured"]
    return found


def convergence_level(nets: Sequence[Sequence[Run]]) -> float | None:
    """Half-way from chance down to the highest final training error among the runs (so
    every run reaches it); None when some run has no curve or ends at chance."""
    finals = [r.last_point["train_error"] for runs in nets for r in runs if r.last_point]
    if len(finals) < sum(len(runs) for runs in nets) or not finals:
        return None
    worst = max(finals)
    if worst >= CHANCE_ERROR:
        return None
    return CHANCE_ERROR - (CHANCE_ERROR - worst) / 2


def convergence_finding(plain: Sequence[Run], residual: Sequence[Run], depth: int,
                        source: str) -> dict[str, Any]:
    """"The residual net converges at least 2x faster" at one depth (CONVERGENCE_RULE)."""
    claim = (f"At depth {depth}, the residual net converges at least 2x faster than the "
             "plain one (passes to a training-error level)")
    level = convergence_level([plain, residual])
    if level is None:
        if all(r.curve_points for g in (plain, residual) for r in g):
            return finding(claim, source, stats.NOT_MEASURED, "needs runs that left chance.")
        # Runs of `train` (Table 1's) record the training error once a pass: too coarse for
        # a descent that reaches the level within the first passes.
        return finding(claim, source, stats.NOT_MEASURED,
                       "needs curve points in every run (several a pass, as `study "
                       "--curve_points_per_epoch` records them): a training error once an "
                       "epoch is too coarse for a descent that reaches the level within the "
                       "first epochs.")
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
    decided = None
    if faster is None:
        verdict = stats.ONE_SEED if ratios else stats.NOT_MEASURED
    else:
        # Supported rests on "faster at all" (with a geometric mean of at least 2),
        # contradicted on "below 2": one of the two tests, chosen by the estimate.
        if geometric >= 2 and faster.difference > 0:
            decided = {"p": faster.p, "if_significant": stats.SUPPORTED}
        elif twice.difference < 0:
            decided = {"p": twice.p, "if_significant": stats.CONTRADICTED}
        else:
            decided = {"p": 1.0, "if_significant": stats.NOT_DECIDED}
        verdict = stats.decide(decided)
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
    found_measured = (f"passes to {100 * level:.1f}% training error, ratio plain/residual "
                      f"{geometric:.2f} (geometric mean over seeds)" if logs else None)
    return _with(finding(claim, source, verdict, evidence + ".", depth=depth, level=level,
                         ratios=ratios, seeds=seeds, geometric_mean_ratio=geometric,
                         crossings_before_first_point=early,
                         test_faster=faster.as_dict() if faster else None,
                         test_twice=twice.as_dict() if twice else None), decision=decided,
                 measured=found_measured)


def _degradation(runs: Sequence[Run], p20: list[Run], p56: list[Run]) -> list[dict]:
    train_name, train_error = training_error_measure(runs)
    v_train, t_train, n_train, d_train = compare(p56, p20, train_error, +1, train_name, "train")
    v_test, t_test, n_test, d_test = compare(p56, p20, test_error, +1, "final test error")
    decided = stats.all_of([d_train, d_test])
    return [_with(finding(_PAPER_CLAIMS[0][0], PAPER, stats.combine([v_train, v_test]),
                          f"{t_train} ({v_train} before adjustment); {t_test} ({v_test} before "
                          "adjustment); the claim needs both, so its p is the larger of the "
                          "two." + at_chance(p56, train_error),
                          training_error=n_train, test_error=n_test),
                  section="Table 1 (plain-20 90.84%, plain-56 86.71% test accuracy)",
                  decision=decided,
                  # Both halves: the claim rests on training and test error.
                  measured="; ".join(t.split("; ")[0] for t in (t_train, t_test)))]


def _deeper_resnet(runs: Sequence[Run], r20: list[Run], r56: list[Run]) -> list[dict]:
    train_name, train_error = training_error_measure(runs)
    verdict, text, numbers, decided = compare(r56, r20, test_error, -1, "final test error")
    _, t_train, n_train, _ = compare(r56, r20, train_error, -1, train_name, "train")
    return [_with(finding(_PAPER_CLAIMS[1][0], PAPER, verdict, f"{text}. Information: {t_train}.",
                          test_error=numbers, training_error=n_train),
                  section="Table 1 (ResNet-20 91.95%, ResNet-56 93.25%)",
                  end_of_schedule=True, decision=decided)]


def _growth(runs: Sequence[Run], *nets: list[Run]) -> list[dict]:
    """(c), seed-paired: (plain56 - resnet56) - (plain20 - resnet20) per seed, against 0."""
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
            f"{100 * m56[0]:+.2f} points ("
            + (f"means over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1
               else f"seed {seeds[0]}") + "); "
            "growth per seed (plain56 - resnet56) - (plain20 - resnet20), paired by seed: "
            + ", ".join(f"{100 * g:+.2f}" for g in growth) + "; "
            + (test.describe() if test else "no test with one seed") + " (one-sample "
            "t-test of the seed-paired growth against 0)") if seeds else \
        "no seed has all four networks"
    return [_with(finding(_PAPER_CLAIMS[2][0], PAPER, verdict, text + ".", seeds=seeds,
                          advantage_20=adv20, advantage_56=adv56, growth=growth,
                          test=test.as_dict() if test else None),
                  section="Table 1 (the advantages 1.11 and 6.54 points)",
                  end_of_schedule=True, decision=stats.decision(test, +1)),
            amplification_finding(adv20, adv56)]


def _faster(runs: Sequence[Run], p20: list[Run], r20: list[Run]) -> list[dict]:
    return [{**convergence_finding(p20, r20, 20, PAPER), "wording": "2x faster",
             "claim": _PAPER_CLAIMS[3][0] + " (passes to a training-error level)"}]


# The reproduction paper's four claims: the claim, the networks it needs, how it is
# evaluated, and what a finding without those networks says of it.
_PAPER_CLAIMS = (
    ("(a) plain-56 is below plain-20: higher training and test error (degradation)",
     ("plain20", "plain56"), _degradation, {"section": "Table 1"}),
    ("(b) ResNet-56 is above ResNet-20: lower test error", ("resnet20", "resnet56"),
     _deeper_resnet, {"section": "Table 1", "end_of_schedule": True}),
    ("(c) the residual advantage (plain minus residual test error) grows with depth "
     f"(the paper: {PAPER_ADVANTAGE[20]} points at 20 layers, {PAPER_ADVANTAGE[56]} at 56)",
     ("plain20", "resnet20", "plain56", "resnet56"), _growth,
     {"section": "Table 1", "end_of_schedule": True}),
    ("(d) ResNet-20 converges 2x faster than plain-20", ("plain20", "resnet20"), _faster, {}),
)


def paper_claims(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The reproduction paper's claims (see the module), each with a verdict."""
    groups = by_model(runs)
    out = []
    for claim, models, evaluate, missing in _PAPER_CLAIMS:
        nets = [groups.get(m) for m in models]
        if all(nets):
            out += evaluate(runs, *nets)
        else:
            needs = ", ".join(models[:-1]) + " and " + models[-1]
            out.append(_with(finding(claim, PAPER, stats.NOT_MEASURED, f"needs {needs} runs."),
                             **missing))
    return out + per_class_findings(runs) + stability_findings(runs)


def amplification_finding(adv20: Sequence[float], adv56: Sequence[float]) -> dict[str, Any]:
    """The "6-fold amplification" (the paper's 6.54 / 1.11 points): the ratio of the mean
    advantages, described."""
    a20, a56 = float(np.mean(adv20)), float(np.mean(adv56))
    ratio = a56 / a20 if a20 > 0 else None
    text = (f"advantage (plain minus residual test error) {100 * a20:+.2f} points at 20 layers, "
            f"{100 * a56:+.2f} at 56 ({'means over seeds' if len(adv20) > 1 else 'one seed'}); "
            + (f"ratio {ratio:.1f} (the paper: {PAPER_ADVANTAGE[56] / PAPER_ADVANTAGE[20]:.1f})"
               if ratio is not None else "no ratio: the residual net has no advantage at 20 "
               "layers here, so a factor of amplification is undefined")
            + "; a ratio of two differences over a few seeds has no useful test.")
    return _with(finding(f"The residual benefit is amplified {PAPER_AMPLIFICATION} from 20 to "
                         "56 layers", PAPER, stats.DESCRIBED, text, advantage_20=a20,
                         advantage_56=a56, ratio=ratio),
                 section="Table 1 (6.54 / 1.11 = 5.9)", end_of_schedule=True,
                 wording=f"{PAPER_AMPLIFICATION} amplification")


def class_accuracies(run: Run) -> dict[str, float] | None:
    rows = (run.evaluation or {}).get("per_class")
    # A class's accuracy is its recall (older evaluation.json files have only that).
    return ({r["class"]: float(r.get("accuracy", r.get("recall"))) for r in rows}
            if rows else None)


def per_class_findings(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """"Better across all classes": per depth, the classes where the residual net's mean
    per-class test accuracy is above the plain net's (counted, not tested)."""
    groups = by_model(runs)
    out = []
    for depth in sorted({r.spec.depth for r in runs}):
        p = [c for c in map(class_accuracies, groups.get(f"plain{depth}", [])) if c]
        r = [c for c in map(class_accuracies, groups.get(f"resnet{depth}", [])) if c]
        claim = f"At depth {depth}, the residual net is better across all classes"
        if not p or not r:
            out.append(_with(finding(claim, PAPER, stats.NOT_MEASURED, "needs evaluated "
                                     f"plain{depth} and resnet{depth} runs (per-class "
                                     "accuracy)."), end_of_schedule=True))
            continue
        names = list(p[0])
        diff = {c: float(np.mean([x[c] for x in r]) - np.mean([x[c] for x in p])) for c in names}
        better = [c for c in names if diff[c] > 0]
        over = ("one seed each" if len(r) == len(p) == 1
                else f"mean over {len(r)} and {len(p)} seeds")
        text = (f"resnet{depth} above plain{depth} on {len(better)} of {len(names)} classes "
                f"(per-class test accuracy, {over}): "
                + ", ".join(f"{c} {100 * d:+.1f}" for c, d in diff.items())
                + " points; counted, not tested (one test per class would add ten to the family).")
        out.append(_with(finding(claim, PAPER, stats.DESCRIBED, text, depth=depth,
                                 classes_better=len(better), classes=len(names), differences=diff),
                         end_of_schedule=True, wording="better across all classes"))
    return out


def stability_findings(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Training stability: the seed-to-seed spread of the final test error, residual against
    plain (described: a variance ratio over a few seeds has almost no power)."""
    out = []
    for depth, p, r in _pairs(runs):
        claim = f"At depth {depth}, the residual net trains more stably (less seed-to-seed spread)"
        sp, sr = (stats.mean_std([test_error(x) for x in g])[1] for g in (p, r))
        if sp is None or sr is None:
            out.append(_with(finding(claim, PAPER, stats.ONE_SEED, "one seed of a network: "
                                     "no spread between seeds to compare.", depth=depth)))
            continue
        text = (f"sample sd of the final test error over seeds: resnet{depth} {100 * sr:.2f} "
                f"points (n = {len(r)}) vs plain{depth} {100 * sp:.2f} (n = {len(p)}); the "
                f"residual net varies {'more' if sr > sp else 'less'} between seeds here; "
                "described, not tested.")
        out.append(_with(finding(claim, PAPER, stats.DESCRIBED, text, depth=depth,
                                 sd_residual=sr, sd_plain=sp)))
    return out


def curve_finding(shallow: Sequence[Run], deep: Sequence[Run], residual: bool) -> dict:
    """Degradation through the run (plain) or its absence (residual): Welch's t-test of the
    deep net's training error minus the shallow one's at every common curve step. Plain:
    supported when significantly above at every step, contradicted when below at any.
    Residual: decided at the last step."""
    a, b = deep[0].model, shallow[0].model
    claim = (f"Degradation through the run: {a}'s training error is above {b}'s at every "
             "curve point" if not residual else "No degradation with residual connections: "
             f"{a}'s training error ends below {b}'s")
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
    decided = None
    if last_test is None:
        verdict, counts = stats.ONE_SEED, ""
    else:
        above = sum(t.p < stats.ALPHA and t.difference > 0 for *_, t in tests)
        below = sum(t.p < stats.ALPHA and t.difference < 0 for *_, t in tests)
        counts = (f"{a} significantly above at {above} of {len(steps)} common curve points, "
                  f"significantly below at {below}; ")
        if residual:
            decided = stats.decision(last_test, -1)
            verdict = stats.decide(decided)
        else:
            # Above at every point: an intersection-union test (the largest p); below at
            # some point: Bonferroni over the points (the smallest such p times their number).
            decided = stats.all_of([stats.decision(t, +1) for *_, t in tests])
            verdict = (stats.CONTRADICTED if below else
                       stats.SUPPORTED if above == len(steps) else stats.NOT_DECIDED)
    evidence = (counts + f"over the last curve segment, up to {where}: {a} {pct_spread(last_d)}"
                f" vs {b} {pct_spread(last_s)}; "
                + (last_test.describe() if last_test else
                   "no test with one seed" + (f" ({within_run_note(deep[0], shallow[0], 'train')})"
                                              if len(deep) == len(shallow) == 1 else "")) + ".")
    if decided is not None and not residual:
        evidence += (" Its p: the largest over the points when the deeper net is above at "
                     "every one, else the smallest of the points below times their number.")
    return _with(finding(claim, HE, verdict, evidence, deep=a, shallow=b, steps=steps,
                         differences=[float(np.mean(d) - np.mean(s)) for d, s, _ in tests],
                         p_values=[t.p if t else None for *_, t in tests]),
                 section=("Figure 1 (plain-20 vs plain-56) and Figure 6, left" if not residual
                          else "Figure 6, right"),
                 end_of_schedule=residual, decision=decided)


def stats_at(run: Run, epoch: float) -> dict[str, Any] | None:
    return next((e for e in (run.layer_stats or {}).get("epochs", []) if e["epoch"] == epoch),
                None)


def _residual_vs_plain(claim: str, measure: Callable[[Run], float], residual: Sequence[Run],
                       plain: Sequence[Run], depth: int, epoch: float, evidence: str, digits: int,
                       after: str = "", sign: int = -1, source: str = HE, signed: bool = False
                       ) -> tuple[dict[str, Any], dict | None]:
    """A finding that `measure` (per seed) is lower (`sign` -1) or higher (+1) in the
    residual net than the plain one, and its decision."""
    a, b = [measure(x) for x in residual], [measure(x) for x in plain]
    test = stats.welch(a, b)
    plus = "+" if signed else ""
    return finding(claim, source, stats.verdict(test, sign),
                   f"{evidence}resnet{depth} {', '.join(f'{v:{plus}.{digits}f}' for v in a)} vs "
                   f"plain{depth} {', '.join(f'{v:{plus}.{digits}f}' for v in b)}{after}; "
                   + (test.describe(1, "", 3) if test else "no test with one seed") + ".",
                   depth=depth, epoch=epoch, residual=a, plain=b,
                   test=test.as_dict() if test else None), stats.decision(test, sign)


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
        found, decided = _residual_vs_plain(
            f"At depth {depth}, residual functions respond more weakly than plain layers",
            lambda run: float(np.mean(stats_at(run, last)["response_std"])), r, p, depth, last,
            f"after epoch {last:g}, mean std of the 3x3 layers' BN outputs on one fixed batch: ",
            digits=3, after=" (per seed)")
        out.append(_with(found, section="Figure 7 (on trained networks)", decision=decided,
                         wording="closer to zero than the non-residual functions"))
    for epoch in common:
        found, decided = _residual_vs_plain(
            f"At depth {depth}, epoch {epoch:g}: the gradient reaches the early layers "
            "relatively more strongly in the residual net (a 'gradient highway')",
            lambda run, epoch=epoch: gradient_log_ratio(run, epoch), r, p, depth, epoch,
            "signed log10 of the median kernel-gradient norm of the first third of conv layers "
            "over the last third (0 = even; positive = the early layers' gradients larger), per "
            "seed: ", digits=2, sign=+1, source=PAPER, signed=True)
        found["evidence"] += (" A positive plain value means the plain net's early-layer "
                              "gradients are larger, not vanishing.")
        found["measured"] = (f"signed log10 early/late gradient-norm ratio, resnet{depth} "
                             f"{np.mean(found['numbers']['residual']):+.2f} vs plain{depth} "
                             f"{np.mean(found['numbers']['plain']):+.2f} (means over seeds)")
        out.append(_with(found, section="\u00a74.1", decision=decided, wording="gradient highway"))
    plain_init = [gradient_log_ratio(x, common[0]) for x in p] if common else []
    if plain_init:
        out.append(_with(finding(
            f"At depth {depth}, the plain net's gradients have healthy norms with BatchNorm "
            "(not vanishing)", HE, stats.DESCRIBED,
            f"signed log10 early/late gradient-norm ratio of plain{depth} at epoch "
            f"{common[0]:g}: {', '.join(f'{v:+.2f}' for v in plain_init)} (per seed; "
            "negative would mean vanishing toward the input); described, not tested.",
            depth=depth, epoch=common[0], plain=plain_init),
            section="Section 4.1 (said of their ImageNet plain nets, trained with BN)",
            wording="exhibit healthy norms"))
    return out


def gradient_log_ratio(run: Run, epoch: float) -> float:
    """Signed log10 of the median gradient norm of the first third of conv layers over that
    of the last third: positive when the early layers' gradients are larger."""
    conv = [v for n, v in zip(run.layer_stats["gradient_layers"],
                              stats_at(run, epoch)["gradient_norm"]) if n != "logits"]
    third = max(1, len(conv) // 3)
    return math.log10(float(np.median(conv[:third]) / max(np.median(conv[-third:]), 1e-30)))


def he_claims(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """He et al.'s claims beyond the paper's four (see the module)."""
    groups, pairs = by_model(runs), _pairs(runs)
    out = []
    for depth, p, r in pairs:
        verdict, text, numbers, decided = compare(r, p, test_error, -1, "final test error")
        out.append(_with(finding(f"At depth {depth}, the residual net is more accurate than "
                                 "the plain one (lower test error)", PAPER, verdict, text + ".",
                                 depth=depth, **numbers),
                         section=f"Table 1 (plain-{depth} "
                                 f"{100 * REPRODUCTION[f'plain{depth}']:.2f}%, ResNet-{depth} "
                                 f"{100 * REPRODUCTION[f'resnet{depth}']:.2f}%)"
                         if f"plain{depth}" in REPRODUCTION else "Table 1",
                         end_of_schedule=True, decision=decided))
    for family, residual in (("plain", False), ("resnet", True)):
        nets = [m for m in groups if m.startswith(family)]
        nets.sort(key=lambda m: groups[m][0].spec.depth)
        if len(nets) >= 2 and all(x.curve_points for m in nets for x in groups[m]):
            out.append(curve_finding(groups[nets[0]], groups[nets[-1]], residual))
    for depth, p, r in pairs:
        if depth != 20:
            found = convergence_finding(p, r, depth, STUDY)
            found["claim"] += (" (claim (d), made for 20 layers, checked at this depth: "
                               "this study's extension, not a claim of either paper)")
            found["section"] = "none: not a claim of either paper"
            out.append(found)
    for depth, p, r in pairs:
        out.extend(layer_findings(p, r, depth))
    return out


def full_schedule(runs: Sequence[Run]) -> bool:
    """Whether every run completed the full schedule, each epoch a full pass: the only
    budget at which end-of-schedule claims are tested."""
    return bool(runs) and all(r.passes_per_epoch == 1 and len(r.history) >= FULL_EPOCHS
                              and r.config.get("epochs") == FULL_EPOCHS for r in runs)


def budget(runs: Sequence[Run]) -> str:
    """The budget the runs reached, as verdicts name it: "3 passes", "12-57 passes"."""
    passes = sorted({round(r.passes, 2) for r in runs})
    if not passes:
        return "0 passes"
    span = f"{passes[0]:g}" if len(passes) == 1 else f"{passes[0]:g}-{passes[-1]:g}"
    return f"{span} pass{'' if span == '1' else 'es'}"


def adjust(found: Sequence[dict[str, Any]], runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The findings with Holm-Bonferroni over every decided claim the budget can test, each
    verdict following its adjusted p and naming the budget; end-of-schedule claims from
    runs that did not complete it are "not testable at this budget", outside the family
    (a claim without the runs it needs stays "not measured": no budget is at fault)."""
    full = full_schedule(runs)
    at = budget(runs)
    out = [dict(f) for f in found]
    family = []
    for f in out:
        for key, default in (("section", NOT_RECORDED), ("end_of_schedule", False),
                             ("decision", None), ("wording", None)):
            f.setdefault(key, default)
        f.update(verdict_unadjusted=f["verdict"],
                 p_raw=f["decision"]["p"] if f["decision"] else None, p_adjusted=None, budget=at)
        if f["end_of_schedule"] and not full and f["verdict"] != stats.NOT_MEASURED:
            f["verdict"] = stats.NOT_TESTABLE
        elif f["decision"] is not None and f["verdict"] in stats.TESTED:
            family.append(f)
    for f, p in zip(family, stats.holm([f["decision"]["p"] for f in family])):
        f["p_adjusted"] = p
        f["family_size"] = len(family)
        f["verdict"] = f"{stats.decide(f['decision'], p)} at {at}"
    return out


def derive(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Every finding, adjusted for multiplicity and scoped to the budget."""
    return adjust(paper_claims(runs) + he_claims(runs), runs)
