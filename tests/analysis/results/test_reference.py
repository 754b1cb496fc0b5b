"""reference: the study beside the reference PyTorch trainer's runs."""

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_resnet_cifar.analysis.results import build, reference, runs
from tests.analysis.results.fake_runs import make_reference, make_study


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
