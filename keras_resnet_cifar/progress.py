"""The progress line of long work on stderr: in place on a terminal, throttled in a pipe."""

from __future__ import annotations

import sys
import time


class Line:
    """On a terminal rewritten in place at most every `tty_every` s, elsewhere printed whole at
    most every `every` s, to `stream` or sys.stderr as it is when writing (tools redirect it)."""

    def __init__(self, every: float, tty_every: float = 0.2, stream=None):
        self.every, self.tty_every, self._stream = every, tty_every, stream
        self._last = float("-inf")  # the first line is due at once
        self._shown = False         # an in-place line is on the terminal

    @property
    def stream(self):
        return self._stream or sys.stderr

    def tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def restart(self) -> float:
        """Starts timing anew (a terminal shows the next line at once, a pipe after an
        interval); returns the time now."""
        now = time.monotonic()
        self._last = float("-inf") if self.tty() else now
        return now

    def show(self, text: str, final: bool = False) -> None:
        """Writes `text` if an interval has passed, or when `final` (ending the line)."""
        now, tty = time.monotonic(), self.tty()
        if not final and now - self._last < (self.tty_every if tty else self.every):
            return
        self._last = now
        if tty:
            self._shown = not final  # first: a stop signal may arrive during the write
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erases the in-place line (a terminal only)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


class Progress:
    """`label: done/total unit (NN%)`, the `progress(done, total)` callback that library
    functions take; the last call (done >= total) always prints."""

    def __init__(self, label: str, unit: str = "images", every: float = 10.0):
        self.label, self.unit = label, unit
        self.line = Line(every)

    def __call__(self, done: int, total: int) -> None:
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        self.line.show(f"{self.label}: {done:,}/{total:,} {self.unit}{percent}",
                       final=done >= total)
