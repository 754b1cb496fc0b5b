"""reference: the study beside the reference PyTorch trainer's runs."""

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_resnet_cifar.analysis.results import build, reference, runs
from tests.analysis.results.fake_runs import curve_run, decay, make_reference, make_study


def _seed_lines(ax):
    return [line for line in ax.lines if line.get_gid() == "seed"]


def test_reference_section_compares_means_within_two_combined_standard_errors(tmp_path):
    study = make_study(tmp_path / "runs")
    refs = make_reference(tmp_path / "reference")
    built = build.report(study, reference_dirs=refs)
    text = built.texts["report.md"]
    assert "## Reference trainer" in text
    assert "![reference_curves](figures/reference_curves.png)" in text
    result = json.loads(built.texts["reference.json"])
    rows = {r["key"]: r for r in result["rows"]}
    test = rows["final_test_error"]
    ours = [runs.load_run(d).final_test_error for d in study if "resnet20" in d.name]
    theirs = [0.39, 0.395, 0.40]
    assert test["project"][0] == pytest.approx(np.mean(ours), abs=1e-4)
    assert test["reference"][0] == pytest.approx(np.mean(theirs))
    se = math.hypot(np.std(ours, ddof=1) / math.sqrt(3), np.std(theirs, ddof=1) / math.sqrt(3))
    assert test["combined_se"] == pytest.approx(se, rel=1e-3)
    assert test["within_2se"] == (abs(test["difference"]) <= 2 * se)
    assert test["test"]["p"] == pytest.approx(
        scipy_stats.ttest_ind(ours, theirs, equal_var=False).pvalue, rel=1e-3)
    assert "last_segment_train_error" in rows
    # The BatchNorm lag columns of the reference history, per pass.
    assert "| 3 | " in text and "lag of the log variance" in text
    # The reference runs' cost is listed with the study's.
    assert "| pytorch-reference | resnet20 | 2 |" in text
    ax = built.figures["reference_curves"].axes[0]
    assert len(_seed_lines(ax)) == 12  # 2 trainers x (training, test) x 3 seeds
    assert any("mean ± se, n=3" in line.get_label() for line in ax.lines)


def test_a_reference_far_off_is_not_within_two_standard_errors(tmp_path):
    study = make_study(tmp_path / "runs")
    refs = make_reference(tmp_path / "reference", final=0.30)
    result = reference.compare([runs.load_run(d) for d in study],
                               [runs.load_run(d) for d in refs])
    test = next(r for r in result["rows"] if r["key"] == "final_test_error")
    assert test["within_2se"] is False and test["difference"] > 0.05
    lines = "\n".join(reference.markdown(result, [], None))
    assert "**no**" in lines


def test_a_reference_of_another_recipe_is_not_compared(tmp_path):
    study = make_study(tmp_path / "runs", seeds=(0,))
    refs = make_reference(tmp_path / "reference", seeds=(0,), epochs=1, lr_boundaries=(80,))
    text = build.report(study, reference_dirs=refs).texts["report.md"]
    assert "Not compared: the reference run" in text and "epochs 3 vs 1" in text


def test_one_reference_seed_is_not_decided(tmp_path):
    study = make_study(tmp_path / "runs", seeds=(0,))
    refs = make_reference(tmp_path / "reference", seeds=(0,))
    text = build.report(study, reference_dirs=refs).texts["report.md"]
    assert "not decided (one seed)" in text.split("## Reference trainer")[1]


def _variant(root, finals, **recipe):
    """resnet20 runs of the study's recipe but `recipe`, one per final test error (seeds 0..)."""
    return [curve_run(root, "resnet20", s, decay(0.8, 0.4), decay(0.78, f), f, **recipe)
            for s, f in enumerate(finals)]


def test_a_variant_is_compared_unpaired_and_paired_by_seed_with_its_interval(tmp_path):
    study = make_study(tmp_path / "runs", spread=0.05)  # seeds far apart, as at 3 passes
    ours = {runs.load_run(d).seed: runs.load_run(d).final_test_error
            for d in study if "resnet20" in d.name}
    finals = [ours[s] + d for s, d in enumerate((0.010, 0.020, 0.015))]  # a loss of 1-2 points
    built = build.report(study, variant_dirs=_variant(tmp_path / "bf16", finals,
                                                      mixed_precision="mixed_bfloat16"))
    result = json.loads(built.texts["variant.json"])
    assert result["varies"] == {"mixed_precision": ["float32", "mixed_bfloat16"]}
    test = next(r for r in result["rows"] if r["key"] == "final_test_error")
    diffs = [0.010, 0.020, 0.015]
    assert test["difference"] == pytest.approx(np.mean(finals) - np.mean(list(ours.values())))
    assert test["test"]["difference"] == pytest.approx(test["difference"])  # variant - study
    assert test["paired"]["difference"] == pytest.approx(np.mean(diffs), abs=1e-4)
    assert test["paired"]["p"] == pytest.approx(scipy_stats.ttest_1samp(diffs, 0).pvalue, rel=1e-2)
    ci = scipy_stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=scipy_stats.sem(diffs))
    assert test["paired_interval"] == pytest.approx(ci, abs=1e-4)
    assert test["paired_interval"][0] > 0  # the loss is shown: paired, seed noise cancels
    assert test["test"]["p"] > 0.05  # ...which the unpaired test cannot see through it
    text = built.texts["report.md"]
    assert "## Variant: mixed_precision mixed_bfloat16 beside float32" in text
    assert "| resnet20 | final test error, whole test set |" in text and "| +1.50 | " in text


def test_a_variant_that_differs_in_two_fields_or_none_is_not_compared(tmp_path):
    study = [runs.load_run(d) for d in make_study(tmp_path / "runs", seeds=(0,))]
    two = _variant(tmp_path / "two", [0.4], mixed_precision="mixed_bfloat16", epochs=4)
    same = _variant(tmp_path / "same", [0.4])
    for dirs, count in ((two, 2), (same, 0)):
        result = reference.compare(study, [runs.load_run(d) for d in dirs], variant=True)
        assert not result["rows"] and f"differs in {count} (" in result["recipe_note"]
        assert result["recipe_note"] in "\n".join(reference.variant_markdown(result))
    mixed = _variant(tmp_path / "mixed", [0.4, 0.4], mixed_precision="mixed_bfloat16")
    config = json.loads((mixed[1] / "config.json").read_text())
    config["mixed_precision"] = "mixed_float16"
    (mixed[1] / "config.json").write_text(json.dumps(config))
    result = reference.compare(study, [runs.load_run(d) for d in mixed], variant=True)
    assert "(mixed_precision mixed_bfloat16 vs mixed_float16)" in result["recipe_note"]
