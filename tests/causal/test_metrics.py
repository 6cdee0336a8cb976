"""Metrics against hand-computed cases (and scikit-learn for the curve areas)."""

import networkx as nx
import numpy as np
import pytest
import torch

from pyrostruct.causal import metrics

TRUE = np.array(
    [
        [0, 1, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ]
)  # 0->1, 0->2, 1->3, 2->3


def test_shd_hand_cases():
    assert metrics.shd(TRUE, TRUE) == 0
    rev = TRUE.copy()
    rev[0, 1], rev[1, 0] = 0, 1  # reverse 0->1
    assert metrics.shd(TRUE, rev) == 1
    missing = TRUE.copy()
    missing[2, 3] = 0
    assert metrics.shd(TRUE, missing) == 1
    extra = TRUE.copy()
    extra[0, 3] = 1
    assert metrics.shd(TRUE, extra) == 1
    both = rev.copy()
    both[0, 3] = 1
    both[2, 3] = 0
    assert metrics.shd(TRUE, both) == 3
    assert metrics.shd(TRUE, np.zeros((4, 4))) == 4
    # torch tensors, networkx graphs and a batch of estimates
    assert metrics.shd(torch.tensor(TRUE), nx.DiGraph(rev)) == 1
    assert list(metrics.shd(TRUE, np.stack([TRUE, rev, both]))) == [0, 1, 3]


def test_tpr_fdr_hand_cases():
    est = np.zeros((4, 4))
    est[0, 1] = 1  # correct
    est[3, 1] = 1  # reversed 1->3
    est[1, 2] = 1  # extra
    assert metrics.tpr(TRUE, est) == pytest.approx(1 / 4)
    assert metrics.fdr(TRUE, est) == pytest.approx(2 / 3)
    assert metrics.fdr(TRUE, np.zeros((4, 4))) == 0.0
    assert metrics.tpr(TRUE, TRUE) == 1.0


def test_auprc_auroc_hand_case():
    probs = np.zeros((4, 4))
    # true edges get 0.9, 0.8, 0.4, 0.3; one false pair 0.5; others 0
    probs[0, 1], probs[0, 2], probs[1, 3], probs[2, 3] = 0.9, 0.8, 0.4, 0.3
    probs[3, 0] = 0.5
    # ranking: T T F T T then 7 negatives tied at 0
    # AP = (1/4)(1 + 1 + 3/4 + 4/5)
    assert metrics.auprc(TRUE, probs) == pytest.approx(0.25 * (1 + 1 + 0.75 + 0.8))
    # AUROC: 8 negatives; positives above 0.5: 2 (beat all 8), below: 2 (beat 7 of 8)
    assert metrics.auroc(TRUE, probs) == pytest.approx((2 * 8 + 2 * 7) / (4 * 8))
    assert metrics.auprc(TRUE, TRUE) == pytest.approx(1.0)


def test_curve_areas_match_scikit_learn_with_ties():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    true = (rng.random((12, 12)) < 0.2).astype(int)
    np.fill_diagonal(true, 0)
    probs = np.round(rng.random((12, 12)), 1)  # many ties
    off = ~np.eye(12, dtype=bool)
    assert metrics.auprc(true, probs) == pytest.approx(
        skm.average_precision_score(true[off], probs[off])
    )
    assert metrics.auroc(true, probs) == pytest.approx(skm.roc_auc_score(true[off], probs[off]))


def test_expected_shd_and_evaluate():
    rev = TRUE.copy()
    rev[0, 1], rev[1, 0] = 0, 1
    dags = np.stack([TRUE, TRUE, rev, np.zeros((4, 4))])
    assert metrics.expected_shd(TRUE, dags) == pytest.approx((0 + 0 + 1 + 4) / 4)
    out = metrics.evaluate(TRUE, rev, probs=TRUE * 0.9, dags=dags)
    assert out["shd"] == 1 and out["auprc"] == pytest.approx(1.0) and out["nnz"] == 4
    with pytest.raises(ValueError, match="square"):
        metrics.shd(TRUE, np.zeros((4, 3)))


def test_shd_essential_counts_what_the_interventions_identify():
    from pyrostruct.causal.metrics import shd_essential

    chain = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    reversed_chain = chain.T
    assert shd_essential(chain, reversed_chain, []) == 0  # Markov equivalent
    assert shd_essential(chain, reversed_chain, [[0]]) == 2  # do(X0) orients both edges
    # do(X0, X1) cuts only X1 - X2; in the reversed chain Meek then orients X1 -> X0 too
    assert shd_essential(chain, reversed_chain, [[0, 1]]) == 2
    essential = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])  # GIES-style output
    assert shd_essential(chain, essential, []) == 0
    assert shd_essential(chain, essential, [[2]]) == 1


def test_calibration_error_exact():
    from pyrostruct.causal.metrics import calibration_error

    truth = np.array([[0, 1], [0, 0]])
    assert calibration_error(truth, np.array([[0, 1.0], [0.0, 0]])) == 0.0
    # pairs (0,1) P 0.9 true, (1,0) P 0.9 false: one bin, mean P 0.9 vs share 0.5
    assert calibration_error(truth, np.array([[0, 0.9], [0.9, 0]])) == pytest.approx(0.4)
    # two bins: |0.8 - 1| and |0.2 - 0|, weighted equally
    assert calibration_error(truth, np.array([[0, 0.8], [0.2, 0]])) == pytest.approx(0.2)
