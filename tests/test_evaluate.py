"""Evaluation: metrics by hand, and a tiny trained model as run dir, .keras and SavedModel."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.deploy import evaluation, evaluation_files, predictor, serving
from keras_resnet_cifar.models import networks
from keras_resnet_cifar import run_files

CLASSES = ("a", "b", "c")


def test_metrics_from_probabilities_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .6, .3],
                              [.1, .8, .1], [.5, .2, .3], [.1, .1, .8]])
    result = evaluation.metrics_from_probabilities(probabilities, labels, CLASSES)
    # Predictions 0, 1, 1, 1, 0, 2: four right of six.
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    a, b, c = result["per_class"]
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(0.5), 0.5, 2)
    assert (b["precision"], b["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert (c["precision"], c["recall"]) == (1.0, 0.5)
    # A class's accuracy is its recall: one figure, one column, not two.
    assert all(set(r) == {"class", "precision", "recall", "support"}
               for r in result["per_class"])
    table = evaluation.format_table({**result, "per_class": result["per_class"][:1],
                                     "images": 1})
    assert table.splitlines()[0].split() == ["class", "precision", "recall", "support"]
    assert table.endswith("on 1 image; a class's accuracy is its recall")
    assert result["loss"] == pytest.approx(-np.mean(np.log([.8, .2, .6, .8, .3, .8])))
    assert result["macro_recall"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        evaluation.metrics_from_probabilities(probabilities[:, :2], labels, CLASSES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet8 after a few steps on synthetic data, saved as a run directory."""
    data = datasets.synthetic(256, 96, seed=0)
    keras.utils.set_random_seed(0)
    model = networks.build_model("resnet8")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=32,
              epochs=2, verbose=0)
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.keras")
    return run, model, data


def test_evaluate_run_directory_writes_consistent_results(trained):
    run, model, data = trained
    predict = predictor.load(run)
    result = evaluation.evaluate_split(predict, data.test.images, data.test.labels,
                                       data.class_names, batch_size=40)
    expected = model.predict(data.test.images.astype(np.float32), verbose=0)
    assert result["images"] == 96
    assert result["accuracy"] == pytest.approx(np.mean(expected.argmax(1) == data.test.labels))
    assert np.sum(result["confusion_matrix"]) == 96
    assert [r["support"] for r in result["per_class"]] == list(np.bincount(data.test.labels,
                                                                             minlength=10))
    paths = evaluation_files.write_results(result, run)
    assert [p.name for p in paths] == ["evaluation.json", "per_class.csv",
                                       "confusion_matrix.csv"]
    assert run_files.read_evaluation(run)["accuracy"] == result["accuracy"]
    assert evaluation_files.is_current(run)
    rows = list(csv.reader((run / "per_class.csv").open()))
    assert rows[0] == ["class", "precision", "recall", "support"]
    assert [r[0] for r in rows[1:]] == list(data.class_names)
    assert float(rows[1][2]) == pytest.approx(result["per_class"][0]["recall"], abs=1e-6)
    matrix = list(csv.reader((run / "confusion_matrix.csv").open()))
    assert matrix[0][1:] == list(data.class_names)
    assert [[int(v) for v in r[1:]] for r in matrix[1:]] == result["confusion_matrix"]
    table = evaluation.format_table(result)
    assert "airplane" in table and f"test accuracy {result['accuracy']:.4f}" in table


def test_keras_file_and_saved_model_give_the_same_probabilities(trained, tmp_path):
    run, model, data = trained
    images = data.test.images[:16]
    from_file = predictor.load(run / "model.keras")(images)
    serving.save(model, tmp_path / "sm", data.class_names)
    assert predictor.resolve(tmp_path / "sm", trust_savedmodel=True).kind == "saved_model"
    from_saved_model = predictor.load(tmp_path / "sm", trust_savedmodel=True)(images)
    np.testing.assert_allclose(from_file, from_saved_model, atol=1e-5)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.evaluate", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_cli_without_scikit_learn_says_so_in_one_line(tmp_path):
    """On the edge install (no scikit-learn) evaluate names what it needs and the way out."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class _NoSklearn(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sklearn':\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, _NoSklearn())\n")
    repo = str(Path(__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.evaluate",
                        "--model_path=model_int8.tflite"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), repo])})
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: evaluate needs scikit-learn (pip install scikit-learn); predict "
        "--dataset=cifar10 gives the accuracy without it."]


@pytest.mark.slow
def test_cli_evaluates_and_prints_a_table(trained, tmp_path):
    run, model, _ = trained
    r = _cli(f"--model_path={run}", "--dataset=synthetic", "--synthetic_test_size=64",
             f"--out={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test accuracy" in r.stdout and "truck" in r.stdout
    assert "evaluating: 64/64 images (100%)" in r.stderr
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["images"] == 64 and saved["model"]["kind"] == "keras"
    assert saved["model"]["run_dir"] == str(run)
    data = datasets.synthetic(0, 64, seed=0)
    expected = model.predict(data.test.images.astype(np.float32), verbose=0).argmax(1)
    assert saved["accuracy"] == pytest.approx(np.mean(expected == data.test.labels))
    bad = _cli(f"--model_path={tmp_path / 'nothing'}")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"error: No run directory, .keras file, SavedModel or .tflite file at "
        f"{tmp_path / 'nothing'}."]


@pytest.mark.slow
def test_cli_never_writes_into_an_export(trained, tmp_path):
    """A SavedModel version folder is what TF Serving polls: evaluate only prints there."""
    _, model, data = trained
    serving.save(model, tmp_path / "1", data.class_names)
    before = sorted(p.name for p in (tmp_path / "1").iterdir())
    r = _cli(f"--model_path={tmp_path / '1'}", "--trust_savedmodel", "--dataset=synthetic",
             "--synthetic_test_size=32", "--max_images=20")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on 20 images" in r.stdout and "not written: give --out" in r.stdout
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == before


def test_a_loss_clipped_for_underflowing_probabilities_is_explained():
    """evaluate's loss (from probabilities) is below train's (from the logits) exactly
    when a true class's probability underflows; the table says how many and why."""
    probabilities = np.full((3, 3), 1 / 3)
    probabilities[2] = [0.0, 0.5, 0.5]  # image 2, class 0: probability 0
    result = evaluation.metrics_from_probabilities(probabilities, np.array([1, 2, 0]), CLASSES)
    assert result["loss_clipped_images"] == 1
    table = evaluation.format_table(result)
    assert "(1 image gave their true class a probability below 1e-12, counted as 1e-12 " \
           "(loss 27.6 each): train's test loss, from the logits, counts them in full" in table
    ordinary = evaluation.metrics_from_probabilities(np.full((2, 3), 1 / 3), np.array([1, 2]),
                                                    CLASSES)
    assert ordinary["loss_clipped_images"] == 0
    assert "below 1e-12" not in evaluation.format_table(ordinary)
