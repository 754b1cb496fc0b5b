"""The progress line of long work on stderr: rewritten in place on a terminal, throttled in a pipe."""

from __future__ import annotations

import sys
import time


class Progress:
    """`label: done/total unit (NN%)`, at most every `every` seconds in a pipe; pass it as
    a library function's `progress(done, total)` callback."""

    def __init__(self, label: str, unit: str = "images", every: float = 10.0):
        self.label, self.unit, self.every = label, unit, every
        self._last = float("-inf")  # the first call prints
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if not final and now - self._last < (0.2 if self._tty else self.every):
            return
        self._last = now
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        text = f"{self.label}: {done:,}/{total:,} {self.unit}{percent}"
        if self._tty:
            print(f"\r{text}", end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)
