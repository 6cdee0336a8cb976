"""Fixtures of the causal tests."""

import pytest

from pyrostruct.causal import datasets


@pytest.fixture
def csv(tmp_path):
    """A 4-node CSV with 120 rows, half of them intervened on X1 (column ``regime``)."""
    ds = datasets.make_dataset(d=4, n=120, seed=0, interventions=[[1]])
    frame = ds.data.assign(regime=ds.intervention_column())
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path
