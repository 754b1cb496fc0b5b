"""run_files: damaged run files are refused in one line; copies never follow links."""

from __future__ import annotations

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import lock

CONFIG = config_lib.TrainConfig(model="resnet8", dataset="synthetic", epochs=3)


@pytest.mark.parametrize("name,text", [
    (run_files.CONFIG, "[]"),
    (run_files.CONFIG, '{"epochs": "3"}'),
    (run_files.HISTORY_JSON, "[1]"),
    (run_files.HISTORY_JSON, '{"rows": []}'),
    (run_files.BEST_JSON, "7"),
])
def test_run_files_of_the_wrong_json_type_are_named_in_one_line(tmp_path, name, text):
    # Issue 16, item 4: these gave tracebacks (AttributeError, TypeError, KeyError).
    run_files.write_config(tmp_path, CONFIG)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
    readers = {run_files.CONFIG: run_files.read_config,
               run_files.HISTORY_JSON: run_files.read_history,
               run_files.BEST_JSON: run_files.read_best}
    with pytest.raises(UserError, match=f"{tmp_path / name} "):
        readers[name](tmp_path)
    if name != run_files.BEST_JSON:
        with pytest.raises(UserError, match=f"{tmp_path / name} "):
            lock.plan(tmp_path, CONFIG)


def test_small_files_are_never_copied_through_a_link(tmp_path):
    # Issue 29: a study run whose per_class.csv was a symlink had a system file copied
    # into the report folder meant for committing.
    run, dest = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    (run / run_files.CONFIG).write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("a system file")
    (run / run_files.PER_CLASS).symlink_to(secret)
    with pytest.raises(UserError, match="per_class.csv is a symbolic link"):
        run_files.copy_small_files(run, dest)
    assert not (dest / run_files.PER_CLASS).exists()
    (run / run_files.PER_CLASS).unlink()
    assert run_files.copy_small_files(run, dest) == [dest / run_files.CONFIG]


def test_a_copy_keeps_no_small_file_its_run_no_longer_has(tmp_path):
    """A run restarted under the same name: its copy loses the old run's metrics.json."""
    run, dest = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    for name in (run_files.CONFIG, run_files.HISTORY_JSON, run_files.METRICS):
        (run / name).write_text("{}")
    run_files.copy_small_files(run, dest)
    assert (dest / run_files.METRICS).exists()
    (run / run_files.METRICS).unlink()
    assert run_files.copy_small_files(run, dest) == [dest / run_files.CONFIG,
                                                     dest / run_files.HISTORY_JSON]
    assert sorted(p.name for p in dest.iterdir()) == [run_files.CONFIG, run_files.HISTORY_JSON]
    (run / run_files.METRICS).mkdir()  # not a file: refused, never followed or removed
    (dest / run_files.EVALUATION).mkdir()
    with pytest.raises(UserError):
        run_files.copy_small_files(run, dest)
