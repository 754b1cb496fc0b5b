"""Run directories as training writes them, for the results tests (no training, no
TensorFlow): epoch_run (per-epoch evaluations), curve_run (3 passes with curve points, like
the study's; with `trainer`, a reference trainer's run), full_recipe_run (200 epochs)."""

import json
from pathlib import Path

import numpy as np

from keras_resnet_cifar.config import TrainConfig


PARAMS = {20: 269_722, 56: 853_018}


def epoch_run(root, model, seed, train_acc, test_acc, *, best=None, final=None,
             evaluation=None, stats=None):
    """A run directory as training writes it; accuracies are per-epoch lists."""
    run = root / f"{model}-seed{seed}"
    run.mkdir(parents=True)
    config = TrainConfig(model=model, seed=seed, epochs=len(train_acc), steps_per_epoch=10,
                         eval_steps=4, lr_boundaries=(3,))
    (run / "config.json").write_text(config.to_json())
    rows = [{"epoch": i + 1, "loss": 2 - a, "accuracy": a, "val_loss": 2.2 - t,
             "val_accuracy": t, "learning_rate": 0.1, "epoch_time_s": 10.0,
             "images_per_sec": 128.0} for i, (a, t) in enumerate(zip(train_acc, test_acc))]
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    top = max(range(len(test_acc)), key=test_acc.__getitem__)
    depth = int(model.lstrip("plainresnet"))
    metrics = {"model": model, "test_accuracy": test_acc[-1] if final is None else final,
               "test_images": 512, "params_trainable": PARAMS[depth],
               "best": best or {"epoch": top + 1, "metric": "val_accuracy",
                                "value": test_acc[top], "chosen_on": "test"},
               "wall_time_s": 10.0 * len(rows), "train_images_per_sec": 128.0,
               "data_source": "fake", "cpu": "Test CPU", "cpu_cores": 2, "gpus": [],
               "tensorflow": "2.21.0", "keras": "3.15.1", "python": "3.11"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if evaluation is not None:
        (run / "evaluation.json").write_text(json.dumps(evaluation))
    if stats is not None:
        (run / "layer_stats.json").write_text(json.dumps(stats))
    return run


def layer_stats(depth, std, grads_early, grads_late):
    n = depth - 1
    conv = [f"c{i}" for i in range(n)]
    third = n // 3
    norms = [grads_early] * third + [1.0] * (n - 2 * third) + [grads_late] * third
    return {"batch_size": 8, "response_layers": conv, "gradient_layers": conv + ["logits"],
            "epochs": [{"epoch": e, "loss": 2.0, "response_std": [std] * n,
                        "gradient_norm": norms + [5.0]} for e in (0, 3)]}


def evaluation(accuracy, images=100):
    right = round(accuracy * images)
    return {"images": images, "accuracy": accuracy, "loss": 1.0,
            "class_names": ["a", "b"], "confusion_matrix": [[right // 2, 50 - right // 2],
                                                            [images - 50 - (right - right // 2),
                                                             right - right // 2]]}


STEPS = 391          # one full pass of 50,000 images in batches of 128


MARKS = (97, 195, 293, 391)


RECIPE = dict(epochs=3, lr_boundaries=(1.2, 1.8))


def curve(train_errors, test_errors):
    """curve.json with 4 points per pass; errors one per point (12 for 3 passes)."""
    points = []
    for i, (tr, te) in enumerate(zip(train_errors, test_errors)):
        step = (i // 4) * STEPS + MARKS[i % 4]
        points.append({"step": step, "epoch": round(step / STEPS, 6), "learning_rate": 0.1,
                       "train_images": 12_416, "train_batches": 97, "train_error": tr,
                       "train_error_se": 0.004, "train_cross_entropy": 1.5,
                       "test_error": te, "test_cross_entropy": 1.4, "test_images": 2000})
    return {"points_per_epoch": 4, "steps_per_epoch": STEPS,
            "test_subset": {"images": 2000, "seed": 0}, "points": points}


def decay(start, end, n=12):
    """n errors falling geometrically from ``start`` to ``end``."""
    return list(np.geomspace(start, end, n))


def curve_run(root, model, seed, train_errors, test_errors, final_error, *,
             val_columns=False, trainer=None, load=None, evaluated=True, **recipe):
    """A study run (or, with ``trainer``, a reference run) of 3 passes."""
    run = Path(root) / f"{model}-seed{seed}"
    run.mkdir(parents=True)
    config = json.loads(TrainConfig(model=model, seed=seed,
                                    **{**RECIPE, **recipe}).to_json())
    if trainer:
        config["trainer"] = trainer
    (run / "config.json").write_text(json.dumps(config))
    rows = []
    for epoch in (1, 2, 3):
        row = {"epoch": epoch, "cross_entropy": 1.5, "accuracy": 1 - train_errors[4 * epoch - 1],
               "learning_rate": 0.1, "epoch_time_s": 100.0 + seed}
        if val_columns or trainer:
            row.update(val_accuracy=1 - test_errors[4 * epoch - 1], val_cross_entropy=1.4)
        if load is not None:
            row["load_average"] = load + epoch
        if trainer:
            row.update(bn_recalibrated_val_accuracy=1 - test_errors[4 * epoch - 1] + 0.01,
                       bn_lag_mean=0.1 / epoch, bn_lag_log_variance=0.2 / epoch)
        rows.append(row)
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    metrics = {"model": model, "test_accuracy": 1 - final_error, "test_images": 10_000,
               "params_trainable": 269_722 if model.endswith("20") else 853_018,
               "best": ({"epoch": 3, "metric": "val_accuracy", "value": 1 - test_errors[-1],
                         "chosen_on": "test"} if val_columns else None),
               "wall_time_s": 300.0, "train_images_per_sec": 400.0, "data_source": "fake",
               "cpu": "Test CPU", "cpu_cores": 2, "gpus": []}
    if trainer:
        metrics.update(trainer=trainer, bn_recalibrated_test_accuracy=1 - final_error + 0.01,
                       load_average_1min_at_end=3.5)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "curve.json").write_text(json.dumps(curve(train_errors, test_errors)))
    if evaluated and not trainer:
        right = round((1 - final_error) * 10_000)
        (run / "evaluation.json").write_text(json.dumps({
            "images": 10_000, "accuracy": right / 10_000, "loss": 1.0,
            "class_names": ["a", "b"],
            "confusion_matrix": [[right // 2, 5000 - right // 2],
                                 [5000 - (right - right // 2), right - right // 2]]}))
    return run


STUDY = {"plain20": (0.43, 0.41), "resnet20": (0.40, 0.39),
         "plain56": (0.80, 0.79), "resnet56": (0.45, 0.44)}


def make_study(root, seeds=(0, 1, 2), spread=0.01, **kwargs):
    """The four networks, one run per seed; plain56 degraded, resnet56 fine."""
    rng = np.random.default_rng(0)
    dirs = []
    for model, (train, test) in STUDY.items():
        for seed in seeds:
            jitter = spread * rng.standard_normal()
            dirs.append(curve_run(root, model, seed, decay(0.85, train + jitter),
                                 decay(0.8, test + jitter), test + jitter, **kwargs))
    return dirs


def make_reference(root, seeds=(0, 1, 2), final=0.39, **recipe):
    return [curve_run(root, "resnet20", s, decay(0.8, 0.40 + s / 200),
                     decay(0.78, final + s / 200), final + s / 200,
                     trainer="pytorch-reference", **recipe) for s in seeds]


CLASSES = ["airplane", "automobile"]


def full_recipe_run(root, model, epochs_done, test_acc, *, finished=False, cpu="Test CPU",
                  per_class=(0.9, 0.8)):
    """A run directory of the default recipe (200 epochs), ``epochs_done`` of them done."""
    run = root / f"{model}-seed0"
    run.mkdir(parents=True)
    config = TrainConfig(model=model, data_dir="/data/cifar10")
    (run / "config.json").write_text(config.to_json())
    rows = [{"epoch": i + 1, "loss": 1.0, "accuracy": 0.5 + 0.4 * (i + 1) / epochs_done,
             "val_loss": 1.2, "val_accuracy": max(0.1, test_acc - 0.01 * (epochs_done - i - 1)),
             "learning_rate": 0.1, "epoch_time_s": 90.0, "images_per_sec": 555.0,
             "load_average": 2.5} for i in range(epochs_done)]
    (run / "history.json").write_text(json.dumps({"eval_set": "test", "epochs": rows}))
    if finished:
        (run / "metrics.json").write_text(json.dumps({
            "model": model, "test_accuracy": test_acc, "test_images": 10000,
            "cpu": cpu, "cpu_cores": 2, "gpus": [], "tensorflow": "2.21.0", "keras": "3.15.1",
            "python": "3.11.7", "git_commit": "abc123", "data_dir_given": "~/data/cifar10",
            "finished_at": "2026-12-06T10:00:00+0000"}))
        (run / "evaluation.json").write_text(json.dumps({
            "images": 10000, "accuracy": test_acc, "loss": 0.3, "class_names": CLASSES,
            "per_class": [{"class": c, "accuracy": a, "recall": a}
                          for c, a in zip(CLASSES, per_class)],
            "confusion_matrix": [[900, 100], [200, 800]]}))
    return run
