"""argparse value types and checks shared by the subcommands (errors become one-line CLI errors)."""

from __future__ import annotations

import argparse

__all__ = [
    "positive_int",
    "positive_float",
    "seed",
    "column_list",
    "add_csv_arguments",
    "check_workers",
    "step_count",
]


def _positive(text: str, cast, what: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _positive(text, int, "integer")


#: The most training steps a command takes: a typo such as 1e20 steps would run for ever.
MAX_STEPS = 10_000_000


def step_count(text: str) -> int:
    """A number of training steps: an integer from 1 to :data:`MAX_STEPS`."""
    value = positive_int(text)
    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_STEPS:_} steps, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _positive(text, float, "number")


#: numpy's seeds are 32-bit: 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """An integer in ``0 .. 2**32 - 1`` (numpy's range of seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to {MAX_SEED}, got {text!r}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def column_list(text: str) -> list[str]:
    """Column names separated by commas (``"a,b"``); none may be empty."""
    names = text.split(",")
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by ',', got {text!r}")
    return names


def _one_char(text: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (',', ';', '\\t'), got {text!r}")
    return text


def column_name(text: str) -> str:
    """A column's name: not empty (an empty ``--intervention-column`` meant none, silently)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a column name, got an empty one")
    return text


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    """``DATA.csv``, ``--sep`` and ``--decimal``: how every subcommand reads its table."""
    parser.add_argument("data", metavar="DATA.csv",
                        help="CSV file: a header row of unique names, then one row per "
                        "observation (see README, 'Data files')")  # fmt: skip
    parser.add_argument("--sep", type=_one_char, default=",", metavar="CHAR",
                        help="field separator (default ',')")  # fmt: skip
    parser.add_argument("--decimal", choices=[".", ","], default=".",
                        help="decimal mark of the numbers (default '.')")  # fmt: skip


def check_workers(args: argparse.Namespace) -> None:
    """Refuse ``--workers`` with the serial executor, where it would be ignored."""
    from pyrostruct.errors import InputError

    if args.workers is not None and args.executor == "serial":
        raise InputError(f"--workers {args.workers} applies to --executor process or ray; the "
                         "serial executor runs one fit at a time")  # fmt: skip
