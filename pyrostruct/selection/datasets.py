"""Seeded synthetic data with a known component count, for tests, tutorials and benchmarks."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["make_gmm_data", "make_hmm_data", "make_ppca_data", "state_accuracy"]


def make_gmm_data(
    n: int, k: int, d: int = 2, *, separation: float = 8.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points from ``k`` unit-variance Gaussian clusters in ``d`` dimensions.

    Cluster centers are drawn uniformly in a box and redrawn until every pair
    is at least ``separation`` apart (in units of the within-cluster standard
    deviation; about 3 gives overlapping clusters, 8 well-separated ones).
    Cluster sizes are balanced (each at least ``n // (2k)``). Returns
    ``(data (n, d), labels (n,))``.
    """
    rng = np.random.default_rng(seed)
    box = separation * max(1.0, k ** (1.0 / d))
    centers = []
    tries = 0
    while len(centers) < k:
        c = rng.uniform(-box, box, size=d)
        if all(np.linalg.norm(c - o) >= separation for o in centers):
            centers.append(c)
        tries += 1
        if tries > 10000:  # grow the box rather than loop forever
            box *= 1.2
            tries = 0
    minimum = n // (2 * k)
    extra = rng.multinomial(n - minimum * k, np.ones(k) / k)
    sizes = minimum + extra
    labels = np.repeat(np.arange(k), sizes)
    x = np.asarray(centers)[labels] + rng.normal(size=(n, d))
    perm = rng.permutation(n)
    return x[perm], labels[perm]


def make_ppca_data(
    n: int, d: int, rank: int, *, noise: float = 1.0, signal: tuple = (2.0, 4.0), seed: int = 0
) -> np.ndarray:
    """``n`` points ``x = W z + noise * e`` with ``rank`` orthogonal loadings in ``d`` dimensions.

    The loading columns are orthonormal directions scaled so that the signal
    standard deviations lie evenly in ``signal`` (times ``noise``): every
    component is detectable, the weakest at ``signal[0]`` noise units.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    scales = noise * np.linspace(signal[1], signal[0], rank)
    w = q * scales
    z = rng.normal(size=(n, rank))
    return z @ w.T + noise * rng.normal(size=(n, d)) + rng.normal(size=d)


def make_hmm_data(
    num_sequences: int = 20,
    max_length: int = 10,
    data_dim: int = 6,
    hidden_dim: int = 3,
    seed: int = 0,
):
    """Sequences of a sticky HMM in the layout of Pyro's ``examples/hmm.py``.

    Hidden state ``h`` stays with probability 0.9 and lights tones ``2h`` and
    ``2h + 1`` with probability 0.9 (others 0.05). Lengths are uniform in
    ``max_length // 2 .. max_length``. Returns torch tensors ``(sequences
    (num_sequences, max_length, data_dim), lengths (num_sequences,), states
    (num_sequences, max_length))``.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    trans = torch.full((hidden_dim, hidden_dim), 0.1 / (hidden_dim - 1))
    trans.fill_diagonal_(0.9)
    emit = torch.full((hidden_dim, data_dim), 0.05)
    for h in range(hidden_dim):
        emit[h, 2 * h : 2 * h + 2] = 0.9
    lengths = torch.randint(max_length // 2, max_length + 1, (num_sequences,), generator=g)
    sequences = torch.zeros(num_sequences, max_length, data_dim)
    states = torch.zeros(num_sequences, max_length, dtype=torch.long)
    for i in range(num_sequences):
        x = torch.randint(hidden_dim, (), generator=g)
        for t in range(max_length):
            if t:
                x = torch.multinomial(trans[x], 1, generator=g)[0]
            states[i, t] = x
            sequences[i, t] = torch.bernoulli(emit[x], generator=g)
    return sequences, lengths, states


def state_accuracy(decoded, states, lengths, hidden_dim: int = 3) -> float:
    """Share of the observed time steps whose decoded state is right, under the best
    relabelling of the hidden states (their labels are arbitrary)."""
    import torch

    states = states[:, : decoded.shape[1]]
    mask = torch.arange(decoded.shape[1]) < lengths[:, None]
    return max(
        ((torch.tensor(perm)[decoded] == states) & mask).sum().item() / mask.sum().item()
        for perm in itertools.permutations(range(hidden_dim))
    )
