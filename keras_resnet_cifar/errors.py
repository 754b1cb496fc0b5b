"""The one exception type that means "the user asked for something we cannot do".

Library code raises :class:`UserError` (or a subclass) with one clear sentence;
command-line entry points catch it, print that sentence and exit non-zero, so a
bad flag, a missing file or corrupt data never ends in a traceback. Anything
else that escapes is a programming error and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """A mistake in the user's input: bad flag, missing file, corrupt data."""


class DataError(UserError):
    """A data set that is missing, malformed or cannot be fetched."""


def exit_with(message: str, code: int = 1) -> NoReturn:
    """Prints ``message`` as one line on stderr and exits with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    """Wraps an absl ``main(argv)`` so that UserError and ValueError exit cleanly."""

    def wrapped(argv):
        try:
            return main(argv)
        except (UserError, ValueError) as e:
            exit_with(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except KeyboardInterrupt:
            exit_with("interrupted", 130)

    return wrapped
