"""Shared harness for pyrostruct benchmarks.

A benchmark script measures pyrostruct and its peer (or the work floor) in the
same process run, so that their ratio is meaningful on whatever machine runs
it. Each script builds a :class:`Report`, fills it with rows, and calls
:meth:`Report.write`, which prints a markdown table and writes it to
``benchmarks/results/<name>.md`` together with a description of the machine.

Usage from a script::

    from harness import Report, parse_args, time_call

    args = parse_args("dag_sampling", __doc__)
    report = Report("dag_sampling", quick=args.quick, command=args.command)
    t = time_call(lambda: f(x), warmup=2, repeats=5)   # median seconds
    report.add_row({"d": 10, "pyrostruct ms": 1e3 * t.median, ...})
    report.write(headline="rsample+backward / floor at d=1000: 3.2x")
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.util
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

__all__ = [
    "Timing", "time_call", "peak_memory", "in_fresh_process", "machine_info", "Report",
    "parse_args",
]  # fmt: skip


@dataclasses.dataclass
class Timing:
    """Wall-clock seconds of repeated calls (after warm-up)."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(times)


def use_exact_memory_accounting() -> None:
    """Make glibc return freed blocks of >= 64 KiB to the OS at once.

    By default glibc raises its mmap threshold after frees and keeps large
    freed blocks in the heap, so the resident set stops tracking what a
    function allocates. Fixing the threshold makes :func:`peak_memory` of
    tensor allocations exact to a page. It also makes every large allocation
    a system call, which slows allocation-heavy code (``discover`` at d = 100:
    2.2x), so only benchmarks that measure memory call it, first thing.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 65536)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def _limit_threads(threads: int | None) -> None:
    """Set torch's and numpy/BLAS's threads (threadpoolctl, when installed): ``--threads``."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # not installed: peers use their BLAS's default threads
        pass


def in_fresh_process(
    fn: Callable[..., Any], *args, threads: int | None = None, timeout: float | None = None
) -> Any:
    """``fn(*args)`` in a new (spawned) Python process with ``threads`` threads: its result,
    or ``None`` when it runs past ``timeout`` seconds (the process is then stopped).

    For a timing and a peak memory from one call with glibc's normal allocator: the call
    starts in a process with nothing of earlier sizes in its heap, so :func:`peak_memory`
    is close to exact without :func:`use_exact_memory_accounting` (which makes
    allocation-heavy code several times slower: the order search of ``discover`` at
    d = 200 took 35.8 s under it, 7.3 s without). ``fn`` must be importable (a
    module-level function of a script in ``benchmarks/``).

    :raises RuntimeError: ``fn`` raised (its traceback in the message) or the process died.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(send, fn, args, threads))
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            return None
        ok, value = receive.recv()
    except EOFError:
        raise RuntimeError(f"{fn.__name__} died in its process") from None
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
    if not ok:
        raise RuntimeError(f"{fn.__name__} failed in its process:\n{value}")
    return value


def _call_and_send(connection, fn, args, threads) -> None:
    import traceback

    _limit_threads(threads)
    try:
        connection.send((True, fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        connection.send((False, traceback.format_exc()))


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes that ``fn`` adds to the process while it runs.

    On a GPU: ``torch.cuda.max_memory_allocated``. On the CPU (Linux): the
    growth of the peak resident set (``VmHWM``, reset through
    ``/proc/self/clear_refs``) over the resident set before the call. Returns
    -1 where neither is available.
    """
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _proc_status_bytes("VmRSS:")
        fn()
        return max(0, _proc_status_bytes("VmHWM:") - base)
    except OSError:
        fn()
        return -1


def machine_info() -> dict[str, str]:
    """CPU model, cores, Python, torch version and threads of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def _format(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100 or value == 0:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as a GitHub markdown table (columns in first-seen order)."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


class Report:
    """Rows of one benchmark run, printed and written as markdown."""

    def __init__(self, name: str, *, quick: bool, command: str | None = None) -> None:
        self.name = name
        self.quick = quick
        self.command = command or " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        print(" ".join(f"{k}={_format(v)}" for k, v in row.items()), flush=True)

    def add_note(self, note: str) -> None:
        self.notes.append(note)

    def render(self, headline: str = "") -> str:
        size = "quick" if self.quick else "full"
        parts = [f"# Benchmark `{self.name}` ({size} size)\n"]
        if headline:
            parts.append(f"**{headline}**\n")
        parts.append(markdown_table(self.rows))
        for note in self.notes:
            parts.append(f"- {note}")
        parts.append("\n## Machine\n")
        parts += [f"- {k}: {v}" for k, v in machine_info().items()]
        parts.append(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
        parts.append(f"- command: `{self.command}`\n")
        return "\n".join(parts)

    def write(self, headline: str = "", directory: Path | None = None) -> Path:
        """Print the table and write it atomically to ``results/<name>[-quick].md``.

        A hand-written section of the old file that starts with a ``## Notes``
        heading (notes on earlier measurements) is kept, at the end.
        """
        text = self.render(headline)
        print(text)
        directory = Path(directory) if directory is not None else RESULTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        suffix = "-quick" if self.quick else ""
        path = directory / f"{self.name}{suffix}.md"
        if path.exists():
            old = path.read_text()
            at = old.find("\n## Notes")
            if at >= 0:
                text = text.rstrip("\n") + "\n" + old[at:]
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path


def parse_args(name: str, description: str | None = None, argv: Sequence[str] | None = None):
    """Common flags: ``--quick`` (a few minutes on 2 cores), ``--threads``, ``--seed`` and
    ``--sizes``."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes on 2 cores)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numpy/BLAS threads (default: all)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="problem sizes (default: the script's)"
    )
    args = parser.parse_args(argv)
    args.command = " ".join(
        shlex.quote(a) for a in ["python", f"benchmarks/{name}.py", *(argv or sys.argv[1:])]
    )
    _limit_threads(args.threads)  # pyrostruct (torch) and numpy/scipy peers alike
    return args


def load_script(path: Path, name: str):
    """Import a script that is not in a package (a reference model, a copied example)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
