"""Bayesian neural network modules, in the manner of :mod:`pyro.nn`.

:class:`BayesianMLP` is a multilayer perceptron whose weights and biases are
:class:`~pyro.nn.PyroSample` sites with Gaussian priors: the model that
:class:`~pyrostruct.infer.autoguide.AutoSparseSubspace` (sparse subspace VI,
Li et al., ICLR 2024) is written for, and the one that ``models/bnn.py``, the
SSVI tutorial, ``make demo`` and the benchmarks train. :func:`init_to_fan_in`
is the initialization their guides start from.

This module imports only Pyro and torch, so any layer of pyrostruct may use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import init_to_median
from pyro.nn import PyroModule, PyroSample
from torch import nn

__all__ = ["TASKS", "BayesianMLP", "init_to_fan_in"]

TASKS = ("classification", "regression")


def _check_sizes(sizes) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(
            f"sizes must be a list of layer widths such as [64, 128, 10], got {sizes!r}"
        )
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"sizes must name at least the input and the output width, got {sizes}; "
            "e.g. [64, 10] for one linear layer, [64, 128, 10] for one hidden layer"
        )
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"every layer width must be a positive integer, got {sizes}")
    return sizes


def _check_prior_scale(prior_scale):
    if prior_scale == "fan_in":
        return prior_scale
    if (
        isinstance(prior_scale, bool)
        or not isinstance(prior_scale, (int, float))
        or not math.isfinite(prior_scale)
        or not prior_scale > 0
    ):
        raise ValueError(
            f"prior_scale must be 'fan_in' or a finite number > 0, got {prior_scale!r}"
        )
    return prior_scale


class BayesianMLP(PyroModule):
    """Multilayer perceptron with Gaussian priors on every weight and bias.

    Layer :math:`l` maps :math:`h_{l-1} \\in \\mathbb{R}^{n_{l-1}}` to
    :math:`W_l h_{l-1} + b_l` with :math:`W_l \\in \\mathbb{R}^{n_l \\times n_{l-1}}`,
    a ReLU between layers and none after the last, and the priors

    .. math::

        W_l \\sim \\mathcal{N}(0, s_l^2 I), \\qquad b_l \\sim \\mathcal{N}(0, s_l^2 I),

    where :math:`s_l` is ``prior_scale`` when it is a number and
    :math:`1/\\sqrt{n_{l-1}}` when ``prior_scale="fan_in"`` (unit-variance
    pre-activations under the prior). Each :math:`W_l` and :math:`b_l` is one
    sample site outside any plate (``.expand([...]).to_event(n)``), named
    ``net.<i>.weight`` / ``net.<i>.bias``: the *weight sites* of
    :class:`~pyrostruct.infer.autoguide.AutoSparseSubspace`.

    The likelihood of ``task="classification"`` is
    :math:`y \\sim \\text{Categorical}(\\text{logits}=f(x))`; that of
    ``task="regression"`` is :math:`y \\sim \\mathcal{N}(f(x), \\sigma^2)` with
    :math:`\\sigma \\sim \\text{LogNormal}(-1, 1)` (``f(x)`` of width 1,
    squeezed), a positive latent that ``AutoSparseSubspace`` guides densely.

    With little training data, a narrow prior (``"fan_in"``, or a small
    ``prior_scale``) can let the KL term win, so that mean-field guides collapse
    towards the prior; a comparison of prior scales on the digits MLP of
    ``benchmarks/ssvi.py`` is in ``benchmarks/results/ssvi.md``.

    The deterministic network is ``self.net``, a ``PyroModule[nn.Sequential]``
    of ``PyroModule[nn.Linear]`` and ``nn.ReLU`` layers, so
    ``guide.export_module(root="net")`` returns a plain ``nn.Sequential``.

    Example::

        model = BayesianMLP([64, 128, 10])
        guide = AutoSparseSubspace(model, density=0.1, init_loc_fn=init_to_fan_in)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        svi.step(x, y)

    :param sizes: layer widths ``[input, hidden..., output]`` (at least two
        positive integers). For regression the output width is 1.
    :param str task: ``"classification"`` (default) or ``"regression"``.
    :param prior_scale: standard deviation :math:`s` of every prior (a number
        > 0, default 1.0), or ``"fan_in"`` for :math:`1/\\sqrt{\\text{fan-in}}`.
    """

    def __init__(self, sizes: Sequence[int], *, task: str = "classification", prior_scale=1.0):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        sizes = _check_sizes(sizes)
        prior_scale = _check_prior_scale(prior_scale)
        if task == "regression" and sizes[-1] != 1:
            raise ValueError(
                f"a regression BayesianMLP has one output (sizes[-1] == 1), got sizes={sizes}"
            )
        self.task = task
        self.sizes = sizes
        self.prior_scale = prior_scale
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layer = PyroModule[nn.Linear](fan_in, fan_out)
            scale = 1.0 / math.sqrt(fan_in) if prior_scale == "fan_in" else float(prior_scale)
            prior = dist.Normal(0.0, scale)
            layer.weight = PyroSample(prior.expand([fan_out, fan_in]).to_event(2))
            layer.bias = PyroSample(prior.expand([fan_out]).to_event(1))
            layers.append(layer)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = PyroModule[nn.Sequential](*layers)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        """Sample the weights, run the network on ``x`` and score ``y``.

        :param torch.Tensor x: inputs of shape ``(batch, sizes[0])``.
        :param torch.Tensor y: class labels (classification) or targets
            (regression) of shape ``(batch,)``, or ``None`` to sample them.
        :param int num_data: size of the full data set when ``x`` is a
            minibatch; the likelihood is scaled by ``num_data / batch``.
        :returns: the network's output, logits of shape ``(batch, sizes[-1])``
            (classification) or means of shape ``(batch,)`` (regression).
        """
        if x.dim() != 2 or x.shape[-1] != self.sizes[0]:
            raise ValueError(f"x must have shape (batch, {self.sizes[0]}), got {tuple(x.shape)}")
        batch = x.shape[0]
        plate = pyro.plate("data", num_data or batch, subsample=torch.arange(batch))
        out = self.net(x)
        if self.task == "classification":
            with plate:
                pyro.sample("obs", dist.Categorical(logits=out), obs=y)
            return out
        out = out.squeeze(-1)
        sigma = pyro.sample("sigma", dist.LogNormal(-1.0, 1.0))
        with plate:
            pyro.sample("obs", dist.Normal(out, sigma), obs=y)
        return out


def init_to_fan_in(site: dict) -> torch.Tensor:
    """Fan-in-scaled initial value of a sample site, an ``init_loc_fn`` for autoguides.

    Weight matrices (real sites of two dimensions, ``(fan_out, fan_in)``) get
    draws from :math:`\\mathcal{N}(0, 1/\\text{fan-in})`, other real sites
    (biases) zeros, and sites with another support (e.g. the positive noise
    scale of a regression) their prior median (Pyro's ``init_to_median``).
    This is the usual fan-in scaling of a network's initialization;
    ``AutoSparseSubspace`` rescales the active means by
    :math:`1/\\sqrt{\\text{density}}` on top (its ``init_rescale``).

    :param dict site: a Pyro sample site (``site["fn"]`` its distribution).
    :returns: the initial value, of the site's shape.
    """
    shape = site["fn"].shape()
    if site["fn"].support is not dist.constraints.real and not isinstance(
        site["fn"].support, dist.constraints.independent
    ):
        return init_to_median(site)  # e.g. the regression noise scale
    if len(shape) == 2:
        return torch.randn(shape) / math.sqrt(shape[-1])
    return torch.zeros(shape)
