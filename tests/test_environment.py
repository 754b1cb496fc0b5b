"""What a run records of where it ran from: the code's commit, the data path as given."""

import subprocess
from pathlib import Path

from absl import flags

from keras_resnet_cifar import environment

REPO = Path(__file__).resolve().parents[1]


def test_the_data_path_is_recorded_as_the_user_gave_it():
    values = flags.FlagValues()
    flags.DEFINE_string("data_dir", None, "", flag_values=values)
    values(["train", "--data_dir=~/data/cifar10"])
    assert environment.given_flag("data_dir", "/root/data/cifar10", values) == "~/data/cifar10"
    unparsed = flags.FlagValues()
    flags.DEFINE_string("data_dir", None, "", flag_values=unparsed)
    assert environment.given_flag("data_dir", "/x", unparsed) == "/x"


def test_the_cli_records_path_flags_before_expanding_them(monkeypatch):
    from keras_resnet_cifar import cli

    monkeypatch.setitem(cli.GIVEN, "data_dir", "~/data/cifar10")
    assert environment.given_flag("data_dir", "/root/data/cifar10") == "~/data/cifar10"
    assert environment.provenance("/root/data/cifar10")["data_dir_given"] == "~/data/cifar10"


def test_the_git_commit_inside_and_outside_a_checkout(tmp_path):
    assert environment.git_commit(tmp_path) is None
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # an installed copy outside git has no commit to compare
        assert environment.git_commit(REPO).startswith(head.stdout.strip())
    recorded = environment.provenance("/root/data/cifar10")
    assert set(recorded) == {"git_commit", "data_dir_given", "load_average_1min_at_end"}
    assert recorded["load_average_1min_at_end"] >= 0
