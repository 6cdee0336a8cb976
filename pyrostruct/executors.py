"""Where independent fits run: ``"serial"``, ``"process"``, ``"ray"``.

Used by the model-selection sweeps (:func:`pyrostruct.selection.select`) and the
restarts of :func:`pyrostruct.causal.discover`. An executor maps a module-level
task function over picklable payloads, with a shared *context* (the candidate
models and the data) that may hold closures and lambdas:

* ``"serial"``: in this process, one task after another.
* ``"process"``: a pool of forked worker processes (Linux/macOS ``fork``), one
  torch thread per worker so that workers do not oversubscribe the cores. The
  context reaches the workers through ``fork``, so it needs no pickling; the
  payloads and results are plain tensors and numbers.
* ``"ray"``: Ray tasks (``pip install "pyrostruct[ray]"``), on the cluster
  that ``ray.init`` connected to (a local one is started when none is). The
  context is shipped once with ``ray.put`` (cloudpickle handles closures).

Every task seeds its own random number generators from the sweep's seed, the
candidate and the restart, so the three executors return the same result for
the same seed (up to floating-point summation order across thread counts).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from pyrostruct.errors import InputError

__all__ = ["EXECUTORS", "executor_session", "check_executor", "check_workers"]

EXECUTORS = ("serial", "process", "ray")

_CONTEXT: Any = None  # the shared context of the current process pool (inherited by fork)


def check_executor(executor: str) -> str:
    """Validate an executor name; raise :class:`InputError` naming the choices."""
    if executor not in EXECUTORS:
        raise InputError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError(
                "executor 'ray' needs Ray: pip install 'pyrostruct[ray]' (or use 'process')"
            ) from None
    if executor == "process" and "fork" not in multiprocessing.get_all_start_methods():
        raise InputError("executor 'process' needs the 'fork' start method; use 'serial' here")
    return executor


def check_workers(workers) -> None:
    """Refuse a worker count that is neither ``None`` nor a positive integer."""
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InputError(f"workers must be a positive integer, got {workers!r}")


def _worker_init(context) -> None:
    global _CONTEXT
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    _CONTEXT = context


def _call_in_worker(func, payload):
    return func(_CONTEXT, payload)


@contextlib.contextmanager
def executor_session(
    executor: str, context: Any, *, max_workers: int | None = None
) -> Iterator[Callable[[Callable, Sequence[Any]], list[Any]]]:
    """Yield ``run(func, payloads, callback=None) -> [func(context, p) for p in payloads]``.

    ``callback(payload, result)`` is called as each task finishes (in completion order).

    :raises InputError: an unknown executor, or ``max_workers`` not a positive integer.
    """
    check_executor(executor)
    check_workers(max_workers)
    if executor == "serial":

        def run_serial(func, payloads, callback=None):
            out = []
            for p in payloads:
                out.append(func(context, p))
                if callback is not None:
                    callback(p, out[-1])
            return out

        yield run_serial
        return
    if executor == "process":
        workers = max_workers or max(1, min(os.cpu_count() or 1, 8))
        ctx = multiprocessing.get_context("fork")
        # fork copies the context; initargs are not pickled under fork
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_worker_init, initargs=(context,)
        ) as pool:

            def run(func, payloads, callback=None):
                futures = [pool.submit(_call_in_worker, func, p) for p in payloads]
                owner = {f: p for f, p in zip(futures, payloads)}
                for f in as_completed(futures):
                    if callback is not None:
                        callback(owner[f], f.result())
                return [f.result() for f in futures]

            yield run
        return
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=max_workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        context_ref = ray.put(context)

        @ray.remote(num_cpus=1)
        def remote_call(func, ctx, payload):
            import torch

            torch.set_num_threads(1)
            return func(ctx, payload)

        def run(func, payloads, callback=None):
            refs = [remote_call.remote(func, context_ref, p) for p in payloads]
            owner = dict(zip(refs, payloads))
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                if callback is not None:
                    callback(owner[done[0]], ray.get(done[0]))
            return ray.get(refs)

        yield run
    finally:
        if started:
            ray.shutdown()
