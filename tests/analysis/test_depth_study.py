"""The study's library without training: its runs, their folders, what it publishes and
what its report covers. Training, evaluating and reporting for real: tests/test_study.py
(through the command) and tests/analysis/test_report_seeds.py."""

from pathlib import Path

from keras_resnet_cifar import run_files
from keras_resnet_cifar.analysis import depth_study
from keras_resnet_cifar.config import TrainConfig


def _run(folder: Path, model: str, seed: int = 0) -> Path:
    run_files.write_config(folder, TrainConfig(model=model, seed=seed))
    run_files.path(folder, run_files.MODEL).write_bytes(b"a model")
    return folder


def test_one_run_per_model_and_seed_in_its_own_folder():
    spec = depth_study.StudySpec(models=("plain20", "resnet20"), seeds=(0, 1))
    configs = spec.configs()
    assert [(c.model, c.seed) for c in configs] == [
        ("plain20", 0), ("resnet20", 0), ("plain20", 1), ("resnet20", 1)]
    assert [depth_study.run_dir("out", c).name for c in configs[:2]] == [
        "plain20-seed0", "resnet20-seed0"]


def test_publishing_copies_the_small_files_and_never_the_model(tmp_path):
    run = _run(tmp_path / "runs" / "plain20-seed0", "plain20")
    copies = run_files.publish_runs([run], tmp_path / "report")
    assert copies == [tmp_path / "report" / "runs" / "plain20-seed0"]
    assert run_files.read_config(copies[0])["model"] == "plain20"
    assert not run_files.path(copies[0], run_files.MODEL).exists()


def test_the_report_covers_runs_published_by_earlier_calls(tmp_path):
    report = tmp_path / "report"
    assert depth_study.report_runs([tmp_path / "a"], report) == [tmp_path / "a"]
    earlier = run_files.publish_runs([_run(tmp_path / "resnet20-seed0", "resnet20")], report)
    (report / "runs" / "not-a-run").mkdir()
    now = _run(tmp_path / "resnet20-seed1", "resnet20", seed=1)
    assert depth_study.report_runs([now], report) == [now, *earlier]
