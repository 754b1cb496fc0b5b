"""The figures, inspected as matplotlib objects (lines, data, labels, titles), their files,
and a run's curves.png."""

import numpy as np
from matplotlib.colors import to_hex

from keras_resnet_cifar.analysis import plots


def history(n, start=0.2, step=0.1):
    return [{"epoch": e, "loss": 2.0 - step * e, "accuracy": start + step * e,
             "val_loss": 2.1 - step * e, "val_accuracy": start - 0.05 + step * e}
            for e in range(1, n + 1)]


def test_training_curves_put_both_networks_on_the_same_axes():
    fig = plots.training_curves({"plain20": history(4), "resnet20": history(4, 0.3)},
                                xlabel="epoch (1,536 images)", title="pair")
    acc, loss = fig.axes
    assert len(acc.lines) == len(loss.lines) == 4  # 2 networks x (training, test)
    labels = [line.get_label() for line in acc.lines]
    assert labels == ["plain20 training", "plain20 test", "resnet20 training", "resnet20 test"]
    # Accuracy in percent, from the rows given.
    np.testing.assert_allclose(acc.lines[3].get_ydata(), [100 * (0.25 + 0.1 * e)
                                                          for e in range(1, 5)])
    np.testing.assert_allclose(loss.lines[0].get_xdata(), [1, 2, 3, 4])
    assert acc.get_ylabel() == "accuracy (%)" and acc.get_xlabel() == "epoch (1,536 images)"
    assert loss.get_ylabel() == "loss" and "weight-decay" in loss.get_title()
    assert acc.lines[0].get_linestyle() == "--" and acc.lines[1].get_linestyle() == "-"
    assert to_hex(acc.lines[0].get_color()) != to_hex(acc.lines[2].get_color())
    assert fig._suptitle.get_text() == "pair"
    assert [t.get_text() for t in acc.get_legend().get_texts()] == labels


def test_training_curves_prefer_the_cross_entropy_when_logged():
    rows = [dict(r, cross_entropy=r["loss"] - 0.5, val_cross_entropy=r["val_loss"] - 0.5)
            for r in history(3)]
    loss = plots.training_curves({"resnet20": rows}).axes[1]
    np.testing.assert_allclose(loss.lines[0].get_ydata(), [r["loss"] - 0.5 for r in rows])
    np.testing.assert_allclose(loss.lines[1].get_ydata(), [r["val_loss"] - 0.5 for r in rows])
    assert loss.get_ylabel() == "cross-entropy" and loss.get_yscale() == "linear"
    rows[0]["val_cross_entropy"] = 1e6  # a diverged first evaluation
    assert plots.training_curves({"resnet20": rows}).axes[1].get_yscale() == "log"


def test_curves_of_a_one_epoch_run_show_their_points():
    """A line through one point draws nothing: one-point curves get markers."""
    for fig in (plots.training_curves({"resnet20": history(1)}),
                plots.depth_sweep({"plain20": history(1)}, {"resnet20": history(1)}),
                plots.error_curves({"plain": {"plain20": {"x": [1.0], "train_error": [0.5],
                                                          "test_error": [0.6]}}})):
        lines = [line for ax in fig.axes for line in ax.lines if len(line.get_xdata()) == 1]
        assert lines and all(line.get_marker() not in ("", "None", None) for line in lines)
    longer = plots.training_curves({"resnet20": history(3)}).axes[0].lines
    assert all(line.get_marker() in ("", "None") for line in longer)  # lines only


def test_confusion_matrices_are_row_normalised_with_class_names():
    counts = {"plain": np.array([[8, 2, 0], [1, 1, 0], [0, 0, 5]]),
              "resnet": np.array([[10, 0, 0], [0, 2, 0], [0, 5, 0]])}
    fig = plots.confusion_matrices(counts, ["cat", "dog", "ship"])
    left, right = fig.axes[:2]
    np.testing.assert_allclose(left.images[0].get_array(),
                               [[80, 20, 0], [50, 50, 0], [0, 0, 100]])
    assert [t.get_text() for t in left.get_xticklabels()] == ["cat", "dog", "ship"]
    assert [t.get_text() for t in right.get_yticklabels()] == ["cat", "dog", "ship"]
    assert left.get_title() == "plain (accuracy 82.4%)"  # 14 of 17
    assert right.get_title() == "resnet (accuracy 70.6%)"
    assert left.get_xlabel() == "predicted class" and left.get_ylabel() == "true class"
    assert len(fig.axes) == 3  # two matrices and the colour bar
    assert "80" in [t.get_text() for t in left.texts]


def test_depth_sweep_has_thin_training_and_bold_test_error_per_depth():
    plain = {"plain20": history(3), "plain56": history(3, 0.1)}
    residual = {"resnet20": history(3, 0.3), "resnet56": history(3, 0.35)}
    fig = plots.depth_sweep(plain, residual)
    left, right = fig.axes
    assert left.get_title() == "Plain networks" and right.get_title() == "Residual networks"
    assert len(left.lines) == len(right.lines) == 4
    train, test = left.lines[0], left.lines[1]
    assert train.get_linewidth() < test.get_linewidth()
    np.testing.assert_allclose(train.get_ydata(), [100 * (1 - (0.2 + 0.1 * e)) for e in (1, 2, 3)])
    assert left.get_ylabel() == "error (%)"
    # The same depth has the same colour on both sides; shared y axis.
    assert to_hex(left.lines[2].get_color()) == to_hex(right.lines[2].get_color())
    assert left.get_shared_y_axes().joined(left, right)


def test_per_layer_panels_lines_and_sorting():
    panels = {"after epoch 6": {"plain20": [3.0, 1.0, 2.0], "resnet20": [0.5, 0.7, 0.2]},
              "after epoch 12": {"plain20": [1.0, 1.0, 1.0]}}
    fig = plots.per_layer(panels, ylabel="std", sort_descending=True, log_scale=True)
    first, second = fig.axes
    assert [first.get_title(), second.get_title()] == ["after epoch 6", "after epoch 12"]
    assert len(first.lines) == 2 and len(second.lines) == 1
    np.testing.assert_allclose(first.lines[0].get_ydata(), [3.0, 2.0, 1.0])
    np.testing.assert_allclose(first.lines[0].get_xdata(), [1, 2, 3])
    assert first.get_yscale() == "log" and first.get_ylabel() == "std"
    assert to_hex(first.lines[0].get_color()) == to_hex(plots.PLAIN_COLOUR)
    assert to_hex(first.lines[1].get_color()) == to_hex(plots.RESIDUAL_COLOUR)
    assert "sorted" in first.get_xlabel()


def test_per_layer_draws_every_depth_in_its_own_style():
    depths = (20, 32, 44, 56)
    panels = {"after epoch 3": {f"{family}{d}": [1.0, 2.0] for d in depths
                                for family in ("plain", "resnet")}}
    ax = plots.per_layer(panels, ylabel="std").axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.lines}
    assert len({styles[f"plain{d}"] for d in depths}) == 4  # 32 and 44 no longer alike
    for d in depths:  # the family is the colour, the depth the style
        assert styles[f"plain{d}"] == styles[f"resnet{d}"]
    assert styles["plain20"] == "-" and styles["plain56"] == ":"


def test_save_writes_png_and_svg(tmp_path):
    fig = plots.training_curves({"resnet8": history(2)})
    paths = plots.save(fig, tmp_path / "sub" / "curves")
    assert [p.name for p in paths] == ["curves.png", "curves.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()[:500]
    first = [p.read_bytes() for p in paths]
    plots.save(fig, tmp_path / "sub" / "curves")
    assert [p.read_bytes() for p in paths] == first  # deterministic bytes


def test_a_run_directory_gets_its_curves_once_it_has_an_epoch(tmp_path):
    from keras_resnet_cifar import run_files
    from keras_resnet_cifar.config import TrainConfig

    assert plots.save_run_curves(tmp_path) is None  # no config yet
    run_files.write_config(tmp_path, TrainConfig(model="plain20", seed=3))
    assert plots.save_run_curves(tmp_path) is None  # no epoch yet
    run_files.write_history(tmp_path, "test", history(2))
    written = plots.save_run_curves(tmp_path)
    assert written == tmp_path / run_files.CURVES
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
