"""Runs a training-speed peer, another framework's script, in its own process.

The benchmark compares its training rate with a peer's, A B A B on the same
machine (:func:`keras_resnet_cifar.analysis.speed.run`). A peer is any
script that takes ``--model plainN|resnetN --batch B --steps S --warmup W --mode M``
and prints ``img/s=<float>`` on its last line; the repository's PyTorch one is
``scripts/torch_peer.py`` (it lives in the repository, not in the installed
package, and runs in an environment of its own: this project never imports
torch). Its modes (``default``, ``channels_last``, ...) are its own: the peer
refuses one it does not know. For a run in a mixed precision it also gets
``--precision bfloat16`` (or ``float16``): the peer then trains in that precision.
"""

from __future__ import annotations

import re
import subprocess
from typing import Sequence

from keras_resnet_cifar.errors import UserError

_RATE = re.compile(r"img/s=([0-9.]+)")


def rate(command: Sequence[str], model: str, batch_size: int, steps: int, mode: str,
         warmup: int = 3, timeout: float = 1800, precision: str = "float32") -> float:
    """Images/s of one run of the peer (``command --model ... --mode mode``).

    Args:
        command: the peer's command, e.g. ``(python, "scripts/torch_peer.py")``.
        model: ``plainN`` or ``resnetN``.
        batch_size: images per step.
        steps: timed training steps.
        mode: the peer's configuration.
        warmup: untimed steps first.
        timeout: seconds the run may take.
        precision: the project's (``float32``, ``mixed_bfloat16``, ...): the peer trains
            in the same one.

    Raises:
        UserError: the peer could not run, failed, or printed no rate.
    """
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
    """Runs the peer once per mode and precision, one tiny step, before minutes of
    measurement.

    Raises:
        UserError: as :func:`rate`: a missing interpreter or script, a missing
            framework, a mode the peer does not know.
    """
    for precision in precisions:
        for mode in modes:
            rate(command, "resnet8", 2, 1, mode, warmup=0, timeout=600, precision=precision)


def ratios(ours: Sequence[float], theirs: Sequence[float]) -> dict:
    """Our rate over the peer's, pair by pair (A B A B), and their median."""
    import statistics

    pairs = [a / b for a, b in zip(ours, theirs)]
    return {"pairs": pairs, "median": statistics.median(pairs)}
