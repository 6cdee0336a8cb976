"""Metrics for estimated causal graphs against a known truth.

All functions take adjacency matrices with ``A[i, j] = 1`` meaning ``i -> j``
(numpy arrays, torch tensors or networkx ``DiGraph``s over nodes ``0..d-1`` /
the same node list). Conventions (as in NOTEARS / DAGMA evaluations):

- **SHD** (structural Hamming distance) counts, over unordered node pairs, the
  pairs whose edge status differs (missing, extra, or reversed edge each count
  1).
- **TPR** = correctly oriented predicted edges / true edges.
- **FDR** = (predicted edges that are absent or reversed in the truth) /
  predicted edges (0 when nothing is predicted).
- **AUROC / AUPRC** score edge probabilities ``P(i -> j)`` over the ``d (d - 1)``
  ordered pairs; AUPRC is the average precision (step interpolation, as
  scikit-learn's ``average_precision_score``).
- **Expected SHD** is the posterior mean of SHD over sampled DAGs.
- **CPDAG SHD** is the SHD between the CPDAGs (Markov equivalence classes) of
  the two DAGs, a reversible edge being one status of its own: it counts only
  what observational data can identify (as reported for PC and GES).
"""

from __future__ import annotations

import numpy as np

from pyrostruct.errors import InputError

__all__ = [
    "shd",
    "shd_cpdag",
    "shd_essential",
    "tpr",
    "fdr",
    "auroc",
    "auprc",
    "calibration_error",
    "expected_shd",
    "evaluate",
]


def _as_adj(a, d: int | None = None) -> np.ndarray:
    try:
        import networkx as nx

        if isinstance(a, nx.DiGraph):
            return nx.to_numpy_array(a, nodelist=list(a.nodes), weight=None)
    except ImportError:  # pragma: no cover
        pass
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise InputError(f"expected square adjacency matrices (..., d, d), got shape {a.shape}")
    if d is not None and a.shape[-1] != d:
        raise InputError(f"adjacency has {a.shape[-1]} nodes, expected {d}")
    return a


def _pair_codes(a: np.ndarray) -> np.ndarray:
    """Per unordered pair i < j: 0 none, 1 i->j, 2 j->i, 3 both."""
    b = (a != 0).astype(np.int64)
    return b + 2 * np.swapaxes(b, -1, -2)


def shd(true, est) -> int | np.ndarray:
    """Structural Hamming distance; a reversed edge counts 1.

    ``est`` may carry a leading batch dimension (``(S, d, d)``); then one SHD per
    sample is returned.

    Example::

        >>> shd([[0, 1], [0, 0]], [[0, 0], [1, 0]])
        1
    """
    t = _as_adj(true)
    e = _as_adj(est, t.shape[-1])
    iu = np.triu_indices(t.shape[-1], k=1)
    diff = _pair_codes(t)[iu] != _pair_codes(e)[(..., *iu)]
    out = diff.sum(-1)
    return int(out) if np.ndim(out) == 0 else out


def shd_cpdag(true, est) -> int:
    """SHD between the CPDAGs of two DAGs (:func:`pyrostruct.causal.equivalence.cpdag`).

    Zero exactly when the DAGs are Markov equivalent.

    Example::

        >>> shd_cpdag([[0, 1], [0, 0]], [[0, 0], [1, 0]])  # equivalent
        0
    """
    from pyrostruct.causal.equivalence import cpdag

    t = _as_adj(true)
    e = _as_adj(est, t.shape[-1])
    return shd(cpdag(t), cpdag(e))


def shd_essential(true, est, targets) -> int:
    """SHD between the I-essential graphs of two DAGs for perfect interventions on
    ``targets`` (:func:`pyrostruct.causal.equivalence.interventional_essential_graph`):
    zero exactly when the DAGs are interventionally Markov equivalent. ``est`` may also be
    an I-essential graph itself (an edge both ways is undirected), as GIES returns.

    Example::

        >>> shd_essential([[0, 1], [0, 0]], [[0, 0], [1, 0]], [[1]])  # do(X1) orients X0 -> X1
        1
    """
    from pyrostruct.causal.equivalence import interventional_essential_graph

    t = _as_adj(true)
    e = _as_adj(est, t.shape[-1]) != 0
    if (e & e.T).any():  # already a partially directed graph
        return shd(interventional_essential_graph(t, targets), e)
    return shd(
        interventional_essential_graph(t, targets), interventional_essential_graph(e, targets)
    )


def calibration_error(true, probs, bins: int = 10) -> float:
    """Expected calibration error of edge probabilities over ordered pairs: the mean over
    equal-width probability bins of ``|mean P - share of true edges|``, weighted by the
    pairs in each bin (Naeini et al., AAAI 2015)."""
    scores, labels = _scores_labels(true, probs)
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(scores[inside].mean() - labels[inside].mean())
    return float(total / max(len(scores), 1))


def _counts(true, est):
    t = _as_adj(true) != 0
    e = _as_adj(est, t.shape[-1]) != 0
    np.fill_diagonal(e, False)
    tp = int((t & e).sum())
    return tp, int(t.sum()), int(e.sum())


def tpr(true, est) -> float:
    """True-positive rate: correctly oriented predicted edges / true edges."""
    tp, n_true, _ = _counts(true, est)
    return tp / n_true if n_true else 1.0


def fdr(true, est) -> float:
    """False-discovery rate: predicted edges not in the truth (as oriented) / predicted."""
    tp, _, n_pred = _counts(true, est)
    return (n_pred - tp) / n_pred if n_pred else 0.0


def _scores_labels(true, probs):
    t = _as_adj(true)
    p = _as_adj(probs, t.shape[-1])
    off = ~np.eye(t.shape[-1], dtype=bool)
    return p[off], (t[off] != 0).astype(np.int64)


def _curve(scores, labels):
    """Cumulative TP/FP at each distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    distinct = np.flatnonzero(np.diff(scores)) if scores.size else np.array([], dtype=int)
    ends = np.r_[distinct, labels.size - 1]
    tps = np.cumsum(labels)[ends]
    fps = (ends + 1) - tps
    return tps, fps


def auroc(true, probs) -> float:
    """Area under the ROC curve of edge probabilities over ordered pairs (ties averaged)."""
    scores, labels = _scores_labels(true, probs)
    pos, neg = labels.sum(), labels.size - labels.sum()
    if pos == 0 or neg == 0:
        return float("nan")
    tps, fps = _curve(scores, labels)
    tpr_ = np.r_[0, tps] / pos
    fpr_ = np.r_[0, fps] / neg
    return float(np.trapezoid(tpr_, fpr_) if hasattr(np, "trapezoid") else np.trapz(tpr_, fpr_))


def auprc(true, probs) -> float:
    """Average precision of edge probabilities: ``sum_k (R_k - R_{k-1}) P_k``."""
    scores, labels = _scores_labels(true, probs)
    pos = labels.sum()
    if pos == 0:
        return float("nan")
    tps, fps = _curve(scores, labels)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def expected_shd(true, dags) -> float:
    """Posterior expected SHD: the mean of :func:`shd` over sampled DAGs ``(S, d, d)``."""
    dags = _as_adj(dags)
    if dags.ndim == 2:
        dags = dags[None]
    return float(np.mean(shd(true, dags)))


def evaluate(true, est, probs=None, dags=None) -> dict[str, float]:
    """All metrics in one dict: ``shd, tpr, fdr, nnz`` and, given ``probs`` /
    ``dags``, ``auroc, auprc`` / ``expected_shd``."""
    out = {
        "shd": float(shd(true, est)),
        "tpr": tpr(true, est),
        "fdr": fdr(true, est),
        "nnz": float((_as_adj(est) != 0).sum()),
    }
    if probs is not None:
        out["auroc"] = auroc(true, probs)
        out["auprc"] = auprc(true, probs)
    if dags is not None:
        out["expected_shd"] = expected_shd(true, dags)
    return out
