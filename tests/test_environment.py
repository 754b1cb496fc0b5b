"""What a run records of where it ran from: the code's commit, the data path as given."""

import subprocess
from pathlib import Path

from keras_resnet_cifar import environment

REPO = Path(__file__).resolve().parents[1]


def test_the_path_flags_as_given_win_over_the_library_argument(monkeypatch):
    monkeypatch.setattr(environment, "GIVEN", {})
    assert environment.provenance("/root/data/cifar10")["data_dir_given"] == "/root/data/cifar10"
    monkeypatch.setitem(environment.GIVEN, "data_dir", "~/data/cifar10")
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


def test_train_records_the_data_path_as_typed(tmp_path):
    """The train command expands --data_dir=~/... for its own use and records it as typed."""
    import sys

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    code = ("import sys; from keras_resnet_cifar import cli, environment\n"
            "from absl import flags\n"
            "flags.DEFINE_string('data_dir', None, '')\n"
            "def main(argv):\n"
            "    print(flags.FLAGS.data_dir, environment.provenance(flags.FLAGS.data_dir)"
            "['data_dir_given'])\n"
            "cli.run(main)\n")
    done = subprocess.run([sys.executable, "-c", code, "--data_dir=~/data"],
                          capture_output=True, text=True, env={"HOME": str(home),
                                                                "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"{home}/data", "~/data"]
