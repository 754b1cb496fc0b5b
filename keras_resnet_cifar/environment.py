"""What a figure was measured on: the machine, the software and the command's paths."""

from __future__ import annotations

import os
import platform
import subprocess

# Path flags as typed (before "~" and $VARS expansion), from cli.run; empty in a library call.
GIVEN: dict[str, object] = {}


def _cpuinfo(key: str, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The value of the first line of `cpuinfo` that starts with `key`; None without one."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.lower().startswith(key):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def cpu_model() -> str:
    name = _cpuinfo("model name")
    return name.strip() if name is not None else platform.processor() or platform.machine()


# The /proc/cpuinfo flags of native bfloat16 arithmetic: AVX512_BF16 (AMD Zen 4, Intel
# Cooper Lake and later) and AMX (Intel Sapphire Rapids and later).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def bfloat16_support(cpuinfo: str = "/proc/cpuinfo") -> list[str] | None:
    """The BFLOAT16_FLAGS this CPU reports ([] for none); None without /proc/cpuinfo."""
    flags = _cpuinfo("flags", cpuinfo)
    return None if flags is None else [f for f in BFLOAT16_FLAGS if f in set(flags.split())]


def describe() -> dict[str, object]:
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
    """The commit of the checkout holding `path` (default: this package), "+changes" when
    tracked files differ from it; None outside a git checkout or without git."""
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
    changed = dirty.returncode == 0 and dirty.stdout.strip()
    return head.stdout.strip() + ("+changes" if changed else "")


def provenance(data_dir: str | None = None) -> dict[str, object]:
    """The code's git commit, the data path as the user typed it and the load average now."""
    return {"git_commit": git_commit(),
            "data_dir_given": GIVEN.get("data_dir", data_dir) or data_dir,
            "load_average_1min_at_end": os.getloadavg()[0]}
