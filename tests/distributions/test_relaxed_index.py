"""RelaxedIndex: a relaxed Categorical's value indexes tables with a straight-through gradient.

Oracle: the straight-through gradient of ``T[z]`` with respect to the one-hot
``y`` is the gradient of the linear form ``sum_k y_k T[..., k, ...]``, written out
by hand (einsum) for each indexing pattern; the forward value is the exact lookup.
"""

import operator

import numpy as np
import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.ops.indexing import Vindex

from pyrostruct.distributions import ConcreteCategorical, ConcreteOneHotCategorical
from pyrostruct.distributions._relaxed_index import RelaxedIndex, RelaxedValueError


def sample(logits, sample_shape=(), tau=0.5, seed=0):
    pyro.set_rng_seed(seed)
    return ConcreteCategorical(tau, logits=logits).rsample(sample_shape)


def grad_y(out, z, upstream):
    (g,) = torch.autograd.grad((out * upstream).sum(), z.one_hot, retain_graph=True)
    return g


# ---------------------------------------------------------------- the value


def test_value_is_an_exact_long_index_whose_one_hot_is_straight_through():
    logits = torch.randn(5, 4, requires_grad=True)
    z = sample(logits, (3,))
    assert isinstance(z, RelaxedIndex) and z.dtype == torch.long and z.shape == (3, 5)
    assert z.one_hot.shape == (3, 5, 4)
    assert torch.equal(z.one_hot, F.one_hot(z.as_plain(), 4).float())
    # the same draw as the hard ConcreteOneHotCategorical (same Gumbel noise)
    pyro.set_rng_seed(0)
    hard = ConcreteOneHotCategorical(0.5, logits=logits, hard=True).rsample((3,))
    assert torch.equal(hard.argmax(-1), z.as_plain())
    # without a gradient the value is an ordinary long tensor
    with torch.no_grad():
        z0 = sample(logits, (3,))
    assert not z0.live and torch.equal(torch.arange(4)[z0], z0.as_plain())


# ---------------------------------------------------------------- table lookups


def test_lookup_is_exact_and_its_gradient_is_the_linear_form():
    logits = torch.randn(6, 3, requires_grad=True)
    locs = torch.randn(3, 2, requires_grad=True)
    z = sample(logits)
    out = locs[z]
    assert out.shape == (6, 2) and torch.equal(out, locs.detach()[z.as_plain()])
    upstream = torch.randn(6, 2)
    # d/dy_k sum_k y_k locs[k] = locs[k]
    assert torch.allclose(grad_y(out, z, upstream), upstream @ locs.detach().T)
    # the table gets exactly the gradient of the hard lookup (no double counting)
    (g_locs,) = torch.autograd.grad((out * upstream).sum(), locs, retain_graph=True)
    (g_ref,) = torch.autograd.grad((locs[z.as_plain()] * upstream).sum(), locs)
    assert torch.equal(g_locs, g_ref)


def test_logits_gradient_equals_the_relaxed_linear_form_gradient():
    # straight-through: backward through the hard lookup = backward through
    # sum_k y_soft_k locs[k] with the relaxed Gumbel-softmax sample y_soft
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    locs = torch.randn(3, dtype=torch.float64)
    upstream = torch.randn(2, 4, dtype=torch.float64)
    z = sample(logits, (2,), seed=5)
    (g_st,) = torch.autograd.grad((locs[z] * upstream).sum(), logits)
    pyro.set_rng_seed(5)
    soft = ConcreteOneHotCategorical(0.5, logits=logits).rsample((2,))
    (g_ref,) = torch.autograd.grad(((soft @ locs) * upstream).sum(), logits)
    assert torch.allclose(g_st, g_ref) and g_st.abs().sum() > 0


def test_trailing_index_ellipsis_and_mixed_advanced_indices():
    logits = torch.randn(4, 3, requires_grad=True)
    z = sample(logits)
    table = torch.randn(5, 3)
    out = table[..., z]
    assert out.shape == (5, 4) and torch.equal(out, table[..., z.as_plain()])
    up = torch.randn(5, 4)
    assert torch.allclose(grad_y(out, z, up), torch.einsum("ni,nk->ik", up, table))

    # an integer, a slice and the relaxed index: torch places the advanced dims
    cube = torch.randn(2, 5, 3)
    out = cube[1, :, z]
    assert torch.equal(out, cube[1, :, z.as_plain()])
    up = torch.randn(out.shape)
    assert torch.allclose(grad_y(out, z, up), torch.einsum("ni,nk->ik", up, cube[1]))

    # a boolean mask before it
    mask = torch.tensor([True, False, True, True, False])
    out = cube[:, mask, z[:1]]
    assert torch.equal(out, cube[:, mask, z.as_plain()[:1]])


def test_several_relaxed_indices_in_one_expression():
    logits = torch.randn(4, 3, requires_grad=True)
    z, w = sample(logits, seed=1), sample(torch.randn(4, 5, requires_grad=True), seed=2)
    table = torch.randn(3, 5, 2)
    out = table[z, w]
    assert torch.equal(out, table[z.as_plain(), w.as_plain()])
    up = torch.randn(4, 2)
    # each index's gradient with the other at its hard value
    assert torch.allclose(
        grad_y(out, z, up), torch.einsum("id,kid->ik", up, table[:, w.as_plain()])
    )
    assert torch.allclose(grad_y(out, w, up), torch.einsum("id,ikd->ik", up, table[z.as_plain()]))


def test_vindex_and_transition_chain():
    # probs_x[x_prev] and Vindex(probs_x)[..., x_prev, :] as in Pyro's examples/hmm.py
    probs_x = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]], requires_grad=True)
    x_prev = sample(torch.randn(4, 1, 3, requires_grad=True), seed=3)  # plate dim=-2
    rows = Vindex(probs_x)[..., x_prev, :]
    assert rows.shape == (4, 1, 3) and torch.equal(rows, probs_x.detach()[x_prev.as_plain()])
    up = torch.randn(4, 1, 3)
    assert torch.allclose(
        grad_y(rows, x_prev, up), torch.einsum("abj,kj->abk", up, probs_x.detach())
    )
    # the next state, drawn by a guide and scored by the model (as Trace_ELBO does)
    x = sample(torch.randn(4, 1, 3, requires_grad=True), seed=4)
    lp = ConcreteCategorical(0.5, probs=rows).log_prob(x)
    prev, nxt = x_prev.as_plain(), x.as_plain()
    P = probs_x.detach()
    assert torch.allclose(lp, P[prev, nxt].log())
    # the log-probability reaches both relaxed states: through the lookup for x_prev
    # (the linear form in the rows: d/dy_j log(P[j, x] / sum_k P[j, k]) = P[j, x]/P[prev, x] - 1)
    # and through the scored one-hot for x (d/dy_k = log P[prev, k])
    g_prev, g_x = torch.autograd.grad(lp.sum(), [x_prev.one_hot, x.__dict__["_scored"]])
    assert torch.allclose(
        g_prev, P[:, nxt].permute(1, 2, 0) / P[prev, nxt].unsqueeze(-1) - 1, atol=1e-6
    )
    assert torch.allclose(g_x, P[prev].log())


def test_gather_take_along_dim_index_select_embedding():
    logits = torch.randn(4, 3, requires_grad=True)
    z = sample(logits)
    table = torch.randn(4, 3)
    out = torch.gather(table, 1, z.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(out, table[torch.arange(4), z.as_plain()])
    up = torch.randn(4)
    assert torch.allclose(grad_y(out, z, up), up[:, None] * table)

    out = torch.take_along_dim(table, z.unsqueeze(-1), dim=1).squeeze(-1)  # broadcasting gather
    assert torch.equal(out, table[torch.arange(4), z.as_plain()])
    assert torch.allclose(grad_y(out, z, up), up[:, None] * table)
    row = torch.randn(1, 3)
    out = torch.take_along_dim(row, z.unsqueeze(-1), dim=1).squeeze(-1)
    assert out.shape == (4,) and torch.allclose(grad_y(out, z, up), up[:, None] * row)

    wide = torch.randn(2, 3)
    out = wide.index_select(1, z)
    assert torch.equal(out, wide[:, z.as_plain()])
    up = torch.randn(2, 4)
    assert torch.allclose(grad_y(out, z, up), torch.einsum("ni,nk->ik", up, wide))

    weight = torch.randn(3, 5)
    out = F.embedding(z, weight)
    assert torch.equal(out, weight[z.as_plain()])
    up = torch.randn(4, 5)
    assert torch.allclose(grad_y(out, z, up), up @ weight.T)


def test_non_finite_table_entries_do_not_poison_the_forward_value():
    z = sample(torch.randn(6, 3, requires_grad=True), seed=4)
    log_table = torch.tensor([0.0, -float("inf"), -1.0])
    out = log_table[z]
    assert torch.equal(out, log_table[z.as_plain()])
    assert not torch.isnan(grad_y(out, z, torch.ones(6))).any()


# ---------------------------------------------------------------- other uses


def test_shape_operations_keep_the_index_relaxed():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    z = sample(logits, (5,))  # (5, 2, 3)
    table = torch.randn(4)
    cases = {
        "unsqueeze": z.unsqueeze(-1),
        "squeeze": z[:, :1].squeeze(-2),
        "reshape": z.reshape(10, 3),
        "view": z.view(-1),
        "expand": z[:, :, :1].expand(5, 2, 7),
        "permute": z.permute(2, 0, 1),
        "transpose": z.transpose(0, 2),
        "getitem": z[..., None, 1],
        "mask": z[z.as_plain() > 0],
        "stack": torch.stack([z, z], -1),
        "cat": torch.cat([z, z], 0),
        "long": z.long(),
        "to_long": z.to(torch.int64),
        "int": z.int(),
        "flip": z.flip(0),
    }
    for name, v in cases.items():
        assert isinstance(v, RelaxedIndex), name
        assert v.one_hot.shape == v.shape + (4,), name
        assert torch.equal(v.one_hot.argmax(-1), v.as_plain().long()), name
        assert v.one_hot.requires_grad, name
    parts = z.unbind(0)
    assert len(parts) == 5 and all(isinstance(p, RelaxedIndex) for p in parts)
    # z.long() keeps the gradient path (the fix users reach for first)
    up = torch.randn(5, 2, 3)
    assert torch.allclose(grad_y(table[z.long()], z, up), grad_y(table[z], z, up))


def test_numbers_one_hot_and_integer_results():
    logits = torch.randn(6, 4, requires_grad=True)
    z = sample(logits)
    hard = z.as_plain()
    number = z.float()
    assert number.dtype == torch.float32 and torch.equal(number, hard.float())
    assert torch.allclose(grad_y(number, z, torch.ones(6)), torch.arange(4.0).expand(6, 4))
    assert torch.equal(z.double(), hard.double()) and z.to(torch.float64).requires_grad
    scaled = z * 0.5  # floating arithmetic goes through sum_k k y_k
    assert torch.equal(scaled, hard * 0.5) and scaled.requires_grad
    one_hot = F.one_hot(z, 4)
    assert one_hot.dtype == torch.float32 and torch.equal(one_hot, F.one_hot(hard, 4).float())
    assert one_hot.requires_grad
    assert F.one_hot(z, 6).shape == (6, 6)
    # integer / boolean results: exact, no gradient, plain tensors
    for v in (z == 1, z + 1, z.sum(), z > 0):
        assert type(v) is torch.Tensor and not v.requires_grad
    assert torch.equal(z + 1, hard + 1) and torch.equal(z == 1, hard == 1)


def test_conversions_that_leave_torch_are_refused_while_the_gradient_is_live():
    z = sample(torch.randn(3, requires_grad=True))  # a scalar index
    conversions = {
        "int": lambda: int(z),
        "item": lambda: z.item(),
        "tolist": lambda: z.tolist(),
        "numpy": lambda: z.numpy(),
        "asarray": lambda: np.asarray(z),
        "float": lambda: float(z),
        "bool": lambda: bool(z),
        "python index": lambda: [10, 20, 30][z],
        "operator.index": lambda: operator.index(z),
    }
    for name, convert in conversions.items():
        with pytest.raises(RelaxedValueError, match=r"straight-through.*locs\[z\]"):
            convert()
            pytest.fail(f"{name} was not refused")
    # printing is harmless
    assert f"{z}" == f"{z.as_plain()}"
    # without a live gradient they behave as on a plain tensor
    with torch.no_grad():
        assert int(z) == z.as_plain().item() == z.item()
        assert [10, 20, 30][z] == [10, 20, 30][z.as_plain()]


def test_pickling_and_deepcopy_give_plain_tensors():
    import copy
    import io

    z = sample(torch.randn(4, 3, requires_grad=True))
    buffer = io.BytesIO()
    torch.save(z, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert type(loaded) is torch.Tensor and torch.equal(loaded, z.as_plain())
    assert type(copy.deepcopy(z)) is torch.Tensor
