"""Runs a training-speed peer, another framework's script, in its own process.

A peer takes `--model plainN|resnetN --batch B --steps S --warmup W --mode M` (and
`--precision bfloat16|float16` for a mixed-precision run) and prints `img/s=<float>` on
its last line. The repository's is scripts/torch_peer.py, run in an environment of its
own (this project never imports torch); its modes are its own and it refuses others."""

from __future__ import annotations

import re
import statistics
import subprocess
from typing import Sequence

from keras_resnet_cifar.errors import UserError

_RATE = re.compile(r"img/s=([0-9.]+)")


def rate(command: Sequence[str], model: str, batch_size: int, steps: int, mode: str,
         warmup: int = 3, timeout: float = 1800, precision: str = "float32") -> float:
    """Images/s of one run of the peer; `precision` is the project's (mixed_bfloat16, ...)."""
    cmd = [*command, "--model", model, "--batch", str(batch_size), "--steps", str(steps),
           "--warmup", str(warmup), "--mode", mode]
    if precision != "float32":  # float32 peers need not know the flag
        cmd += ["--precision", precision.removeprefix("mixed_")]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"The peer could not run ({' '.join(cmd)}): {e}.") from None
    match = _RATE.search(run.stdout)
    if run.returncode or not match:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"The peer failed ({' '.join(cmd)}): {tail}")
    return float(match.group(1))


def check(command: Sequence[str], modes: Sequence[str],
          precisions: Sequence[str] = ("float32",)) -> None:
    """One tiny step per mode and precision, so that a missing interpreter, framework or
    mode fails before minutes of measurement."""
    for precision in precisions:
        for mode in modes:
            rate(command, "resnet8", 2, 1, mode, warmup=0, timeout=600, precision=precision)


def ratios(ours: Sequence[float], theirs: Sequence[float]) -> dict:
    """Our rate over theirs, pair by pair (A B A B), and their median."""
    pairs = [a / b for a, b in zip(ours, theirs)]
    return {"pairs": pairs, "median": statistics.median(pairs)}
