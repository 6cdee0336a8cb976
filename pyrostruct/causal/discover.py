"""``discover``: a posterior over causal DAGs by variational inference, or exactly for
small linear problems.

The model is an ordinary Pyro model with a DAG latent::

    G ~ ErdosRenyiDAG(d, expected_edges=m)       # uniform order, sparse forward edges
    X | G ~ SEM(G)                                # linear Gaussian, masked MLP, or your own

and the guide is :class:`~pyrostruct.infer.autoguide.AutoDAG`: a Plackett-Luce
order and Bernoulli forward edges with learnable scores and edge logits (the
VI-DP-DAG family of Charpentier, Kibler, Günnemann, "Differentiable DAG
Sampling", ICLR 2022). Training maximizes the true ELBO with ``Trace_ELBO``:

.. math::

    \\mathcal{L} = E_q[\\log p(X \\mid A)] - E_q[\\log q(\\pi, A) - \\log p(\\pi, A)],

whose second term is the exact Plackett-Luce log-ratio of the order plus the
Bernoulli log-ratio of every forward pair against the prior edge probability
``p = m / (d (d - 1) / 2)`` — a sparsity prior set by the expected number of
edges ``m``, not an ad-hoc penalty on raw logits. For the linear SEM the edge
weights are latent too (Gaussian variational posterior, integrated
analytically), which adds the Occam factor of every edge: the KL of its weight
against the slab, by default the non-local pMOM prior on the standardized
effect (:mod:`pyrostruct.causal.priors`; Johnson & Rossell, JASA 2012), which
keeps weak spurious edges out that a Gaussian slab lets in.

Two estimators of the same ELBO:

- ``estimator="analytic"`` (default for the linear SEM with ``dag="order"``):
  only the order is sampled; given it, the Bernoulli edges and Gaussian
  weights are integrated exactly through the Gram matrix
  (:mod:`pyrostruct.causal.collapsed`), the edge and weight gradients are exact
  and the order's scores get the leave-one-out score-function gradient. The
  weights and edges start from least squares of every node on its
  predecessors in the initial order (edge logits = prior log-odds + Bayes
  factor), and restart from least squares given the parent sets found halfway
  (:data:`~pyrostruct.causal.estimators.analytic.REFIT_AT`); the noise scales are
  profiled per sampled order. 750 steps, Adam with learning rate 0.1, 8 orders per
  step; a step costs ``O(d^3)`` whatever ``n``.
- ``estimator="straight-through"`` (any SEM, either DAG family): order and
  edges are sampled by :class:`~pyrostruct.infer.autoguide.AutoDAG` with
  straight-through gradients and trained with ``Trace_ELBO``; 2000 steps, Adam
  with learning rate 0.2 (linear) or 0.01 (MLP), the relaxation temperature
  annealed from 1 to 0.2 over the first 60% of the steps, mini-batches of 1000
  rows for row-wise likelihoods when ``n > 2000``.

And, with no variational family: ``estimator="exact"`` (the linear SEM with unequal noise
variances) sums the posterior of the same order-modular prior with the BGe likelihood
(weights and noise integrated, score-equivalent) exactly over all orders and parent sets
(:mod:`pyrostruct.causal.exact`, Koivisto & Sood 2004; ``O(d^2 2^d)``, at most 16 nodes).

The variational estimators: standardized columns by default, ``expected_edges = d``, the order held
at its initial value for the first 20% of the steps while the mechanisms and
edges adapt to it. The initial order is the equal-variance top-down order
(Chen, Drton, Wang 2019) for ``noise="equal"``; otherwise a greedy search over
orders for the sparsest DAG by its fit (the sparsest-permutation principle, Raskutti &
Uhler 2018) from a bottom-up sparse-sinks start (linear, but on NOTEARS-MLP data at
d = 10 it lowered the MLP SEM's SHD from 3 to 2 on both seeds tried): up to 3 sweeps
on the approximate evidence of the least-squares DAG, each scoring a node's insertions
in ``O(d^2)``, then BOSS-style moves on the grow-shrink BIC (Andrews et al. 2023;
:func:`~pyrostruct.causal.orders.improve_order` says when and why). The search is most
of the time of a call at d >= 400 (``benchmarks/results/discover_scale.md``).

Layout: ``discover`` is a pipeline, checked data (:mod:`pyrostruct.causal.data`,
:mod:`pyrostruct.causal.interventions`) and settings
(:mod:`pyrostruct.causal.settings`) -> initial order
(:mod:`pyrostruct.causal.orders`) -> estimator
(:mod:`pyrostruct.causal.estimators`) -> :class:`CausalResult`
(:mod:`pyrostruct.causal.result`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyro
import torch

from pyrostruct._io import atomic_save
from pyrostruct.causal.checkpoints import checkpoint_seed, read_checkpoint, run_fingerprint
from pyrostruct.causal.data import MIN_ROWS, Problem, prepare_columns
from pyrostruct.causal.estimators import ESTIMATORS, exact_result, variational_result
from pyrostruct.causal.interventions import parse_interventions
from pyrostruct.causal.knowledge import as_knowledge
from pyrostruct.causal.orders import equal_variance_order, initial_order
from pyrostruct.causal.restarts import (
    best_restart,
    check_restarts,
    restart_checkpoint,
    restart_plan,
)
from pyrostruct.causal.result import CausalResult, load_result
from pyrostruct.causal.sem import StructuralEquationModel, make_sem
from pyrostruct.causal.settings import Settings, check_pairwise, check_seed
from pyrostruct.causal.tables import Table, prepare_table
from pyrostruct.errors import InputError
from pyrostruct.executors import check_executor, check_workers, executor_session
from pyrostruct.infer.engine import CallbackHook, CheckpointHook, ProgressHook, train

__all__ = [
    "discover",
    "CausalResult",
    "load_result",
    "parse_interventions",
    "equal_variance_order",
    "MIN_ROWS",
]


def discover(
    data,
    *,
    sem: str | StructuralEquationModel = "linear",
    dag: str = "order",
    steps: int | None = None,
    estimator: str | None = None,
    seed: int = 0,
    interventions=None,
    knowledge=None,
    missing: str = "error",
    transform: str = "auto",
    categorical: Sequence | None = None,
    standardize: bool = True,
    noise: str = "nonequal",
    expected_edges: float | None = None,
    lr: float | None = None,
    num_particles: int = 8,
    batch_size: int | None = None,
    temperature: tuple[float, float] = (1.0, 0.2),
    init_order: str | Sequence[int] | None = None,
    search_start: Sequence[int] | None = None,
    hidden: int = 10,
    weight_prior: str | None = None,
    threshold: float = 0.5,
    average_equivalent: bool | None = None,
    num_samples: int = 1000,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    progress: bool = False,
    callback: Callable[[int, float], bool | None] | None = None,
    restarts: int = 1,
    executor: str = "serial",
    workers: int | None = None,
) -> CausalResult:
    """Learn a posterior over causal DAGs from a data table by variational inference (or
    exactly, for small linear problems: ``estimator``).

    :param data: numeric data ``(n, d)``; a DataFrame's column names become node
        names.
    :type data: numpy.ndarray, torch.Tensor or pandas.DataFrame
    :param sem: the likelihood ``p(X | A)``: ``"linear"``, ``"mlp"`` or a
        :class:`~pyrostruct.causal.sem.StructuralEquationModel`.
    :type sem: str or ~pyrostruct.causal.sem.StructuralEquationModel
    :param str dag: DAG family, ``"order"`` or ``"smooth"``: :class:`OrderedDAG` or
        :class:`SmoothOrientationDAG` (COSMO). Here the smooth family has shift 0, which
        makes it the same distribution with the same pairwise relaxation as ``"order"``:
        the two give identical results (found by a hostile-user sweep); they differ only
        with a shift ``> 0``, which the class takes in your own model.
    :param int steps: optimization steps (default 750 with
        ``estimator="analytic"``, 2000 otherwise).
    :param str estimator: the estimator (optional), ``"exact"``, ``"analytic"`` or
        ``"straight-through"``.
        ``"analytic"`` (default for the linear SEM with ``dag="order"`` and no
        ``batch_size``): only the order is sampled; the edges and weights are
        integrated exactly given it (:mod:`pyrostruct.causal.collapsed`), the
        order's gradient is the leave-one-out score-function estimator, and
        the weights and edges start from least squares in the initial order and
        again, halfway, given the parent sets found by then.
        ``"straight-through"``: order and edges are sampled by
        :class:`~pyrostruct.infer.autoguide.AutoDAG` and trained with
        ``Trace_ELBO`` (any SEM, either DAG family).
        ``"exact"`` (``sem="linear"``, ``noise="nonequal"``, ``dag="order"``, at most 16
        nodes; no ``steps``, ``lr``, ``num_particles``, ``batch_size``, ``temperature``,
        ``init_order``, ``weight_prior``, ``checkpoint``, ``callback``, ``restarts``; it
        ignores ``search_start``): no training, the exact posterior of the order-modular
        prior with the BGe likelihood (:mod:`pyrostruct.causal.estimators.exact`): exact
        draws, ``metadata["log_evidence"]``, interventions and ``knowledge`` enforced
        exactly; ``edge_probs`` average ``num_samples`` exact draws over equivalence
        classes as ``average_equivalent`` describes (``False``: the exact order-modular
        ones). Closer to the truth than ``"analytic"`` on average and 1 confident
        reversal in 60 cases of issue 24's property against 11, but not the default: BGe
        lets nearly deterministic standardized nodes take spurious parents (the
        measurements are in that module's text).
    :param seed: seed of every random choice, ``0 .. 2**32 - 1`` (same seed, same
        result). ``None`` draws one, recorded in ``metadata["seed"]`` (and in the
        checkpoint: ``None`` with an existing checkpoint resumes with its seed).
    :type seed: int or None
    :param interventions: perfect interventions per row (optional): a column name
        of ``data``, an ``(n, d)`` boolean mask, or one entry per row (see
        :func:`parse_interventions`). Intervened nodes' mechanisms are dropped
        from those rows' likelihood, and every step before the fit treats them
        alike: an intervened node is standardized, regressed (least-squares
        start) and scored (order search) on the rows where it is not intervened
        only; the other nodes use every row, their mechanisms being the same in
        all regimes. Assumed: perfect (do) interventions on known targets. Soft
        interventions (a changed mechanism rather than a set value) and
        interventions on unknown targets are not modelled: marked as perfect, a
        soft intervention loses the information its rows hold about the node's
        parents, and a wrong or missing target biases the graph; leave such rows
        out, or mark them observational only if the mechanisms are unchanged.
    :param knowledge: background knowledge, enforced exactly (optional): a
        :class:`~pyrostruct.causal.knowledge.Knowledge` (forbidden and required edges,
        temporal tiers), a dict of its fields, or the path of a knowledge file (Tetrad's
        format or a ``cause,effect,kind`` CSV, :func:`~pyrostruct.causal.read_knowledge`).
        Orders come from the Plackett-Luce distribution restricted to the orders the
        tiers and required edges allow; a forbidden edge has probability exactly 0 and a
        required one exactly 1 in every drawn DAG, in ``edge_probs`` and in the consensus
        graph; the order search moves only between allowed orders, and the averaging over
        equivalence classes keeps only the members that obey the knowledge. With
        ``estimator="exact"`` the sums over orders and parent sets leave out what the
        knowledge forbids (the prior restricted to it). Required edges and tiers need
        ``estimator="analytic"`` or ``"exact"``; forbidden edges alone work with every
        estimator (``"straight-through"``, the MLP SEM: the prior and the guide give them
        logit ``-inf``). Contradictory knowledge is refused, naming the conflict.
    :type knowledge: ~pyrostruct.causal.knowledge.Knowledge, dict or path
    :param str missing: missing cells (NaN, ``None``, empty CSV cells;
        :mod:`pyrostruct.causal.tables`): ``"error"`` (default) refuses them;
        ``"drop"`` keeps the complete rows; ``"pairwise"`` estimates the means and
        covariances from pairwise-complete rows (repaired to the nearest positive
        definite correlation matrix, Higham 2002) and fits a table of ``n_eff`` rows
        with exactly those moments, ``n_eff`` the fewest rows in which any two columns
        are observed together. That is exact for the linear Gaussian SEM, whose
        likelihood depends on the data only through means and second moments, so
        ``"pairwise"`` needs it (no MLP SEM, no ``batch_size``) and no interventions.
        ``"em"``: the same with the maximum-likelihood (EM) mean and covariance instead
        of the pairwise ones, valid for cells missing at random and more accurate on
        strongly correlated columns, where pairwise estimates contradict each other.
        A column missing in more than half its rows is refused.
        ``metadata["missing"]`` reports the cells and rows affected.
    :param str transform: ``"auto"`` (default), ``"none"`` or ``"copula"``: the Gaussian
        copula replaces every column by its rank-based normal scores (mid-ranks for
        ties: one value per level of a binary or ordinal column; Liu, Lafferty &
        Wasserman 2009; Harris & Drton 2013). ``"auto"`` applies it when a column is
        declared categorical or has at most 10 distinct values (and at most half as
        many as observed cells), and otherwise leaves the data untouched. The edge
        weights of transformed columns are on the normal-scores scale.
        ``metadata["transform"]`` names what each column got. With interventions the
        ranks are over all rows of a column.
    :param categorical: columns holding categories (names or indices): text is accepted
        in them (elsewhere refused); two levels may be unordered, more need an order
        (``pandas.Categorical(..., ordered=True)`` or numeric codes); their text levels
        in code order are in ``metadata["categorical_levels"]``.
    :type categorical: sequence of str or int, optional
    :param bool standardize: scale every column to mean 0 and standard deviation 1
        first (default). Real data has arbitrary units; on raw simulated data the
        variance grows along the causal order, which no real data promises
        (Reisach et al., "Beware of the Simulated DAG!", NeurIPS 2021).
    :param str noise: noise variances of the SEM, ``"nonequal"`` or ``"equal"``:
        one per node, or one shared (identifiable from observational linear
        Gaussian data, Peters & Bühlmann 2014).
    :param float expected_edges: prior expected number of edges ``m`` (optional;
        default ``min(d, d (d - 1) / 4)``); sets the prior edge probability
        ``m / (d (d - 1) / 2)`` of the Erdős–Rényi prior.
    :param float lr: Adam learning rate (optional; default 0.1 analytic, whose
        edges and SEM parameters take 0.3 of it, 0.2 linear straight-through, 0.01 MLP).
    :param int num_particles: DAG samples per step (vectorized).
    :param int batch_size: rows per step for row-wise likelihoods (subsampled
        plate; optional). Default: all rows up to 2000, else 1000. The linear SEM
        uses the full data through its Gram matrix unless ``batch_size`` is given.
    :param temperature: initial and final relaxation temperature (exponential
        annealing over the first 60% of the steps).
    :type temperature: tuple(float, float)
    :param init_order: initial order: ``"equal-variance"`` (default for
        ``noise="equal"``: the top-down order of Chen, Drton & Wang 2019),
        ``"greedy-sparsest"`` (default otherwise: the
        :func:`~pyrostruct.causal.collapsed.sparse_sinks_order` heuristic
        improved by :func:`~pyrostruct.causal.collapsed.improve_order`, a greedy
        search for the order whose least-squares DAG is sparsest by its
        approximate evidence; linear, but a useful start for the MLP SEM too),
        ``"sparse-sinks"`` (the heuristic alone), ``"greedy-random"`` (the search
        from a random order), ``"random"``, or a sequence of node indices.
    :type init_order: str or sequence of int
    :param search_start: the order the ``"greedy-sparsest"`` search starts from (optional;
        default: the sparse-sinks orders): a warm start, such as the previous fit's most
        probable order when rows have been added (:class:`~pyrostruct.causal.ActiveLearner`).
    :type search_start: sequence of int
    :param int hidden: hidden units of each node's MLP in the ``"mlp"`` SEM
        (:class:`~pyrostruct.causal.sem.MLPSEM`); ignored otherwise.
    :param str weight_prior: slab prior of a present edge's weight in the variational
        linear SEM (:mod:`pyrostruct.causal.priors`), ``"pmom"`` or ``"normal"``
        (``estimator="exact"`` integrates the weights under the BGe prior instead).
        ``"pmom"`` (default): the non-local product moment prior with variance 1
        on the standardized effect ``W_ij sd_i / sd_j`` (Johnson & Rossell 2012):
        it vanishes at zero, so an edge must have an effect bounded away from
        zero to enter, which removes weak spurious edges (``|t| ~ 3``) that a
        Gaussian slab keeps, and it does not depend on the columns' units; the
        price is about ``log(w^2)`` nats per true edge of standardized effect
        ``w``, so with few rows and weak true effects it misses edges sooner.
        ``"normal"``: ``N(0, 1)`` in the data's units. Other SEMs, and a SEM
        instance passed as ``sem``, keep their own priors.
    :param float threshold: adjacency probability needed in the consensus
        :attr:`CausalResult.graph`.
    :param bool average_equivalent: spread every DAG drawn from the posterior (variational
        or exact) uniformly over its Markov equivalence class
        (:mod:`pyrostruct.causal.equivalence`) before computing ``edge_probs``;
        with interventions, over its *interventional* class for the data's target
        sets (Hauser & Bühlmann 2012: perfect interventions orient the edges with
        exactly one end in a target set and what follows from them, no more).
        Default (``None``): on exactly when the data cannot tell the members of a
        class apart, that is for the linear SEM with ``noise="nonequal"``, with or
        without interventions (and always for ``estimator="exact"``). There the
        variational posterior settles on one member and would report an arbitrary
        orientation of every unidentified edge with probability near 1 (the exact one
        weighs the members by their numbers of linear extensions, see ``estimator``);
        averaged, such an edge gets about 0.5 each
        way and the consensus graph keeps it (in one direction). Equal noise
        variances and the MLP SEM identify more than the class, so averaging is
        off for them.
    :param int num_samples: DAGs drawn from the posterior to estimate ``edge_probs`` (and
        their Monte Carlo error) when they are averaged over equivalence classes, or, for
        the variational estimators, always.
    :param checkpoint: save the state every ``checkpoint_every`` steps
        (atomically); if the file exists and was made by the same call on the
        same data, resume from it. Settings that shape only the result
        (``threshold``, ``num_samples``, ``checkpoint_every``,
        ``average_equivalent``) may differ: a finished checkpoint then rebuilds
        the result without training.
    :type checkpoint: str or os.PathLike, optional
    :param int checkpoint_every: steps between two checkpoint saves.
    :param bool progress: show a tqdm progress bar with the ELBO.
    :param callback: called as ``callback(step, elbo)`` after every training step
        (optional); returning ``True`` stops training there (the result is built
        from the steps taken).
    :type callback: callable
    :param int restarts: fits from different starts (restart 0 this call's ``seed`` and
        ``init_order``, the others ``"greedy-random"``, each with its own seed); the
        one with the highest ELBO is returned
        (:mod:`pyrostruct.causal.restarts`), and ``metadata["restarts"]`` lists every
        restart's ELBO with its standard error and how far its edge probabilities
        are from the chosen one's. With ``checkpoint``, restart ``r > 0`` checkpoints
        to ``checkpoint + ".restart<r>"``.
    :param str executor: where restarts run: ``"serial"``, ``"process"`` (forked
        workers, one torch thread each) or ``"ray"`` (``pip install
        "pyrostruct[ray]"``); the same seed gives the same result on every executor
        (:mod:`pyrostruct.executors`).
    :param int workers: worker processes (optional; default: the CPU count, at most 8).
    :returns: the posterior over DAGs, its consensus graph and the fit's record.
    :rtype: CausalResult
    :raises InputError: bad data (see :func:`pyrostruct.data.check_table` and
        :func:`pyrostruct.causal.tables.prepare_table`: a missing cell without
        ``missing=``, text outside ``categorical``, a column mostly missing, too few
        complete rows, two columns never observed together), unknown nodes in
        ``interventions``, bad settings, or a checkpoint of another run.
    :raises NonFiniteLossError: the ELBO became NaN or infinite during training
        (a ``RuntimeError``).

    Example::

        >>> from pyrostruct.causal import datasets
        >>> ds = datasets.make_dataset(d=5, n=200, seed=0)
        >>> result = discover(ds.data, steps=50)
        >>> result.edge_probs.shape
        (5, 5)
    """
    if seed is None and checkpoint is not None and os.path.exists(checkpoint):
        seed = checkpoint_seed(checkpoint)  # seed=None resumes with the run's own seed
    seed = check_seed(seed)
    check_pairwise(missing, sem, batch_size)
    table = prepare_table(
        data, interventions, missing=missing, transform=transform, categorical=categorical
    )
    x, names, mask = table.x, table.names, table.mask
    n, d = x.shape
    masks = as_knowledge(knowledge).resolve(names) if knowledge is not None else None
    restarts = check_restarts(restarts)
    training = [name for name, given in (("checkpoint", checkpoint is not None),
                                         ("callback", callback is not None),
                                         ("restarts", restarts != 1)) if given]  # fmt: skip
    settings = Settings.create(
        n=n, d=d, sem=sem, dag=dag, steps=steps, estimator=estimator, seed=seed,
        standardize=standardize, noise=noise, expected_edges=expected_edges, lr=lr,
        num_particles=num_particles, batch_size=batch_size, temperature=temperature,
        init_order=init_order, hidden=hidden, weight_prior=weight_prior, threshold=threshold,
        average_equivalent=average_equivalent, num_samples=num_samples,
        checkpoint_every=checkpoint_every, search_start=search_start, knowledge=masks,
        training=training,
    )  # fmt: skip
    check_executor(executor)
    check_workers(workers)
    if settings.estimator == "exact":
        return _report_table(exact_result(x, names, mask, settings), table)
    if restarts > 1 and callback is not None and executor != "serial":
        raise InputError("callback runs in this process only: use executor='serial' with it")
    # workers' progress bars would interleave: other executors show one bar over restarts
    inner = progress and executor == "serial"
    # the order search's BIC stage is for continuous columns (improve_order says why)
    continuous = all(kind == "none" for kind in table.transform.values())
    run = _Run(x, names, mask, checkpoint, inner, callback, restarts, continuous)
    if restarts == 1:
        return _report_table(_fit(run, (0, settings)), table)
    plan = restart_plan(settings, restarts)
    bar = None
    if progress and not inner:
        from tqdm.auto import tqdm

        bar = tqdm(total=restarts, desc=f"discover restarts ({executor})", unit="restart")
    try:
        with executor_session(executor, run, max_workers=workers) as map_tasks:
            tick = None if bar is None else (lambda payload, result: bar.update(1))
            results = map_tasks(_fit, list(enumerate(plan)), tick)
    finally:
        if bar is not None:
            bar.close()
    best, rows = best_restart(results)
    result = results[best]  # its seed and init_order reproduce it as a one-restart call
    result.metadata.update(restarts=rows, restart_chosen=best)
    return _report_table(result, table)


def _report_table(result: CausalResult, table: Table) -> CausalResult:
    """Record what :func:`~pyrostruct.causal.tables.prepare_table` did in the metadata."""
    result.metadata.update(missing=table.missing, transform=table.transform)
    if table.levels:
        result.metadata["categorical_levels"] = table.levels
    return result


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every restart of one ``discover`` call shares (the executors' context)."""

    x: np.ndarray
    names: list
    mask: np.ndarray | None
    checkpoint: str | os.PathLike | None
    progress: bool
    callback: Callable[[int, float], bool | None] | None
    restarts: int
    continuous: bool = True


def _fit(run: _Run, task: tuple[int, Settings]) -> CausalResult:
    """One fit: restart ``task[0]`` with its settings ``task[1]``."""
    restart, settings = task
    x, mask, names, progress = run.x, run.mask, run.names, run.progress
    n, d = x.shape
    seed, sem = settings.seed, settings.sem
    checkpoint = restart_checkpoint(run.checkpoint, restart)
    name = "discover" if run.restarts == 1 else f"discover {restart + 1}/{run.restarts}"
    columns = prepare_columns(x, standardize=settings.standardize, mask=mask, names=names)
    config = settings.config()
    fingerprint = run_fingerprint(x, mask, config)
    # The per-step tensors are small: extra threads only add synchronization. This is
    # the one place that sets the thread count, for the order search and the training.
    small = d * d * settings.num_particles < 2_000_000
    threads = 1 if small else torch.get_num_threads()
    with (
        pyro.get_param_store().scope(),
        torch.random.fork_rng(),
        _num_threads(threads),
        pyro.validation_enabled(False),
    ):  # inputs were validated above; samples are DAGs
        pyro.set_rng_seed(seed)
        state = None
        if checkpoint is not None and os.path.exists(checkpoint):
            state = read_checkpoint(checkpoint, fingerprint)
        started = time.perf_counter()
        problem = Problem.create(columns, names, mask)
        model = make_sem(sem, d, noise=settings.noise, hidden=settings.hidden,
                         weight_prior=settings.weight_prior)  # fmt: skip
        model.initialize(problem.x)
        stats = None
        if settings.batch_size is None:  # the SEM's fast path over all rows, if it has one
            stats = model.sufficient_statistics(problem.x, problem.mask)
        phases = {"setup": time.perf_counter() - started}
        started = time.perf_counter()
        if state is not None and isinstance(settings.init_order, str):
            order = list(range(d))  # the checkpoint's parameters replace the start
        else:
            order = initial_order(
                settings.init_order, problem.x.numpy(), settings.prior_logit(d),
                weight_prior_scale=getattr(model, "weight_prior_scale", None) or 1.0,
                mask=problem.mask_np, progress=progress, search_start=settings.search_start,
                precedes=None if settings.knowledge is None else settings.knowledge.precedes,
                forbidden=None if settings.knowledge is None else settings.knowledge.forbidden,
                required=None if settings.knowledge is None else settings.knowledge.required,
                bic=run.continuous,
            )  # fmt: skip
        phases["order_search"] = time.perf_counter() - started
        started = time.perf_counter()
        fit = ESTIMATORS[settings.estimator](problem, model, settings, order, stats)
        start_step, elbo_trace = 0, []
        if state is not None:
            fit.load_state_dict(state, int(state["step"]))
            torch.set_rng_state(state["rng"])
            start_step, elbo_trace = int(state["step"]), list(state["elbo_trace"])
        phases["setup"] += time.perf_counter() - started

        def save(done: int) -> None:
            atomic_save(
                checkpoint,
                {"fingerprint": fingerprint, "seed": seed, "step": done,
                 "elbo_trace": list(elbo_trace),
                 **fit.state_dict(), "rng": torch.get_rng_state()},
            )  # fmt: skip

        hooks = [CallbackHook(lambda step, elbo: elbo_trace.append(elbo))]
        if progress:
            bar = ProgressHook(
                name, total=settings.steps, initial=start_step, info=fit.progress_info
            )
            if start_step:
                bar.write(f"{name}: resuming from step {start_step} of {settings.steps}",
                          file=sys.stderr)  # fmt: skip
            hooks.append(bar)
        if run.callback is not None:
            hooks.append(CallbackHook(run.callback))
        if checkpoint is not None:
            hooks.append(CheckpointHook(save, every=settings.checkpoint_every, stop=settings.steps))
        started = time.perf_counter()
        train(fit.step, settings.steps, start=start_step, hooks=hooks, name=name)
        phases["training"] = time.perf_counter() - started
        started = time.perf_counter()
        result = variational_result(fit, elbo_trace, settings, config, phases, fingerprint,
                                    progress)  # fmt: skip
        phases["result"] = time.perf_counter() - started
        result.metadata["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
    return result


@contextlib.contextmanager
def _num_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
