"""curves.png of a run directory: accuracy and cross-entropy per epoch, training and eval set.

Drawn from the run's files (config.json, history.json) by the commands that
train (:mod:`keras_resnet_cifar.train`, the study) once training has ended: the
training library itself never imports matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar import run_files


def write(workdir: str | os.PathLike) -> Path | None:
    """Draws ``workdir``'s curves.png from its history (atomically).

    Returns:
        The file written, or None when the run has no config or no epoch yet.
    """
    saved = run_files.read_config(workdir)
    rows = run_files.read_history(workdir)
    if saved is None or not rows:
        return None
    from keras_resnet_cifar.analysis import plots  # matplotlib: only when a figure is drawn

    config = TrainConfig.from_dict(saved)
    figure = plots.training_curves({config.model: rows}, eval_set=config.eval_set,
                                   title=f"{config.model} (seed {config.seed})")
    run_files.save_figure(figure, workdir)
    return run_files.path(workdir, run_files.CURVES)
