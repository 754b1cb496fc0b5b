"""The claims of He et al. (2016) measured on Table 1's rows, each with a verdict.

A finding is a dict: "claim", "verdict" ("supported", "inconclusive" (the
expected sign within two standard errors), "not supported" or "not measured"),
"evidence" (a sentence with the numbers) and "numbers".
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from keras_resnet_cifar import arch  # arch, not models: no TensorFlow in the report
from keras_resnet_cifar.report.runs import CHANCE_ACCURACY, level_key
from keras_resnet_cifar.report.tables import stat

def _finding(claim: str, verdict: str, evidence: str, **numbers) -> dict[str, Any]:
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "numbers": numbers}


def difference_se(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[float | None, str]:
    """The standard error of a's mean ``key`` minus b's, and how it was estimated.

    Over seeds, sqrt(s_a^2/n_a + s_b^2/n_b), when both rows have n > 1;
    otherwise the binomial standard error of two proportions measured on the
    rows' image counts (the test set for test accuracy, the last epoch's
    training images for training error), which is all one run can say.
    None when neither is available.
    """
    if a[f"{key}_std"] is not None and b[f"{key}_std"] is not None:
        se = math.sqrt(a[f"{key}_std"] ** 2 / a["n"] + b[f"{key}_std"] ** 2 / b["n"])
        return se, f"standard error over seeds {100 * se:.2f} points"
    count = "final_test_images" if "test" in key else "train_images_per_epoch"
    na, nb = a.get(count) or 0, b.get(count) or 0
    if not na or not nb:
        return None, "no noise estimate"
    ma, mb = a[f"{key}_mean"], b[f"{key}_mean"]
    se = math.sqrt(ma * (1 - ma) / na + mb * (1 - mb) / nb)
    return se, (f"one run each: binomial standard error {100 * se:.2f} points on "
                f"{na:,} and {nb:,} images")


def verdict(diff: float, se: float | None) -> str:
    """"supported" beyond two standard errors, "inconclusive" with the right sign
    only, "not supported" with the wrong sign (``diff`` signed as the claim)."""
    if diff <= 0:
        return "not supported"
    return "supported" if se is None or diff > 2 * se else "inconclusive"


def compare(a: dict[str, Any], b: dict[str, Any], key: str,
            expected_sign: int) -> tuple[str, str]:
    """Verdict on "a's mean ``key`` minus b's has ``expected_sign``", and a note."""
    diff = a[f"{key}_mean"] - b[f"{key}_mean"]
    se, how = difference_se(a, b, key)
    return verdict(expected_sign * diff, se), f"difference {100 * diff:+.2f} points, {how}"


CHANCE_ERROR = 1 - CHANCE_ACCURACY


def at_chance(row: dict[str, Any]) -> str:
    """A warning when a row's training error is within two standard errors of chance."""
    n = row.get("train_images_per_epoch")
    error = row["final_train_error_mean"]
    if not n or error is None:
        return ""
    if error < CHANCE_ERROR - 2 * math.sqrt(CHANCE_ERROR * (1 - CHANCE_ERROR) / n):
        return ""
    return (f" {row['model']}'s training error is at chance level ({100 * CHANCE_ERROR:.0f}%): "
            "it had not started learning, an extreme form of the degradation the claim "
            "describes.")


def not_comparable(recipes: int) -> dict[str, Any]:
    """The one finding of a report whose runs were trained with different recipes."""
    return _finding("He et al.'s claims (degradation, residual vs plain)", "not measured",
                    f"the runs were trained with {recipes} different recipes (Table 1's "
                    "recipe column; Setup lists them), and networks are compared only "
                    "within one recipe: report each recipe's runs separately.",
                    recipes=recipes)


def _by_model(rows):
    return {r["model"]: r for r in rows}


def derive(rows: Sequence[dict[str, Any]],
           layer_stats: dict[str, dict[str, Any]] | None = None,
           levels: Sequence[float] = (), levels_note: str | None = None
           ) -> list[dict[str, Any]]:
    """He et al.'s claims, each measured on Table 1's rows (and the layer statistics).

    Args:
        rows: :func:`keras_resnet_cifar.report.tables.table1` rows.
        layer_stats: {model: layer_stats.json} for one seed, when recorded.
        levels: the accuracy levels of the "epochs to X%" columns.
        levels_note: why there are no levels, when there are none (e.g. from
            :func:`keras_resnet_cifar.report.runs.choose_levels`).

    Returns:
        Dicts with "claim", "verdict" ("supported", "inconclusive" (the
        expected sign within two standard errors), "not supported" or "not
        measured"), "evidence" (a sentence with the numbers) and "numbers".
    """
    m = _by_model(rows)
    plain = sorted((r for r in rows if r["architecture"] == "plain"), key=lambda r: r["layers"])
    res = sorted((r for r in rows if r["architecture"] == "residual"), key=lambda r: r["layers"])
    out = []

    # Degradation: the deeper plain net has the higher *training* error.
    if len(plain) >= 2:
        lo, hi = plain[0], plain[-1]
        outcome, note = compare(hi, lo, "final_train_error", +1)
        out.append(_finding(
            f"Degradation: {hi['model']} has a higher training error over the last epoch "
            f"than {lo['model']}",
            outcome,
            f"training error over the last epoch {hi['model']} {stat(hi, 'final_train_error')}% "
            f"vs {lo['model']} {stat(lo, 'final_train_error')}% "
            f"(n = {hi['n']}, {lo['n']}; {note}); final test accuracy "
            f"{stat(hi, 'final_test_accuracy', False)}% vs "
            f"{stat(lo, 'final_test_accuracy', False)}%." + at_chance(hi),
            deep=hi["model"], shallow=lo["model"],
            deep_train_error=hi["final_train_error_mean"],
            shallow_train_error=lo["final_train_error_mean"],
            deep_test_accuracy=hi["final_test_accuracy_mean"],
            shallow_test_accuracy=lo["final_test_accuracy_mean"]))
    else:
        out.append(_finding("Degradation: the deeper plain net trains worse", "not measured",
                            "needs plain nets of two depths."))

    # Residual vs plain at each depth.
    gaps = {}
    for p in plain:
        r = m.get(f"resnet{p['layers']}")
        if r is None:
            continue
        outcome, note = compare(r, p, "final_test_accuracy", +1)
        gap = r["final_test_accuracy_mean"] - p["final_test_accuracy_mean"]
        train_gap = p["final_train_error_mean"] - r["final_train_error_mean"]
        gaps[p["layers"]] = (gap, train_gap, r, p)
        out.append(_finding(
            f"At depth {p['layers']}, the residual net is more accurate than the plain one",
            outcome,
            f"final test accuracy {r['model']} {stat(r, 'final_test_accuracy')}% "
            f"vs {p['model']} {stat(p, 'final_test_accuracy')}% "
            f"({note}); training error over the last epoch "
            f"{stat(r, 'final_train_error', False)}% vs {stat(p, 'final_train_error', False)}%.",
            depth=p["layers"], residual_test_accuracy=r["final_test_accuracy_mean"],
            plain_test_accuracy=p["final_test_accuracy_mean"], test_accuracy_gap=gap,
            training_error_gap=train_gap))

    # The gap grows with depth.
    if len(gaps) >= 2:
        shallow, deep = min(gaps), max(gaps)
        g_lo, g_hi = gaps[shallow][0], gaps[deep][0]
        t_lo, t_hi = gaps[shallow][1], gaps[deep][1]
        se_lo, _ = difference_se(gaps[shallow][2], gaps[shallow][3], "final_test_accuracy")
        se_hi, how = difference_se(gaps[deep][2], gaps[deep][3], "final_test_accuracy")
        se = math.hypot(se_lo, se_hi) if se_lo is not None and se_hi is not None else None
        out.append(_finding(
            "The residual-minus-plain gap grows with depth",
            verdict(g_hi - g_lo, se),
            f"test accuracy gap (residual - plain) {100 * g_lo:+.2f} points at depth {shallow}, "
            f"{100 * g_hi:+.2f} at depth {deep}, growth {100 * (g_hi - g_lo):+.2f} points "
            + (f"(standard error {100 * se:.2f}); " if se is not None else "; ")
            + f"training error gap (plain - residual) {100 * t_lo:+.2f} and "
            f"{100 * t_hi:+.2f} points.",
            shallow=shallow, deep=deep, test_gap_shallow=g_lo, test_gap_deep=g_hi,
            train_gap_shallow=t_lo, train_gap_deep=t_hi))
    else:
        out.append(_finding("The residual-minus-plain gap grows with depth", "not measured",
                            "needs plain/residual pairs at two depths."))

    # Deeper residual nets are better (no degradation).
    if len(res) >= 2:
        lo, hi = res[0], res[-1]
        outcome, note = compare(hi, lo, "final_test_accuracy", +1)
        out.append(_finding(
            "No degradation with residual connections: "
            f"{hi['model']} is more accurate than {lo['model']}",
            outcome,
            f"final test accuracy {stat(hi, 'final_test_accuracy')}% "
            f"vs {stat(lo, 'final_test_accuracy')}% ({note}); "
            f"training error over the last epoch {stat(hi, 'final_train_error', False)}% vs "
            f"{stat(lo, 'final_train_error', False)}%.",
            deep_test_accuracy=hi["final_test_accuracy_mean"],
            shallow_test_accuracy=lo["final_test_accuracy_mean"]))

    # "2x faster convergence": epochs to each accuracy level.
    for depth, (_, _, r, p) in sorted(gaps.items()):
        parts, ratios = [], []
        for level in levels:
            key = level_key(level)
            er, ep = r[f"{key}_mean"], p[f"{key}_mean"]
            if er is None:
                parts.append(f"{100 * level:g}%: neither reached" if ep is None
                             else f"{100 * level:g}%: only the plain net reached it ({ep:g})")
                continue
            if ep is None:
                bound = (p["epochs"] + 1) / er
                ratios.append(bound)
                parts.append(f"{100 * level:g}%: residual {er:g} epochs, plain not within "
                             f"{p['epochs']} (ratio > {bound:.2f})")
            else:
                ratios.append(ep / er)
                parts.append(f"{100 * level:g}%: residual {er:g}, plain {ep:g} epochs "
                             f"(ratio {ep / er:.2f})")
        outcome = ("not measured" if not ratios else
                   "supported" if float(np.median(ratios)) >= 2 else "not supported")
        if not levels:
            parts.append("no accuracy levels to time: "
                         + (levels_note or "none were given"))
        n_eval = p["eval_images_per_epoch"]
        noise = (f" Each per-epoch accuracy is measured on {n_eval:,} images (binomial "
                 f"standard error {100 * math.sqrt(0.25 / n_eval):.1f} points at 50%), which "
                 "limits how precisely these epoch counts are known." if n_eval else "")
        out.append(_finding(
            f"At depth {depth}, the residual net converges at least 2x faster "
            "(epochs to reach each test accuracy level)",
            outcome, "; ".join(parts) + (f"; median ratio {np.median(ratios):.2f}."
                                          if ratios else ".") + noise,
            depth=depth, ratios=ratios))

    out.extend(layer_findings(layer_stats or {}))
    return out


def train_error_se(point: dict[str, Any]) -> float:
    """A curve point's training-error standard error: over the segment's batches when
    recorded, else binomial on the segment's images."""
    if point.get("train_error_se") is not None:
        return float(point["train_error_se"])
    p, n = point["train_error"], max(point.get("train_images") or 1, 1)
    return math.sqrt(p * (1 - p) / n)


def binomial_se(error: float, images: int) -> float:
    """sqrt(p (1 - p) / n): the standard error of an error rate measured on n images."""
    return math.sqrt(error * (1 - error) / images)


def _aligned(deep: Sequence[dict[str, Any]], shallow: Sequence[dict[str, Any]]):
    by_step = {p["step"]: p for p in shallow}
    return [(d, by_step[d["step"]]) for d in deep if d["step"] in by_step]


def curve_findings(curves: dict[str, Sequence[dict[str, Any]]],
                   passes_per_epoch: float = 1.0) -> list[dict[str, Any]]:
    """The two questions a reader of He et al. asks of the curves, with standard errors.

    * Degradation: is the deepest plain net's training error above the shallowest's
      *through the run*? "supported" when it is above by more than two standard
      errors at every common curve point; "not supported" when it is below by more
      than two at some point; "inconclusive" otherwise.
    * Residual nets: is the deepest residual net's training error at or below the
      shallowest's through the run? "not supported" when it is above by more than
      two standard errors at the last point; "supported" when it is never above by
      more than two and at or below at the last point; "inconclusive" otherwise.

    The standard error of a difference is sqrt(se_a^2 + se_b^2), each over its
    segment's batches (:func:`train_error_se`).

    Args:
        curves: {model: its curve points (curve.json), in step order}.
        passes_per_epoch: to say where a point is in passes over the training set.
    """
    out = []
    for family, residual in (("plain", False), ("resnet", True)):
        nets = sorted((m for m in curves if arch.parse_name(m).residual == residual
                       and curves[m]), key=lambda m: arch.parse_name(m).depth)
        claim = (f"Degradation through the run: the deeper plain net's training error is "
                 "above the shallower one's at every curve point" if not residual else
                 "No degradation with residual connections: the deeper residual net's "
                 "training error is at or below the shallower one's through the run")
        if len(nets) < 2:
            out.append(_finding(claim, "not measured",
                                f"needs curve points of two {family} depths."))
            continue
        shallow, deep = nets[0], nets[-1]
        pairs = _aligned(curves[deep], curves[shallow])
        if not pairs:
            out.append(_finding(claim, "not measured",
                                f"{deep} and {shallow} have no curve point at the same step."))
            continue
        diffs = [d["train_error"] - s["train_error"] for d, s in pairs]
        ses = [math.hypot(train_error_se(d), train_error_se(s)) for d, s in pairs]
        above = sum(x > 0 for x in diffs)
        above_2se = sum(x > 2 * se for x, se in zip(diffs, ses))
        below_2se = sum(x < -2 * se for x, se in zip(diffs, ses))
        n = len(pairs)
        last_d, last_s = pairs[-1]
        if not residual:
            outcome = ("supported" if above_2se == n else
                       "not supported" if below_2se else "inconclusive")
        else:
            outcome = ("not supported" if diffs[-1] > 2 * ses[-1] else
                       "supported" if not above_2se and diffs[-1] <= 0 else "inconclusive")
        where = f"{last_d['epoch'] * passes_per_epoch:g} passes ({last_d['step']:,} iterations)"
        first_2se = next((d["epoch"] * passes_per_epoch for (d, _), x, se
                          in zip(pairs, diffs, ses) if x > 2 * se), None)
        evidence = (
            f"{deep}'s training error is above {shallow}'s at {above} of {n} curve points, "
            f"by more than two standard errors at {above_2se}, below by more than two at "
            f"{below_2se}"
            + (f" (first beyond two standard errors at {first_2se:g} passes)"
               if first_2se is not None else "")
            + f"; over the last curve segment, up to {where}: "
            f"{100 * last_d['train_error']:.2f}% "
            f"± {100 * train_error_se(last_d):.2f} vs {100 * last_s['train_error']:.2f}% "
            f"± {100 * train_error_se(last_s):.2f} (difference {100 * diffs[-1]:+.2f} "
            f"± {100 * ses[-1]:.2f} points; training error over each segment's augmented "
            "batches, standard error over those batches).")
        out.append(_finding(
            claim, outcome, evidence, deep=deep, shallow=shallow, points=n,
            above=above, above_2se=above_2se, below_2se=below_2se,
            steps=[d["step"] for d, _ in pairs], differences=diffs, standard_errors=ses))
    return out


def _early_late_ratio(names: Sequence[str], norms: Sequence[float]) -> float:
    """Median gradient norm of the first third of conv layers over that of the last third."""
    conv = [v for n, v in zip(names, norms) if n != "logits"]
    third = max(1, len(conv) // 3)
    return float(np.median(conv[:third]) / max(np.median(conv[-third:]), 1e-30))


def layer_findings(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """He et al.'s Figure 7 and the "gradient highway", per depth, from layer_stats.json.

    Args:
        stats: {model name: its layer_stats.json}.
    """
    out = []
    depths = sorted({arch.parse_name(k).depth for k in stats})
    for depth in depths:
        p, r = stats.get(f"plain{depth}"), stats.get(f"resnet{depth}")
        if not p or not r:
            continue
        common = sorted({e["epoch"] for e in p["epochs"]} & {e["epoch"] for e in r["epochs"]})
        trained = [e for e in common if e > 0]
        if trained:
            last = trained[-1]
            ps = next(e for e in p["epochs"] if e["epoch"] == last)["response_std"]
            rs = next(e for e in r["epochs"] if e["epoch"] == last)["response_std"]
            pm, rm = float(np.mean(ps)), float(np.mean(rs))
            out.append(_finding(
                f"At depth {depth}, residual functions respond more weakly than plain layers "
                "(He et al., Figure 7)",
                "supported" if rm < pm else "not supported",
                f"after epoch {last}: mean std of the 3x3 layers' BN outputs "
                f"resnet{depth} {rm:.3f} vs plain{depth} {pm:.3f} (median {np.median(rs):.3f} "
                f"vs {np.median(ps):.3f}; {len(rs)} layers each; one fixed batch).",
                depth=depth, epoch=last, residual_mean_std=rm, plain_mean_std=pm))
        for epoch in common:
            pe = next(e for e in p["epochs"] if e["epoch"] == epoch)
            re_ = next(e for e in r["epochs"] if e["epoch"] == epoch)
            pr = _early_late_ratio(p["gradient_layers"], pe["gradient_norm"])
            rr = _early_late_ratio(r["gradient_layers"], re_["gradient_norm"])
            closer = abs(math.log10(rr)) < abs(math.log10(pr))
            out.append(_finding(
                f"At depth {depth}, epoch {epoch}: gradients reach the early layers more "
                "evenly in the residual net (the 'gradient highway')",
                "supported" if closer else "not supported",
                f"median kernel-gradient norm of the first third of conv layers over the "
                f"last third: resnet{depth} {rr:.3g}, plain{depth} {pr:.3g} (1 = even; "
                f"the residual ratio is {'closer to' if closer else 'not closer to'} 1).",
                depth=depth, epoch=epoch, residual_ratio=rr, plain_ratio=pr))
    return out
