"""Stopping on SIGINT and SIGTERM, for the tools and the training loop.

SIGTERM (schedulers, preemption) stops a tool as Ctrl-C does, raising Interrupted (a
KeyboardInterrupt) so cleanup runs. The training loop defers the stop while it writes an
epoch: a run directory is never left between an epoch's files.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The last stop signal this process received, by any handler of this module.
_received: dict[str, str | None] = {"name": None}


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped the process; `args[0]` is the signal's name."""


class StopSignals:
    """Turns SIGINT and SIGTERM into Interrupted inside the block (inside deferred(): when it
    ends); nested blocks restore the handlers they found; a no-op outside the main thread."""

    def __init__(self):
        self._previous = {}
        self._deferring = False
        self._pending = None
        self.received = None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        # Remembered as well as raised: a library may turn the exception into its own
        # (TensorFlow tracing reports a TypeError); the process still stops because of it.
        self.received = _received["name"] = signal.Signals(signum).name
        if self._deferring:
            self._pending = self.received
        else:
            raise Interrupted(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Holds a signal back until the block ends, then raises it."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending:
            raise Interrupted(self._pending)


def stopped_by(error: BaseException) -> str | None:
    """"SIGTERM" or "SIGINT" when `error` ended the process because of that signal (a
    SIGTERM counts even when a library turned it into another exception)."""
    if _received["name"] == "SIGTERM" or (
            isinstance(error, KeyboardInterrupt) and error.args[:1] == ("SIGTERM",)):
        return "SIGTERM"
    if isinstance(error, KeyboardInterrupt) or _received["name"] == "SIGINT":
        return "SIGINT"
    return None
