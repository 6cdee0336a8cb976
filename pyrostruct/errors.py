"""Exceptions raised at pyrostruct's public boundary.

Every input problem a user can cause (a bad file, a bad column, a bad
argument) is reported as :class:`InputError`, a :class:`ValueError`, with a
message that says what is wrong and how to fix it. The command line turns it
into one line on stderr and exit code 2. A training run that diverges raises
:class:`NonFiniteLossError`, a :class:`RuntimeError`.
"""

__all__ = ["InputError", "NonFiniteLossError"]


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix."""


class NonFiniteLossError(RuntimeError):
    """A training run's loss became NaN or infinite; the message names the run and the step.

    Raised by :func:`pyrostruct.infer.engine.train`, the one training loop, for
    every caller (``fit``, ``select``, ``discover``, ...). Usual fixes: a lower
    learning rate, a higher temperature, a model whose supports match the data.
    """
