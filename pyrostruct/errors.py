"""Exceptions raised at pyrostruct's public boundary.

Every input problem a user can cause (a bad file, a bad column, a bad
argument) is reported as :class:`InputError`, a :class:`ValueError`, with a
message that says what is wrong and how to fix it. The command line turns it
into one line on stderr and exit code 2. A training run that diverges raises
:class:`NonFiniteLossError`, a :class:`RuntimeError`.
"""

import numbers

__all__ = ["InputError", "NonFiniteLossError", "check_count", "check_seed"]


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix."""


def check_seed(seed) -> int:
    """``seed`` as an ``int`` in numpy's range ``0 .. 2**32 - 1`` (Python or numpy integers;
    bools, floats and text refused).

    :raises InputError: "seed must be an integer from 0 to 2**32 - 1, got ...".
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    return int(seed)


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (Python or numpy integers; bools
    and other types refused).

    :raises InputError: naming ``name``: "must be a positive integer" (``minimum=1``),
        "a non-negative integer" (0), or "an integer >= minimum".
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise InputError(f"{name} must be {what}, got {value!r}")
    return int(value)


class NonFiniteLossError(RuntimeError):
    """A training run's loss became NaN or infinite; the message names the run and the step.

    Raised by :func:`pyrostruct.infer.engine.train`, the one training loop, for
    every caller (``fit``, ``select``, ``discover``, ...). Usual fixes: a lower
    learning rate, a higher temperature, a model whose supports match the data.
    """
