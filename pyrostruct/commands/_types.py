"""argparse value types shared by the subcommands (errors become one-line CLI errors)."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float"]


def _positive(text: str, cast, what: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _positive(text, int, "integer")


def positive_float(text: str) -> float:
    """A number > 0."""
    return _positive(text, float, "number")
