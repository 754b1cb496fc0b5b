"""UserError (cli prints one `error:` line; anything else, ValueError included, is a bug
and keeps its traceback), and helpers that turn errors and counts into sentences."""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's input: bad argument, missing file, corrupt data. `argument`:
    the library argument(s) at fault, as the message spells them; cli prints them as flags."""

    def __init__(self, message: str = "", *, argument: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.argument = argument


class DataError(UserError):
    """A data set that is missing, malformed or cannot be fetched."""


def message_of(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def first_line(e: BaseException) -> str:
    """message_of(e) to quote inside a sentence: no final full stop, at most 200 characters."""
    return message_of(e).rstrip(".")[:200]


def printable(text: str, limit: int = 200) -> str:
    """`text` (at most `limit` characters) with control characters escaped: text from
    outside (a server's answer), written raw, could drive the user's terminal."""
    text = str(text)[:limit]
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def exit_with(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """"1 image", "10,000 test images": a count and its noun."""
    word = noun if count == 1 else (plural_form or f"{noun}s")
    return f"{count:,} {word}"
