"""Seeded synthetic data with a known component count, and reference mixture models with
their exact evidence, for tests, tutorials and benchmarks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate

__all__ = [
    "TUTORIAL_GMM_DATA",
    "make_gmm_data",
    "make_hmm_data",
    "make_ppca_data",
    "make_sparse_regression",
    "mixture_model",
    "state_accuracy",
    "tutorial_gmm",
    "tutorial_gmm_log_evidence",
]

#: The five points of Pyro's Gaussian mixture tutorial.
TUTORIAL_GMM_DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])


def tutorial_gmm(K: int, loc_prior=None):
    """The model of Pyro's Gaussian mixture tutorial with ``K`` components.

    ``weights ~ Dirichlet(0.5)``, ``scale ~ LogNormal(0, 2)``, ``locs_k ~ N(loc_prior
    (default 0), 10^2)``, ``assignment_i ~ Categorical(weights)`` (marked for
    enumeration), ``obs_i ~ N(locs[assignment_i], scale^2)``, with the tutorial's
    ``locs[assignment]`` indexing. Its exact evidence is
    :func:`tutorial_gmm_log_evidence`.
    """

    @config_enumerate
    def model(data):
        weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
        with pyro.plate("components", K):
            locs = pyro.sample(
                "locs", dist.Normal(loc_prior if loc_prior is not None else 0.0, 10.0)
            )
        with pyro.plate("data", len(data)):
            assignment = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)

    return model


def tutorial_gmm_log_evidence(K: int, data=TUTORIAL_GMM_DATA) -> float:
    """``log p(data | K)`` of :func:`tutorial_gmm`, exact up to quadrature error (~1e-6).

    All ``K^n`` assignments are summed; given one, the weights integrate in
    closed form (Dirichlet-multinomial) and so do the locations (each cluster's
    points are jointly Gaussian, ``N(0, s^2 I + 10^2 11^T)``); the scale ``s``
    is integrated by quadrature on a grid of ``log s``. For small ``n`` only
    (``K^n`` terms).
    """
    data = torch.as_tensor(data).double()
    n = len(data)
    log_s = torch.linspace(-12.0, 8.0, 4001, dtype=torch.float64)
    log_prior = dist.Normal(0.0, 2.0).log_prob(log_s) + math.log(float(log_s[1] - log_s[0]))
    a = torch.full((K,), 0.5, dtype=torch.float64)
    terms = []
    for z in itertools.product(range(K), repeat=n):
        z = torch.tensor(z)
        counts = torch.bincount(z, minlength=K).double()
        lw = torch.lgamma(a.sum()) - torch.lgamma(a.sum() + n)
        lw = lw + (torch.lgamma(a + counts) - torch.lgamma(a)).sum()
        ll = torch.zeros_like(log_s)
        for k in range(K):
            xs = data[z == k]
            if len(xs):
                eye = torch.eye(len(xs), dtype=torch.float64)
                cov = log_s.exp()[:, None, None] ** 2 * eye + 100.0 * torch.ones_like(eye)
                ll = ll + dist.MultivariateNormal(torch.zeros_like(xs), cov).log_prob(xs)
        terms.append(lw + torch.logsumexp(ll + log_prior, 0))
    return float(torch.logsumexp(torch.stack(terms), 0))


def mixture_model(K: int):
    """A ``d``-dimensional Gaussian mixture as a user writes it, for ``data`` of shape (n, d).

    ``weights ~ Dirichlet(1)``, ``locs_k ~ N(0, 10^2 I)``, ``scales_k ~ LogNormal(0,
    1)`` per dimension, ``z_i ~ Categorical(weights)`` (marked for enumeration),
    ``obs_i ~ N(locs[z_i], diag(scales[z_i])^2)``, with plain ``locs[z]`` indexing.
    """

    @config_enumerate
    def model(data):
        n, d = data.shape
        weights = pyro.sample("weights", dist.Dirichlet(torch.ones(K)))
        with pyro.plate("components", K):
            locs = pyro.sample("locs", dist.Normal(torch.zeros(d), 10.0).to_event(1))
            scales = pyro.sample("scales", dist.LogNormal(torch.zeros(d), 1.0).to_event(1))
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[z], scales[z]).to_event(1), obs=data)

    return model


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


def make_sparse_regression(n: int, p: int, k: int, *, noise: float = 1.0, seed: int = 0):
    """A linear regression with ``k`` of ``p`` predictors active: variable-selection data.

    ``X`` is standard normal ``(n, p)``; ``k`` coefficients, at a uniformly random
    support, have random signs and magnitudes uniform in ``[1, 2]``; the others are
    0; ``y = X beta + noise * eps``. Returns torch tensors ``(X, y, beta)``; the
    support is ``beta.nonzero()``.

    :raises ValueError: unless ``1 <= k <= p``.
    """
    if not 1 <= k <= p:
        raise ValueError(f"need 1 <= k <= p, got k={k}, p={p}")
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=generator)
    support = torch.randperm(p, generator=generator)[:k]
    beta = torch.zeros(p)
    signs = torch.where(torch.rand(k, generator=generator) < 0.5, -1.0, 1.0)
    beta[support] = signs * (1.0 + torch.rand(k, generator=generator))
    y = X @ beta + noise * torch.randn(n, generator=generator)
    return X, y, beta
