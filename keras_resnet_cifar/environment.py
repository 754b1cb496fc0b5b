"""What a figure was measured on: the machine and the software, as a dict."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The /proc/cpuinfo flags of native bfloat16 arithmetic: AVX512_BF16 (AMD Zen 4, Intel
# Cooper Lake and later) and AMX (Intel Sapphire Rapids and later).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def bfloat16_support(cpuinfo: str = "/proc/cpuinfo") -> list[str] | None:
    """The :data:`BFLOAT16_FLAGS` this CPU reports ([] for none); None where unknown
    (no Linux /proc/cpuinfo)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in BFLOAT16_FLAGS if flag in present]
    except OSError:
        pass
    return None


def describe() -> dict[str, object]:
    """CPU, cores, accelerators and library versions, for results files."""
    import keras
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), with
    "+changes" when tracked files differ from it; None outside a git checkout or
    without git."""
    import subprocess

    where = os.fspath(path) if path else os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.returncode == 0 and dirty.stdout.strip()
                                  else "")


def given_flag(name: str, default: object = None) -> object:
    """A path flag's value as the user gave it (``~`` and ``$VARS`` unexpanded), as
    :mod:`keras_resnet_cifar.cli` recorded it before expanding it; ``default`` when no
    tool's command line ran in this process (a library call) or the flag was not given.
    Reads no flags itself (libraries never do)."""
    import sys

    cli = sys.modules.get("keras_resnet_cifar.cli")
    given = getattr(cli, "GIVEN", {}) if cli is not None else {}
    return given.get(name, default)


def provenance(data_dir: str | None = None) -> dict[str, object]:
    """What a run ran from, beside :func:`describe`: the code's git commit (None outside a
    checkout), the data path as the user gave it (unexpanded; ``data_dir`` when no flag
    was parsed) and the machine's 1-minute load average now."""
    return {
        "git_commit": git_commit(),
        "data_dir_given": given_flag("data_dir", data_dir) or data_dir,
        "load_average_1min_at_end": os.getloadavg()[0],
    }
