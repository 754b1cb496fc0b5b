"""The one exception type that means "the user asked for something we cannot do".

Library code raises :class:`UserError` (or a subclass) with one clear sentence;
command-line entry points (:mod:`keras_resnet_cifar.cli`) catch it, print that
sentence and exit non-zero, so a bad flag, a missing file or corrupt data never
ends in a traceback. Anything else that escapes, ``ValueError`` included, is a
programming error and keeps its traceback: code that validates with
``ValueError`` (e.g. ``TrainConfig``) is converted to :class:`UserError`
explicitly where the user's values enter.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's input: bad argument, missing file, corrupt data.

    ``argument`` names the library argument at fault, as the message spells it
    (``"learning_rate must be at most 1,000, got 1e+300"``); a command that took
    it from a flag prints that word as the flag (``--learning_rate``).
    """

    def __init__(self, message: str = "", *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class DataError(UserError):
    """A data set that is missing, malformed or cannot be fetched."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters, no final
    full stop, to quote inside a sentence), or its type name when it has none."""
    text = str(e).strip().splitlines()
    return (text[0].rstrip(".") if text else type(e).__name__)[:200]


def message_of(e: BaseException) -> str:
    """The first line of an exception's message, whole, to print as an error line."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def printable(text: str, limit: int = 200) -> str:
    """``text`` (at most ``limit`` characters) with control characters escaped.

    For text that comes from outside (a server's error body, a class name it
    sends): written raw, an escape sequence in it would drive the user's terminal.
    """
    text = str(text)[:limit]
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def exit_with(message: str, code: int = 1) -> NoReturn:
    """Prints ``message`` as one line on stderr and exits with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
