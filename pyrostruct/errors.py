"""Exceptions raised at pyrostruct's public boundary.

Every input problem a user can cause (a bad file, a bad column, a bad
argument) is reported as :class:`InputError`, a :class:`ValueError`, with a
message that says what is wrong and how to fix it. The command line turns it
into one line on stderr and exit code 2.
"""

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix."""
