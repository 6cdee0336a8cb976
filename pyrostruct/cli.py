"""The ``pyrostruct`` command line (also ``python -m pyrostruct``).

Each subcommand lives in its own module, which exposes
``add_subparser(subparsers)``; the subparser sets ``func`` to a function taking
the parsed namespace and returning an exit code. Modules are listed in
:data:`COMMAND_MODULES` and imported when the parser is built.

Errors a user can cause (bad arguments, unreadable or malformed input files)
print one line ``pyrostruct: error: ...`` to stderr and exit with code 2, with
no traceback; warnings print one line ``pyrostruct: warning: ...``. Ctrl-C
exits with code 130, its message on a line of its own (progress bars are
closed first). A training run whose loss becomes NaN or infinite
(:class:`~pyrostruct.errors.NonFiniteLossError`) prints one line too. Exit
codes: 0 done, 1 training diverged, 2 bad input or arguments (nothing
written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
import warnings
from collections.abc import Sequence

from pyrostruct import __version__
from pyrostruct.errors import NonFiniteLossError

__all__ = ["main", "build_parser", "COMMAND_MODULES", "UsageError"]

#: Modules that provide subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pyrostruct.commands.discover",
    "pyrostruct.commands.select_components",
    "pyrostruct.commands.suggest",
)

EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), and which takes options
    only as spelled: ``--thresh`` is not silently read as ``--threshold``.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = _Parser(
        prog="pyrostruct",
        description=(
            "Differentiable structural latents for Pyro: Gumbel-softmax latents, "
            "DAG distributions, sparse subspace VI and ELBO-based model selection."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pyrostruct {__version__}")
    if COMMAND_MODULES:
        subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
        for name in COMMAND_MODULES:
            sub = importlib.import_module(name).add_subparser(subparsers)
            sub.set_defaults(subparser=sub)
    return parser


def _close_progress_bars() -> None:
    """Close open tqdm bars so that the next message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _close_progress_bars()
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"pyrostruct: warning: {text}", file=sys.stderr)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    _close_progress_bars()
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "failed"
    print(f"pyrostruct: error: {first_line}", file=sys.stderr)
    return code


def _in_flags(message: str, args) -> str:
    """An API error message in the command line's words: a message that starts with a
    parameter name (``expected_edges must ...``) starts with its flag instead, and a
    keyword written as in Python (``use estimator='analytic'``) becomes the flag and its
    value (``use --estimator analytic``), and so do the parameters after "drop" (``drop
    steps`` -> ``drop --steps``)."""
    sub = getattr(args, "subparser", None)
    if sub is None:
        return message
    # a subcommand may name the API parameters its flags stand for (``api_names``)
    api_names = getattr(args, "api_names", {})
    flags = {}  # API parameter -> flag
    for action in sub._actions:  # argparse keeps its actions here (no public accessor)
        if action.option_strings:
            for name in [action.dest] + [k for k, v in api_names.items() if v == action.dest]:
                flags[name] = action.option_strings[-1]
    for name, flag in flags.items():  # quoted where a shell would read the value otherwise
        message = re.sub(rf"\b{re.escape(name)}='([^']*)'",
                         lambda m, flag=flag: f"{flag} {_shell_word(m.group(1))}", message)
    message = re.sub(  # "drop steps, lr" names parameters too
        r"\bdrop (\w+(?:, \w+)*)",
        lambda m: "drop " + ", ".join(flags.get(w, w) for w in m.group(1).split(", ")),
        message,
    )
    first, _, rest = message.partition(" ")
    colon = ":" if first.endswith(":") else ""
    flag = flags.get(first.rstrip(":"))
    return message if flag is None else f"{flag}{colon} {rest}"


def _shell_word(value: str) -> str:
    """``value`` as typed in a shell: bare when it is a plain word, else single-quoted."""
    return value if re.fullmatch(r"[\w.,:/+=@%-]+", value) else shlex.quote(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _fail(f"{e} (see 'pyrostruct --help')")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(func(args) or 0)
    except NonFiniteLossError as e:
        return _fail(str(e), EXIT_DIVERGED)
    except (ValueError, OSError) as e:
        # ValueError covers pyrostruct.errors.InputError; OSError covers missing,
        # unreadable or unwritable files.
        return _fail(_in_flags(str(e) or type(e).__name__, args))
    except KeyboardInterrupt:
        _close_progress_bars()
        print("pyrostruct: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
