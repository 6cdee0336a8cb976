"""The registry of every pyrostruct distribution, as Pyro's ``tests/distributions/conftest.py``.

Each :class:`Fixture` names a distribution class, a few example parameter sets
(``examples``) and parameter sets that ``validate_args=True`` must refuse
(``bad_examples``). ``test_distributions.py`` runs the generic tests (shapes,
``expand``, support, ``log_prob`` of samples, validation, pickling,
``infer_shapes``) over all of them; the per-distribution test modules keep only
what is specific to one distribution. A new distribution joins the suite by
adding a ``Fixture`` here; ``test_every_distribution_is_registered`` fails until
it does.
"""

from __future__ import annotations

import pytest
import torch

from pyrostruct.distributions import (
    ConcreteBernoulli,
    ConcreteCategorical,
    ConcreteOneHotCategorical,
    DAGMixture,
    ErdosRenyiDAG,
    OrderedDAG,
    PartialOrderPlackettLuce,
    PlackettLuce,
    SmoothOrientationDAG,
    SparsityPenalty,
)

NAN = float("nan")
INF = float("inf")


class Fixture:
    """One distribution class with example parameters.

    :param pyro_dist: the distribution class.
    :param list examples: constructor keyword arguments, one dict per example;
        nested lists of numbers become float tensors, other values pass as they are.
    :param list bad_examples: keyword arguments that the constructor must refuse
        with a ``ValueError`` when ``validate_args=True``.
    :param tuple extra_params: attributes other than ``arg_constraints`` that carry
        the batch shape (and so must follow ``expand``), as ``(name, event_dim)``.
    :param tuple broadcast_params: parameters that may keep a shape that merely
        broadcasts to the batch shape after ``expand`` (the temperature of torch's
        relaxed distributions, which ``expand`` leaves as it is; readers such as
        ``float(d.temperature)`` rely on that).
    """

    def __init__(self, pyro_dist, examples, bad_examples=(), extra_params=(), broadcast_params=()):
        self.pyro_dist = pyro_dist
        self.examples = list(examples)
        self.bad_examples = list(bad_examples)
        self.extra_params = tuple(extra_params)
        self.broadcast_params = frozenset(broadcast_params)

    def __repr__(self):
        return self.pyro_dist.__name__

    def get_num_test_data(self) -> int:
        return len(self.examples)

    def get_dist_params(self, idx: int) -> dict:
        return {key: _as_param(value) for key, value in self.examples[idx].items()}

    def make(self, idx: int, **kwargs):
        return self.pyro_dist(**self.get_dist_params(idx), **kwargs)

    def make_bad(self, idx: int):
        params = {key: _as_param(value) for key, value in self.bad_examples[idx].items()}
        return self.pyro_dist(**params, validate_args=True)

    def batch_params(self, d) -> list[tuple[str, torch.Tensor, int]]:
        """``(name, value, event_dim)`` of every tensor parameter of instance ``d``."""
        names = [(name, c.event_dim) for name, c in type(d).arg_constraints.items()]
        out = []
        for name, event_dim in names + list(self.extra_params):
            value = getattr(d, name, None)
            if isinstance(value, torch.Tensor):
                out.append((name, value, event_dim))
        return out


def _as_param(value):
    if isinstance(value, list):
        return torch.tensor(value, dtype=torch.get_default_dtype())
    return value


DISTRIBUTIONS = [
    Fixture(
        ConcreteBernoulli,
        broadcast_params=("temperature",),
        examples=[
            {"temperature": 0.5, "logits": [0.3, -1.0]},
            {"temperature": [[0.5], [2.0]], "probs": [[0.2, 0.7, 0.5], [0.5, 0.5, 0.9]]},
            {"temperature": 0.1, "logits": 1.0, "hard": True},
        ],
        bad_examples=[
            {"temperature": 0.5, "logits": [0.3, NAN]},
            {"temperature": 0.5, "probs": [1.5]},
            {"temperature": 0.0, "logits": [0.3]},
        ],
    ),
    Fixture(
        ConcreteOneHotCategorical,
        broadcast_params=("temperature",),
        examples=[
            {"temperature": 0.5, "logits": [0.3, -0.5, 1.0]},
            {"temperature": [0.5, 2.0], "probs": [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]},
            {"temperature": 0.3, "logits": [[0.0, 1.0], [2.0, -1.0]], "hard": True},
        ],
        bad_examples=[
            {"temperature": 0.5, "probs": [-0.1, 1.1]},
            {"temperature": 0.5, "logits": [0.0, NAN]},
            {"temperature": -1.0, "logits": [0.0, 1.0]},
        ],
    ),
    Fixture(
        ConcreteCategorical,
        broadcast_params=("temperature",),
        examples=[
            {"temperature": 0.5, "logits": [0.3, -0.5, 1.0, 0.0]},
            {"temperature": 1.0, "probs": [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]},
        ],
        bad_examples=[
            {"temperature": 0.5, "logits": [0.0, NAN]},
            {"temperature": INF, "logits": [0.0, 1.0]},
        ],
    ),
    Fixture(
        PlackettLuce,
        examples=[
            {"scores": [0.5, -1.0, 2.0]},
            {"scores": [[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]], "temperature": 0.3},
            {"scores": [0.5, 0.0, -0.5], "relaxation": "sinkhorn"},
        ],
        bad_examples=[{"scores": [0.0, NAN]}, {"scores": [0.0, 1.0], "temperature": 0.0}],
    ),
    Fixture(
        PartialOrderPlackettLuce,
        examples=[
            {"scores": [0.5, -1.0, 2.0], "precedes": torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0]])},
            {"scores": [[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]],
             "precedes": torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])},
        ],
        bad_examples=[
            {"scores": [0.0, NAN], "precedes": torch.zeros(2, 2)},
            {"scores": [0.0, 1.0], "precedes": torch.tensor([[0, 1], [1, 0]])},
        ],
    ),  # fmt: skip
    Fixture(
        OrderedDAG,
        examples=[
            {"scores": [0.5, -1.0, 2.0], "edge_logits": [[0.0, 1.0, -1.0]] * 3},
            {"scores": None, "edge_logits": [[[0.0, 2.0], [-2.0, 0.0]]] * 3},
            {
                "scores": [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]],
                "edge_logits": [[0.0, 1.0, INF], [0.0, 0.0, -INF], [1.0, 1.0, 0.0]],
                "relaxation": "softsort",
            },
        ],
        bad_examples=[
            {"scores": [0.0, NAN], "edge_logits": [[0.0, 0.0]] * 2},
            {"scores": [0.0, 1.0], "edge_logits": [[0.0, NAN]] * 2},
        ],
    ),
    Fixture(
        SmoothOrientationDAG,
        examples=[
            {"priorities": [0.5, -1.0, 2.0], "edge_logits": [[0.0, 1.0, -1.0]] * 3},
            {"priorities": [[0.0, 1.0], [1.0, 0.0]], "edge_logits": [[0.0, 1.0]] * 2, "shift": 0.3},
        ],
        bad_examples=[
            {"priorities": [0.0, NAN], "edge_logits": [[0.0, 0.0]] * 2},
            {"priorities": [0.0, 1.0], "edge_logits": [[0.0, 0.0]] * 2, "shift": -0.1},
        ],
    ),
    Fixture(
        DAGMixture,
        examples=[
            {
                "mixture_logits": [0.0, 1.0],
                "components": OrderedDAG(torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]),
                                         torch.zeros(2, 3, 3)),
            },
            {
                "mixture_logits": [[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]],
                "components": SmoothOrientationDAG(torch.randn(2, 3, 4), torch.randn(3, 4, 4)),
            },
        ],
        bad_examples=[
            {
                "mixture_logits": [0.0, NAN],
                "components": OrderedDAG(torch.zeros(2, 3), torch.zeros(2, 3, 3)),
            },
        ],
    ),  # fmt: skip
    Fixture(
        ErdosRenyiDAG,
        examples=[
            {"num_nodes": 4, "expected_edges": 2.0},
            {"num_nodes": 3, "expected_edges": [1.0, 2.5]},
            {"num_nodes": 3, "edge_prob": [[0.3], [1.0]]},
        ],
        bad_examples=[
            {"num_nodes": 3, "expected_edges": -1.0},
            {"num_nodes": 3, "edge_prob": 2.0},
            {"num_nodes": 0, "expected_edges": 0.0},
        ],
        extra_params=(("edge_prob", 0), ("expected_edges", 0)),
    ),
    Fixture(
        SparsityPenalty,
        examples=[{"num_nodes": 3, "strength": 2.0}, {"num_nodes": 2, "strength": [1.0, 3.0]}],
        bad_examples=[{"num_nodes": 3, "strength": 0.0}, {"num_nodes": 3, "strength": INF}],
    ),
]


def _cases(fixtures, count):
    return [
        pytest.param(fixture, idx, id=f"{fixture}-{idx}")
        for fixture in fixtures
        for idx in range(count(fixture))
    ]


#: ``(fixture, example index)`` for every example of every distribution.
EXAMPLES = _cases(DISTRIBUTIONS, Fixture.get_num_test_data)
#: ``(fixture, bad example index)`` for every refused parameter set.
BAD_EXAMPLES = _cases(DISTRIBUTIONS, lambda f: len(f.bad_examples))
