"""Safe file output: atomic writes with ordinary permissions, and output-path checks.

A run that is interrupted (Ctrl-C, a kill, a crash) never leaves a
half-written output file: either the old file (or none) or the complete new
one is on disk. The new file gets the permissions a plain ``open(path, "w")``
would give it: those of the file it replaces, or ``0o666`` less the umask.

:func:`check_output_paths` is what every command calls before any work: no
output may be an input or another output, and every output location must be
writable, so that a long run never ends in a lost input or an unwritable path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pyrostruct.errors import InputError

__all__ = [
    "atomic_open",
    "atomic_write_json",
    "atomic_save",
    "check_output_paths",
    "check_finite_json",
    "figure_format",
    "save_figure",
]

#: Figure formats by file suffix, and the metadata that keeps each file the same
#: from run to run (PDF and SVG otherwise stamp the creation date).
_FIGURE_FORMATS = {
    ".png": {},
    ".pdf": {"CreationDate": None, "ModDate": None},
    ".svg": {"Date": None},
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` leaves: the existing file's, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _is_file(path: Path) -> bool:
    """``path`` exists and is not a folder (``False`` where it cannot be looked at)."""
    try:
        return path.exists() and not path.is_dir()
    except OSError:
        return False


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    Errors creating the file name ``path``, not the temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports mode 'w' or 'wb', got {mode!r}")
    shown = os.fspath(path)
    path = Path(os.path.realpath(path))  # write through symbolic links, keep them
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, f"cannot write {shown}: not a regular file")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        reason = e.strerror
        blocker = next((p for p in directory.parents[::-1] + (directory,)
                        if _is_file(p)), None)  # fmt: skip
        if blocker is not None:  # mkdir's own words ("File exists") name neither
            reason = f"{blocker} is a file, not a folder"
        raise OSError(e.errno, f"cannot write {shown}: {reason}") from None
    try:
        os.fchmod(fd, _new_file_mode(path))
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_finite_json(obj: Any, where: str = "output") -> None:
    """Raise :class:`InputError` if ``obj`` holds a NaN or infinite float (JSON has none)."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise InputError(f"{where} is {obj}; refusing to write a non-finite value")
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            check_finite_json(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_finite_json(value, f"{where}[{i}]")


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    """Write ``obj`` as strict JSON to ``path`` atomically.

    Raises :class:`InputError` naming the entry, and writes nothing, if ``obj``
    holds NaN or an infinite value (which ``json.dump`` would write as the
    non-JSON tokens ``NaN`` / ``Infinity``).
    """
    check_finite_json(obj, os.fspath(path))
    dump_kwargs.setdefault("indent", 2)
    with atomic_open(path, "w") as f:
        json.dump(obj, f, allow_nan=False, **dump_kwargs)


def atomic_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (for checkpoints)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def figure_format(path: str | os.PathLike, *, flag: str = "figure") -> str:
    """``"png"``, ``"pdf"`` or ``"svg"`` from ``path``'s suffix; :class:`InputError` (naming
    ``flag``) otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FIGURE_FORMATS:
        raise InputError(
            f"{flag} {os.fspath(path)}: cannot tell the figure format from "
            f"{suffix or 'a name without suffix'!r}; name the file .png, .pdf or .svg"
        )
    return suffix[1:]


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """Save a matplotlib figure atomically, in the format its suffix names, reproducibly
    (no time stamps in the file: same figure, same bytes)."""
    import matplotlib

    fmt = figure_format(path)
    # svg.hashsalt: SVG element ids are random otherwise
    with matplotlib.rc_context({"svg.hashsalt": "pyrostruct"}), atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, metadata=_FIGURE_FORMATS[f".{fmt}"], **savefig_kwargs)


def _resolve(flag: str, value) -> Path:
    """``value`` with symbolic links followed; :class:`InputError` naming ``flag`` for a
    path that cannot be resolved (a loop of links, a component that is not a folder)."""
    try:
        os.stat(value)
    except (FileNotFoundError, NotADirectoryError):
        pass  # to be created, or refused with a reason by _writable_location
    except OSError as e:
        raise InputError(f"{flag} {os.fspath(value)}: {e.strerror}") from None
    return Path(os.path.realpath(value))


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _writable_location(path: Path) -> str | None:
    """Why ``path`` cannot be written (``None`` if it can): the reason, in words."""
    if path.is_dir():
        return "is a directory"
    if path.exists() and not path.is_file():
        return "is not a regular file (a device, a pipe or a socket); name a file"
    if path.exists() and not os.access(path, os.W_OK):
        return "is not writable (permission denied)"
    parent = path.parent
    while not parent.exists():  # atomic_open creates missing folders
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {os.fspath(parent)} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: no permission to write in {os.fspath(parent)}"
    try:  # what atomic_open will do; access() says yes to root, and in /proc or /sys
        fd, probe = tempfile.mkstemp(prefix=".pyrostruct-probe.", suffix=".tmp", dir=parent)
    except OSError as e:
        return (f"cannot be created: {os.fspath(parent)} takes no files ({e.strerror}); name a "
                "file in a folder you can write to")
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_paths(
    inputs: Mapping[str, str | os.PathLike | None],
    outputs: Mapping[str, str | os.PathLike | None],
) -> None:
    """Refuse, before any work, outputs that would destroy data or cannot be written.

    ``inputs`` and ``outputs`` map what to call each path in a message (a
    flag such as ``"--out"``) to the path (``None`` entries are skipped). An
    output may not resolve (symbolic links followed) to an input or to another
    output, may not be a directory, and its folder must be writable (missing
    folders are created when the output is written).

    :raises InputError: with the flag and the path.
    """
    for flag, value in outputs.items():
        text = os.fspath(value) if value is not None else None
        if text is not None and (not text.strip() or text.endswith(("/", os.sep))):
            raise InputError(f"{flag} {text!r} does not name a file")
    ins = {k: _resolve(k, v) for k, v in inputs.items() if v is not None}
    outs = {k: _resolve(k, v) for k, v in outputs.items() if v is not None}
    for flag, path in outs.items():
        shown = os.fspath(outputs[flag])
        for in_flag, in_path in ins.items():
            if _same_file(path, in_path):
                raise InputError(
                    f"{flag} {shown} is the input file {os.fspath(inputs[in_flag])}; "
                    "choose another output path (the input would be overwritten)"
                )
        reason = _writable_location(path)
        if reason is not None:
            raise InputError(f"{flag} {shown} {reason}")
    flags = list(outs)
    for i, a in enumerate(flags):
        for b in flags[i + 1 :]:
            if _same_file(outs[a], outs[b]):
                raise InputError(
                    f"{a} and {b} name the same file ({os.fspath(outputs[a])}); "
                    "give each output its own path"
                )
