"""findings: every claim with its verdict over seeds, Holm over the family, the budget."""

import dataclasses

import pytest

from keras_resnet_cifar.analysis.results import evidence, findings, runs, stats
from tests.analysis.results.fake_runs import STEPS, curve_run, decay, epoch_run, make_study


def by_claim(found, prefix):
    return next(f for f in found if f["claim"].startswith(prefix))


def test_findings_verdicts_and_numbers(epoch_study):
    loaded = [runs.load_run(r) for r in epoch_study]
    found = findings.derive(loaded)
    by_claim = {f["claim"].split(":")[0].split(" (")[0]: f for f in found}

    # plain56 and resnet56 have one seed each: nothing about them is decided.
    degradation = next(f for f in found if f["claim"].startswith("(a)"))
    assert degradation["verdict"] == "not decided (one seed)"
    assert "training error over the last epoch: plain56 40.00% (one seed) vs plain20 " \
        "20.00% ± 0.00 (std over 2 seeds)" in degradation["evidence"]
    assert "chance" not in degradation["evidence"]

    at20 = by_claim["At depth 20, the residual net is more accurate than the plain one"]
    # Test error 20.5 vs 28.0 (std 0.7 and 2.8 points over 2 seeds): Welch p = 0.16, shown;
    # but a claim about final accuracies is not testable after 3 of 200 epochs, and stays
    # outside the tested family.
    assert at20["verdict"] == "not testable at this budget"
    assert at20["verdict_unadjusted"] == "not decided" and at20["p_adjusted"] is None
    assert at20["p_raw"] == pytest.approx(at20["numbers"]["test"]["p"])
    assert at20["source"] == "Shinde (2025)" and at20["section"].startswith("Table 1")
    assert at20["numbers"]["test"]["difference"] == pytest.approx(-0.075)
    assert "difference -7.50 ±" in at20["evidence"] and "Welch t = " in at20["evidence"]
    at56 = by_claim["At depth 56, the residual net is more accurate than the plain one"]
    assert at56["verdict"] == "not testable at this budget"
    assert at56["verdict_unadjusted"] == "not decided (one seed)"

    growth = next(f for f in found if f["claim"].startswith("(c)"))
    assert growth["numbers"]["seeds"] == [0] and growth["verdict"] == "not testable at this budget"
    assert "1.11 points at 20 layers, 6.54 at 56" in growth["claim"]

    responses = by_claim["At depth 56, residual functions respond more weakly than plain "
                         "layers"]
    assert responses["verdict"] == "not decided (one seed)"
    assert "resnet56 0.400 vs plain56 1.000" in responses["evidence"]
    highway = [f for f in found if "gradient highway" in f["claim"]]
    assert [f["numbers"]["epoch"] for f in highway] == [0, 3]
    assert highway[0]["numbers"]["plain"] == [pytest.approx(1.0)]  # |log10 10|


def test_single_runs_are_not_decided_with_the_binomial_error_as_information(tmp_path):
    dirs = [epoch_run(tmp_path, "plain20", 0, [0.5, 0.6], [0.5, 0.60]),
            epoch_run(tmp_path, "resnet20", 0, [0.5, 0.6], [0.5, 0.62])]
    at20 = findings.he_claims([runs.load_run(r) for r in dirs])[0]
    # -2 points on 512 test images each: sqrt(.62 * .38 / 512 + .6 * .4 / 512) = 3.05 points.
    assert at20["verdict"] == "not decided (one seed)"
    assert "difference -2.00 points; no test with one seed (within-run binomial SE of the " \
        "difference 3.05 points on 512 and 512 test images (information only))" in at20["evidence"]


def test_degradation_contradicted_when_the_deep_plain_net_trains_better(tmp_path):
    dirs = [epoch_run(tmp_path, "plain20", seed, [0.5, 0.6 + seed / 100], [0.5, 0.6])
            for seed in (0, 1, 2)]
    dirs += [epoch_run(tmp_path, "plain56", seed, [0.5, 0.7 + seed / 100], [0.5, 0.65 - seed / 100])
             for seed in (0, 1, 2)]
    loaded = [runs.load_run(d) for d in dirs]
    found = findings.paper_claims(loaded)
    assert found[0]["verdict"] == "contradicted"
    assert "plain56 29.00% ± 1.00 (std over 3 seeds) vs plain20 39.00% ± 1.00" in found[0]["evidence"]
    stuck = [dataclasses.replace(r, history=[dict(r.history[-1], accuracy=0.11)])
             for r in loaded[3:]]  # 1,280 images: the chance band is 88.3-90%
    assert "plain56's training error is at chance level" in evidence.at_chance(
        stuck, lambda r: 1 - r.history[-1]["accuracy"])
    assert {f["verdict"] for f in found[1:]} == {"not measured"}


def test_adjust_holm_over_the_family_budget_in_the_verdict_scope(epoch_study):
    loaded = [runs.load_run(r) for r in epoch_study]

    def tested(p, end=False):
        return {"claim": f"p {p}", "source": "x", "verdict": "supported" if p < 0.05
                else "not decided", "evidence": "", "numbers": {}, "end_of_schedule": end,
                "decision": {"p": p, "if_significant": "supported"}}

    found = findings.adjust([tested(0.001), tested(0.03), tested(0.04),
                             tested(0.01, end=True),
                             {"claim": "one seed", "source": "x", "verdict":
                              "not decided (one seed)", "evidence": "", "numbers": {}}], loaded)
    # Family of 3 (the end-of-schedule claim and the one-seed one are outside it):
    # 0.001 * 3 = 0.003 survives; 0.03 * 2 = 0.06 and 0.04 * 1 -> 0.06 fall.
    assert [f["verdict"] for f in found] == [
        "supported at 0.08 passes", "not decided at 0.08 passes", "not decided at 0.08 passes",
        "not testable at this budget", "not decided (one seed)"]
    assert [f["p_adjusted"] for f in found[:3]] == pytest.approx([0.003, 0.06, 0.06])
    assert found[1]["verdict_unadjusted"] == "supported" and found[3]["p_raw"] == 0.01
    assert found[0]["family_size"] == 3 and found[3]["p_adjusted"] is None
    # 3 epochs of 10 steps of 128 images: 0.08 passes over the 50,000
    assert findings.budget(loaded) == "0.08 passes" and not findings.full_schedule(loaded)


def test_one_seed_gives_not_decided_however_large_the_difference(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path, seeds=(0,))]
    found = findings.derive(loaded)
    # Nothing is decided: claims a short run can test rest on one seed; the others are
    # about the end of the full schedule; counts and spreads are described, not tested;
    # the per-class claims need evaluated runs (these are not), whatever the budget.
    assert {f["verdict"] for f in found} <= {"not decided (one seed)",
                                             "not testable at this budget",
                                             "no verdict (described, not tested)",
                                             "not measured"}
    assert {f["claim"] for f in found if f["verdict"] == "not measured"} == {
        f"At depth {d}, the residual net is better across all classes" for d in (20, 56)}
    a = by_claim(found, "(a)")
    assert a["verdict"] == "not decided (one seed)" and a["p_adjusted"] is None
    # The within-run binomial SE is shown, as information only.
    assert "within-run binomial SE" in a["evidence"] and "information only" in a["evidence"]


def test_three_seeds_decide_the_papers_claims(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path)]
    found = findings.paper_claims(loaded)
    a, b, c, d = (by_claim(found, f"({x})") for x in "abcd")
    assert a["verdict"] == "supported"  # plain56 ~80% vs plain20 ~43%, std 1 point
    assert a["numbers"]["test_error"]["test"]["n"] == [3, 3] or \
        tuple(a["numbers"]["test_error"]["test"]["n"]) == (3, 3)
    assert "Welch t = " in a["evidence"] and "p = " in a["evidence"]
    # resnet56 (44%) is *worse* than resnet20 (39%): the claim's opposite is significant.
    assert b["verdict"] == "contradicted"
    # Advantage 2 points at 20 layers, 35 at 56: growth significant over 3 paired seeds.
    assert c["verdict"] == "supported" and len(c["numbers"]["growth"]) == 3
    assert "paired by seed" in c["evidence"] and "one-sample" in c["evidence"]
    assert d["numbers"]["ratios"] and d["verdict"] in stats.VERDICTS


def test_an_unclear_difference_is_not_decided(tmp_path):
    # plain20 and resnet20 scatter by 5 points around values 2 points apart.
    loaded = [runs.load_run(d) for d in make_study(tmp_path, spread=0.05)]
    at20 = by_claim(findings.he_claims(loaded), "At depth 20, the residual net")
    assert at20["verdict"] == "not decided"


def test_convergence_ratio_per_seed(tmp_path):
    """ResNet-20 reaches the level in a third of plain-20's passes: supported."""
    dirs = []
    for seed in (0, 1, 2):
        slow = [0.85, 0.82, 0.79, 0.76, 0.72, 0.68, 0.64, 0.6, 0.55, 0.5, 0.45, 0.4 + seed / 100]
        fast = [0.75, 0.6, 0.5, 0.45, 0.43, 0.42, 0.41, 0.41, 0.4, 0.4, 0.4, 0.39 + seed / 200]
        fast[0] += seed / 100  # seeds differ a little
        dirs += [curve_run(tmp_path, "plain20", seed, slow, slow, 0.4),
                 curve_run(tmp_path, "resnet20", seed, fast, fast, 0.39)]
    loaded = [runs.load_run(d) for d in dirs]
    level = findings.convergence_level([loaded[0::2], loaded[1::2]])
    assert level == pytest.approx(0.9 - (0.9 - 0.42) / 2)
    d = by_claim(findings.paper_claims(loaded), "(d)")
    assert all(r > 2 for r in d["numbers"]["ratios"])
    assert d["verdict"] == "supported"
    assert "geometric mean" in d["evidence"]
    # Interpolated crossing: half-way from (97/391 passes, 85%) to (195/391, 82%).
    run = loaded[0]
    assert runs.passes_to_train_error(run, 0.835) == pytest.approx((97 + 195) / 2 / STEPS,
                                                                   abs=1e-5)
    assert runs.passes_to_train_error(run, 0.01) is None


def test_curve_finding_point_by_point_over_seeds(tmp_path):
    dirs = []
    for seed in (0, 1, 2):
        jitter = seed / 200
        dirs.append(curve_run(tmp_path, "plain20", seed, decay(0.8 + jitter, 0.4 + jitter),
                             decay(0.8, 0.4), 0.4))
        dirs.append(curve_run(tmp_path, "plain56", seed, decay(0.88 + jitter, 0.7 + jitter),
                             decay(0.8, 0.7), 0.7))
    loaded = [runs.load_run(d) for d in dirs]
    plain = findings.curve_finding(loaded[0::2], loaded[1::2], residual=False)
    assert plain["verdict"] == "supported" and "above at 12 of 12" in plain["evidence"]
    # The same nets named the other way round: the deeper one trains better, significantly.
    swapped = findings.curve_finding(loaded[1::2], loaded[0::2], residual=False)
    assert swapped["verdict"] == "contradicted"
    residual = findings.curve_finding(loaded[1::2], loaded[0::2], residual=True)
    assert residual["verdict"] == "supported"  # "deep" ends significantly below "shallow"


def test_convergence_not_measured_says_what_the_runs_lack(tmp_path):
    # Study runs with curve points, plain20 never leaving chance: the level is not reached.
    flat = [0.9] * 12
    stuck = [runs.load_run(curve_run(tmp_path / "a", "plain20", 0, flat, flat, 0.9)),
             runs.load_run(curve_run(tmp_path / "a", "resnet20", 0, decay(0.8, 0.3),
                                     decay(0.8, 0.3), 0.3))]
    found = findings.convergence_finding(stuck[:1], stuck[1:], 20, findings.PAPER)
    assert found["verdict"] == stats.NOT_MEASURED
    assert found["evidence"] == "needs runs that left chance."
    # Runs of `train` (per-epoch history, no curve points): the reason is the missing curve.
    trained = [runs.load_run(epoch_run(tmp_path / "b", m, 0, [0.5, 0.8], [0.5, 0.7]))
               for m in ("plain20", "resnet20")]
    found = findings.convergence_finding(trained[:1], trained[1:], 20, findings.PAPER)
    assert found["verdict"] == stats.NOT_MEASURED
    assert found["evidence"].startswith("needs curve points in every run (several a pass")
