"""Checkpoints of :func:`~pyrostruct.causal.discover`: which run wrote them, and loading
them without running code.

A checkpoint holds the estimator's state (tensors and plain data), the step, the ELBO
trace, the random state and the *fingerprint* of the run: a hash of the data, the
intervention mask and the settings that shape training. A checkpoint is resumed only by
the run with the same fingerprint; settings that shape only the result
(:data:`RESULT_SETTINGS`) may change between the two.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch

from pyrostruct.errors import InputError

__all__ = ["RESULT_SETTINGS", "run_fingerprint", "checkpoint_seed", "read_checkpoint"]

#: Settings that shape only the result built after training, not the training itself: a
#: checkpoint made with other values resumes (a finished one just rebuilds the result).
RESULT_SETTINGS = ("threshold", "num_samples", "checkpoint_every", "average_equivalent")


def run_fingerprint(x: np.ndarray, mask, config: dict) -> str:
    """A hash of the data, the mask and the settings that shape training."""
    config = {k: v for k, v in config.items() if k not in RESULT_SETTINGS}
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    if mask is not None:
        h.update(np.ascontiguousarray(mask).tobytes())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def checkpoint_seed(path) -> int | None:
    """The seed a checkpoint's run drew (``None`` when the file holds none or does not load:
    the fingerprint check then reports it)."""
    try:
        seed = torch.load(path, weights_only=True).get("seed")
    except Exception:  # noqa: BLE001 - read_checkpoint names the problem
        return None
    return int(seed) if isinstance(seed, int) else None


def read_checkpoint(path, fingerprint) -> dict:
    """The state a checkpoint of this run saved (tensors and plain data: loading it runs
    no code): ``fingerprint``, ``step``, ``elbo_trace``, ``rng`` and the estimator's
    :meth:`~pyrostruct.causal.estimators.Estimator.state_dict`."""
    try:
        state = torch.load(path, weights_only=True)
        ok = isinstance(state, dict) and "fingerprint" in state
    except Exception:  # a truncated or foreign file (torch's message advises unsafe loading)
        raise InputError(
            f"checkpoint {os.fspath(path)}: not a discover checkpoint (it does not load as "
            "plain tensors and numbers); delete it or pass another --checkpoint path"
        ) from None
    if not ok or state["fingerprint"] != fingerprint:
        raise InputError(
            f"checkpoint {os.fspath(path)} was written by a different run (other data or "
            "settings); delete it or pass another checkpoint path"
        )
    return state
