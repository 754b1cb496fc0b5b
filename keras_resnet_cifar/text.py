"""Small helpers for the sentences the tools print (no dependencies)."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``, ``"10,000 test images"``: a count and its noun."""
    word = noun if count == 1 else (plural_form or f"{noun}s")
    return f"{count:,} {word}"
