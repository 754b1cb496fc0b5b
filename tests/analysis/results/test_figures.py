"""figures: every seed faintly under the mean, from the runs' data."""

import numpy as np
import pytest

from keras_resnet_cifar.analysis import plots
from keras_resnet_cifar.analysis.results import figures, runs
from tests.analysis.results.fake_runs import make_study


def _seed_lines(ax):
    return [line for line in ax.lines if line.get_gid() == "seed"]


def test_figures_hold_the_runs_data(epoch_study):
    figs = figures.figures([runs.load_run(r) for r in epoch_study])
    acc = figs["curves_56"].axes[0]
    assert [l.get_label() for l in acc.lines] == ["plain56 training", "plain56 test",
                                                  "resnet56 training", "resnet56 test"]
    assert acc.get_xlabel() == "epoch (1,280 training images each)"
    sweep = figs["depth_sweep"].axes
    assert [l.get_label() for l in sweep[0].lines if "test" in l.get_label()] == \
        ["plain20 test", "plain56 test"]
    std = figs["layer_response_std"]
    assert [a.get_title() for a in std.axes] == ["after epoch 3"]  # BN is the identity at 0
    grads = figs["layer_gradient_norm"]
    assert [a.get_title() for a in grads.axes] == ["at initialisation", "after epoch 3"]
    assert [l.get_label() for l in grads.axes[0].lines] == ["plain56", "resnet56"]
    assert grads.axes[0].get_yscale() == "log"


def test_figures_draw_every_seed_faintly_under_the_mean(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path)]
    figs = figures.figures(loaded)
    plain, residual = figs["error_curves"].axes[:2]
    # 2 networks x (training, test) x 3 seeds, faint; 4 mean curves bold.
    assert len(_seed_lines(plain)) == 12
    assert all(line.get_alpha() == plots.SEED_ALPHA for line in _seed_lines(plain))
    means = [line for line in plain.lines if line.get_gid() == "mean"]
    assert len(means) == 4
    assert "plain20 test (mean ± std, n=3)" in [line.get_label() for line in means]
    assert len(plain.collections) >= 4  # the ± std bands
    seeds = np.array([r.curve_points[-1]["test_error"] for r in loaded
                      if r.model == "plain20"])
    test_mean = next(line for line in means if line.get_label().startswith("plain20 test"))
    assert test_mean.get_ydata()[-1] == pytest.approx(100 * seeds.mean())
    assert {"curves_20", "curves_56", "confusion_20"} <= set(figs)
    assert "depth_sweep" not in figs  # error_curves is that figure, over every seed


def test_one_seed_figures_have_no_faint_copies(tmp_path):
    loaded = [runs.load_run(d) for d in make_study(tmp_path, seeds=(0,))]
    ax = figures.figures(loaded)["error_curves"].axes[0]
    assert not _seed_lines(ax) and [line.get_label() for line in ax.lines][:2] == \
        ["plain20 training", "plain20 test"]


def test_per_layer_figures_draw_each_seed():
    fig = plots.per_layer({"after epoch 3": {"plain20": [[1, 2, 3], [1.2, 2.2, 3.2]],
                                             "resnet20": [[1, 1, 1]]}}, ylabel="std")
    ax = fig.axes[0]
    assert len(_seed_lines(ax)) == 2
    mean = next(line for line in ax.lines if line.get_gid() == "mean")
    np.testing.assert_allclose(mean.get_ydata(), [1.1, 2.1, 3.1])
    assert "plain20 (mean ± std, n=2)" in [line.get_label() for line in ax.lines]
