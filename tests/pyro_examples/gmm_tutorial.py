# Copyright (c) 2017-2019 Uber Technologies, Inc.
# SPDX-License-Identifier: Apache-2.0
#
# Copied unchanged from Pyro, https://github.com/pyro-ppl/pyro, notebook
# tutorial/source/gmm.ipynb ("Gaussian Mixture Model") at commit
# ff6ae1c9572591791aae8842bcd702fcf0b46fd6 (Pyro 1.9.1, Apache License 2.0):
# the imports the model needs, the data cell, and the model cell (K = 2 and
# the @config_enumerate model). The training, plotting and classification
# cells are left out; pyrostruct's acceptance tests
# (tests/pyro_examples/test_pyro_examples.py) write out the tutorial's recipe
# next to pyrostruct.fit. The format exclusion keeps the cells as Pyro wrote them.
# ruff: noqa: I001
# fmt: off
import torch

import pyro
import pyro.distributions as dist
from pyro.infer import config_enumerate

data = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])

K = 2  # Fixed number of components.


@config_enumerate
def model(data):
    # Global variables.
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))

    with pyro.plate("data", len(data)):
        # Local variables.
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)
