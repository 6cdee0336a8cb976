"""Reference data and models of pyrostruct.selection.datasets."""

import pytest
import torch

from pyrostruct.selection.datasets import make_sparse_regression


def test_sparse_regression_has_k_active_predictors_of_size_one_to_two():
    X, y, beta = make_sparse_regression(200, 30, 4, seed=3)
    assert X.shape == (200, 30) and y.shape == (200,)
    active = beta[beta != 0]
    assert len(active) == 4 and ((active.abs() >= 1) & (active.abs() <= 2)).all()
    residual = y - X @ beta
    assert abs(float(residual.std()) - 1.0) < 0.15  # unit noise
    again = make_sparse_regression(200, 30, 4, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((X, y, beta), again))


@pytest.mark.parametrize("k", [0, 31])
def test_sparse_regression_refuses_a_support_size_outside_1_to_p(k):
    with pytest.raises(ValueError, match="need 1 <= k <= p"):
        make_sparse_regression(10, 30, k)
