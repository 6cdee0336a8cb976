"""Which experiment next? Intervention design on the posterior of
:func:`~pyrostruct.causal.discover`.

:func:`suggest_interventions` ranks candidate experiments (perfect interventions on one
or a few nodes, at chosen values, with a number of samples) by what they are expected to
tell about the graph, and chooses a batch:

- ``strategy="eig"``: the expected information gain ``I(G; Y | xi)`` under the posterior
  over DAGs, the parameters of each DAG integrated given the data (closed-form outcome
  likelihoods of the linear Gaussian SEM, :mod:`pyrostruct.causal.information`). A batch
  is chosen greedily on the *joint* gain of the experiments chosen so far plus one more
  (as CBED's greedy batches, Tigas et al., NeurIPS 2022), not on a sum of single gains:
  a second experiment that repeats what the first tells adds little.
- ``strategy="ait"``: the discrepancy score of active intervention targeting (Scherrer
  et al. 2021), a fast heuristic; the batch is its top experiments.
- ``strategy="random"``: experiments in random order, the baseline.

Sets of several targets are enumerated among the best single targets, or found by
gradient ascent on the gain over relaxed target choices and values (``search="gradient"``,
DiffCBED's construction, Tigas et al., ICML 2023: :mod:`pyrostruct.causal.relaxed_design`).

The posterior over graphs is the variational one of a :class:`CausalResult` (its DAG
draws, spread over equivalence classes where the result does) or the exact one of an
:class:`~pyrostruct.causal.ExactPosterior` (up to 16 nodes); the parameters given a
graph use the BGe priors rather than the variational weights, which are only fitted for
the orders the fit visited. A gain is only as good as the posterior's uncertainty: an
edge the posterior is confidently wrong about is never targeted, which is where the
exact posterior helps at small sizes (``benchmarks/active_design.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from pyrostruct.causal.data import bge_columns, check_data
from pyrostruct.causal.exact import ExactPosterior
from pyrostruct.causal.information import Experiment, GraphPosterior
from pyrostruct.causal.relaxed_design import optimize_experiment
from pyrostruct.causal.result import CausalResult
from pyrostruct.causal.settings import check_seed
from pyrostruct.data import is_real_number
from pyrostruct.errors import InputError, check_count
from pyrostruct.infer.bge import bge_hyperparameters

__all__ = ["DesignResult", "suggest_interventions", "STRATEGIES"]

#: The strategies of :func:`suggest_interventions`.
STRATEGIES = ("eig", "ait", "random")

#: ``values="auto"``: every target is set this many standard deviations above its mean.
AUTO_VALUE_SD = 2.0

#: The farthest from its mean a value may set a node, in standard deviations (a linear
#: model says nothing trustworthy so far out, and the outcomes' squares would overflow).
MAX_VALUE_SD = 100.0


@dataclasses.dataclass
class DesignResult:
    """Ranked candidate experiments and the batch chosen.

    :ivar pandas.DataFrame table: one row per candidate, best first: ``experiment`` (as
        text), ``targets`` and ``values`` (tuples, data units), ``samples``, ``score`` and
        ``score_stderr`` (``"eig"``: expected information gain in nats, alone; ``"ait"``:
        discrepancy; ``"random"``: 0).
    :ivar pandas.DataFrame batch: the chosen experiments in order, with ``gain`` and
        ``gain_stderr``: for ``"eig"`` the joint gain added by each (nats), the
        difference of two estimates on common outcomes (it can come out slightly below
        zero when an experiment adds almost nothing), with the joint estimate's standard
        error.
    :ivar dict metadata: strategy, seed, DAG draws, distinct graphs, the posterior's
        entropy (nats: the most any experiment can gain), seconds.
    """

    table: pd.DataFrame
    batch: pd.DataFrame
    metadata: dict

    @property
    def best(self) -> dict:
        """The first experiment of the batch: ``{node name: value}``."""
        row = self.batch.iloc[0]
        return dict(zip(row["targets"], row["values"]))

    @property
    def experiments(self) -> list[dict]:
        """The batch as ``[{node name: value}, ...]``, with the samples of each in
        ``self.batch``."""
        return [dict(zip(t, v)) for t, v in zip(self.batch["targets"], self.batch["values"])]

    def to_frame(self) -> pd.DataFrame:
        """The ranked table (a copy), with ``batch``: each chosen experiment's place in the
        batch (1, 2, ...; 0 for the others)."""
        frame = self.table.copy()
        place: dict = {}
        for k, key in enumerate(_keys(self.batch)):  # by value: texts are rounded
            place.setdefault(key, k + 1)
        frame["batch"] = [place.get(key, 0) for key in _keys(frame)]
        return frame

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_frame` atomically, targets and values ``;``-joined."""
        from pyrostruct._io import atomic_open

        frame = self.to_frame()
        frame["targets"] = [";".join(t) for t in frame["targets"]]
        frame["values"] = [";".join(repr(float(v)) for v in vs) for vs in frame["values"]]
        with atomic_open(path, "w") as f:
            frame.to_csv(f, index=False)

    def plot(self, path: str | os.PathLike | None = None, *, ax=None, top: int = 20):
        """Horizontal bars of the ``top`` candidates' scores with two standard errors."""
        from pyrostruct._io import save_figure

        rows = self.table.head(top).iloc[::-1]
        if ax is None:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 1.2))
        else:
            fig = ax.figure
        ax.barh(rows["experiment"], rows["score"], xerr=2 * rows["score_stderr"], color="C0")
        label = {"eig": "expected information gain (nats)", "ait": "AIT discrepancy"}
        ax.set_xlabel(label.get(self.metadata["strategy"], "score"))
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return ax


def suggest_interventions(
    result: CausalResult | ExactPosterior | Sequence[CausalResult | ExactPosterior],
    data,
    *,
    interventions=None,
    batch_size: int = 1,
    targets: Sequence | None = None,
    max_targets_per_experiment: int = 1,
    values="auto",
    samples_per_experiment: int = 10,
    strategy: str = "eig",
    num_dag_samples: int = 256,
    prescreen: int = 8,
    search: str = "enumerate",
    seed: int = 0,
    progress: bool = False,
) -> DesignResult:
    """Rank candidate experiments by what they would tell about the graph; choose a batch.

    :param result: the posterior over DAGs: :func:`~pyrostruct.causal.discover`'s with the
        linear SEM, the exact one of :func:`~pyrostruct.causal.exact_posterior` (up to 16
        nodes; the same BGe model the gains use, and calibrated where the variational
        posterior can be overconfident), or a list of them, whose draws are pooled in
        equal shares: experiments then also target the edges the posteriors disagree on.
    :param data: the data it was fitted on (the parameters given each graph are integrated
        over it), with ``interventions`` as for ``discover``.
    :param int batch_size: experiments to choose.
    :param targets: the nodes that may be intervened on (names or indices; default all).
    :param int max_targets_per_experiment: nodes set together in one experiment
        (candidates: every set of up to this many targets).
    :param values: the values targets are set to: ``"auto"`` (2 standard deviations above
        the node's mean; mean and standard deviation of the rows without interventions, as
        the fit centres the columns, once there are 2 of them: with very few such rows
        they are rough), a number or a list of numbers of standard deviations for all,
        or ``{node: value or [values]}`` in the data's units (candidates: every
        combination; a value given twice counts once).
    :param int samples_per_experiment: rows each experiment yields.
    :param str strategy: ``"eig"``, ``"ait"`` or ``"random"`` (see the module's text).
    :param int num_dag_samples: posterior DAG draws (the Monte Carlo size).
    :param int prescreen: with ``max_targets_per_experiment > 1``, sets of several nodes
        are formed from the ``prescreen`` nodes whose single-node experiments score best
        (from all nodes for ``"random"``): the number of sets grows as ``d^k`` otherwise.
    :param str search: how sets of targets are found with ``strategy="eig"``:
        ``"enumerate"`` (the prescreened sets at the ``values`` grid) or ``"gradient"``
        (one experiment per batch slot of up to ``max_targets_per_experiment`` targets
        and values within ``values`` standard deviations, ``"auto"``: 2, by gradient
        ascent on the joint gain over Gumbel-softmax-relaxed target choices,
        :mod:`pyrostruct.causal.relaxed_design`; added to the single-node candidates).
    :param int seed: seed of the draws (same seed, same design).
    :param bool progress: a progress bar over the candidates.
    :returns: the ranked candidates and the batch.
    :raises InputError: a result of another SEM, data that do not match it, unknown
        targets, bad values or sizes, or a batch larger than the candidates.

    Example::

        >>> from pyrostruct.causal import datasets, discover
        >>> ds = datasets.make_dataset(d=4, n=100, seed=0)
        >>> design = suggest_interventions(discover(ds.data, steps=50), ds.data, seed=0)
        >>> sorted(design.table.columns)[:3]
        ['experiment', 'samples', 'score']
    """
    started = time.perf_counter()
    posteriors = _check_posteriors(result)
    batch_size, samples = check_design_settings(strategy, batch_size, samples_per_experiment)
    if search not in ("enumerate", "gradient"):
        raise InputError(f"search must be 'enumerate' or 'gradient', got {search!r}")
    if search == "gradient" and strategy != "eig":
        raise InputError("search='gradient' climbs the information gain: it needs strategy='eig'")
    if search == "gradient" and isinstance(values, Mapping):
        raise InputError(
            "search='gradient' chooses the values itself within a bound: give values as a "
            "number of standard deviations (or 'auto': 2), not per node"
        )
    num_dag_samples = check_count(num_dag_samples, "num_dag_samples")
    if num_dag_samples < 2 * len(posteriors):
        raise InputError(
            f"num_dag_samples must be at least {2 * len(posteriors)} (2 per posterior), got "
            f"{num_dag_samples}"
        )
    seed = check_seed(seed)
    x, names, mask = check_data(data, interventions)
    result_names = list(posteriors[0].names)
    if x.shape[1] != len(result_names):
        raise InputError(f"data: {x.shape[1]} columns for a result over {len(result_names)} nodes")
    if isinstance(data, pd.DataFrame) and list(names) != result_names:
        raise InputError(f"data: columns {list(names)}, but the result is over {result_names}")
    _check_fitted_rows(posteriors, len(x), mask)
    names = result_names
    d = len(names)
    nodes = _target_nodes(targets, names)
    k = check_count(max_targets_per_experiment, "max_targets_per_experiment")
    if k > len(nodes):
        raise InputError(f"max_targets_per_experiment is {k} but only {len(nodes)} targets")
    prescreen = check_count(prescreen, "prescreen")
    z, mean, sd = bge_columns(x, mask, names=names)
    levels = _values(values, names, nodes, mean, sd)
    candidates = _candidates(nodes, 1, levels, samples)
    pool_size = len(nodes) if strategy == "random" else min(prescreen, len(nodes))
    most = len(candidates) + (
        batch_size if search == "gradient" else _count_sets(pool_size, k, levels, nodes)
    )
    if batch_size > most:
        raise InputError(f"batch_size {batch_size} exceeds the {most} candidates")

    nu, c = bge_hyperparameters(d, None, 1.0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cuts = np.linspace(0, num_dag_samples, len(posteriors) + 1).round().astype(int)
        dags = np.concatenate(
            [p.sample_dags(int(k), seed=seed) for p, k in zip(posteriors, np.diff(cuts))]
        )
        posterior = GraphPosterior(dags, z, mask, nu=nu, c=c)
        parameters = posterior.draw_parameters()
        scores = _scores(posterior, parameters, candidates, strategy, progress)
        if search == "gradient":
            # the bound on values: the largest of the grid (values is a number, a list or
            # "auto" here: per-node values were refused above)
            bound = max(abs(v) for vs in levels.values() for v in vs)
            found: list[Experiment] = []
            for _ in range(batch_size):
                e, _ = optimize_experiment(
                    posterior, parameters, nodes=nodes, max_targets=k, samples=samples,
                    chosen=found, max_value=bound,
                )  # fmt: skip
                found.append(e)
            # one experiment per target set: a near copy adds little (batches are joint)
            found = list({e.targets: e for e in reversed(found)}.values())[::-1]
            found = [e for e in found if e not in candidates]
            candidates += found
            scores += _scores(posterior, parameters, found, strategy, progress)
        elif k > 1:
            pool = nodes if strategy == "random" else _best_nodes(candidates, scores, prescreen)
            several = [e for e in _candidates(pool, k, levels, samples) if len(e.targets) > 1]
            candidates += several
            scores += _scores(posterior, parameters, several, strategy, progress)
        if batch_size > len(candidates):  # the bound above counted the most values per node
            raise InputError(f"batch_size {batch_size} exceeds the {len(candidates)} candidates")
        order = (
            torch.randperm(len(candidates)).tolist()
            if strategy == "random"
            else sorted(range(len(candidates)), key=lambda i: -scores[i][0])
        )
        chosen = _batch(posterior, parameters, candidates, scores, order, strategy, batch_size)

    def describe(e: Experiment) -> dict:
        tg = tuple(names[t] for t in e.targets)
        vals = tuple(float(mean[t] + v * sd[t]) for t, v in zip(e.targets, e.values))
        if not all(math.isfinite(v) for v in vals):
            raise InputError(f"the value of {tg} in the data's units overflows: {vals}")
        text = ", ".join(f"{n}={v:.4g}" for n, v in zip(tg, vals))
        return {"experiment": f"do({text})", "targets": tg, "values": vals, "samples": e.samples}

    table = pd.DataFrame(
        [
            {**describe(candidates[i]), "score": scores[i][0], "score_stderr": scores[i][1]}
            for i in order
        ]
    )
    batch = pd.DataFrame(
        [{**describe(candidates[i]), "gain": g, "gain_stderr": se} for i, g, se in chosen]
    )
    metadata = {
        "strategy": strategy,
        "seed": int(seed),
        "num_dag_samples": num_dag_samples,
        "distinct_graphs": len(posterior.graphs),
        "posterior_entropy": round(posterior.entropy, 6),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return DesignResult(table=table, batch=batch, metadata=metadata)


def _check_posteriors(result) -> list:
    """``result`` as a list of posteriors over the same nodes (checked)."""
    posteriors = list(result) if isinstance(result, (list, tuple)) else [result]
    if not posteriors:
        raise InputError("result: no posterior given")
    for post in posteriors:
        if not isinstance(post, (CausalResult, ExactPosterior)):
            raise InputError(
                "result must be a CausalResult of discover or an ExactPosterior (or a list of "
                f"them), got {type(post).__name__}"
            )
        if isinstance(post, CausalResult) and post.metadata.get("sem") != "linear":
            raise InputError(
                "suggest_interventions needs the linear Gaussian SEM (closed-form outcome "
                f"likelihoods); this result used sem={post.metadata.get('sem')!r}"
            )
        if list(post.names) != list(posteriors[0].names):
            raise InputError(f"result: posteriors over different nodes: {post.names} and "
                             f"{posteriors[0].names}")  # fmt: skip
    return posteriors


def _check_fitted_rows(posteriors, num_rows: int, mask) -> None:
    """Refuse data without interventions for a posterior fitted with some (its intervened
    rows would be taken as observational); warn when a fit saw another number of rows
    (allowed: the design then uses that posterior with these rows)."""
    for post in posteriors:
        if post.intervention_targets and mask is None:
            raise InputError(
                f"the result was fitted with interventions on {post.intervention_targets} "
                "(node indices); pass the same interventions= with the data, or its intervened "
                "rows are taken as observational"
            )
        fitted = post.metadata.get("num_rows") if isinstance(post, CausalResult) else None
        if fitted is not None and fitted != num_rows:
            warnings.warn(
                f"the result was fitted on {fitted} rows; the data have {num_rows}: the "
                "design uses that posterior with these rows",
                UserWarning,
                stacklevel=3,
            )


def _scores(posterior, parameters, candidates, strategy, progress) -> list[tuple[float, float]]:
    if strategy == "random":
        return [(0.0, 0.0)] * len(candidates)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(candidates), desc=f"design ({strategy})", unit="experiment")
    out = []
    try:
        for e in candidates:
            if strategy == "eig":
                out.append(posterior.information_gain([e], parameters))
            else:
                out.append((posterior.ait_scores([e], parameters), 0.0))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


def _batch(posterior, parameters, candidates, scores, order, strategy, size):
    """``[(candidate index, gain, stderr)]``: greedy on the joint gain for ``"eig"``, the
    first ``size`` of ``order`` otherwise.

    Every joint estimate of one step draws the outcome noise from one seed (common random
    numbers), the batch so far included: the candidates are compared, and the gain each
    adds is measured, on the same outcomes of the experiments already chosen.
    """
    if strategy != "eig":
        return [(i, *scores[i]) for i in order[:size]]
    chosen = [(order[0], *scores[order[0]])]
    step_seeds = torch.randint(2**62, (size,)).tolist()
    while len(chosen) < size:
        taken = [candidates[i] for i, _, _ in chosen]
        seed = step_seeds[len(chosen)]
        before, _ = _joint_gain(posterior, parameters, taken, seed)
        best = None
        for i in order:
            if any(i == j for j, _, _ in chosen):
                continue
            gain, se = _joint_gain(posterior, parameters, [*taken, candidates[i]], seed)
            if best is None or gain > best[1]:
                best = (i, gain, se)
        chosen.append((best[0], best[1] - before, best[2]))
    return chosen


def _joint_gain(posterior, parameters, experiments, seed: int) -> tuple[float, float]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return posterior.information_gain(experiments, parameters)


def check_design_settings(strategy, batch_size, samples_per_experiment) -> tuple[int, int]:
    """``(batch_size, samples_per_experiment)`` checked with ``strategy`` (as
    :func:`suggest_interventions` and :class:`~pyrostruct.causal.ActiveLearner` take them).

    :raises InputError: an unknown strategy, a count that is not a positive integer, or
        ``"ait"`` with fewer than 2 samples per experiment.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    batch_size = check_count(batch_size, "batch_size")
    samples = check_count(samples_per_experiment, "samples_per_experiment")
    if strategy == "ait" and samples < 2:
        raise InputError("strategy='ait' compares variances within experiments: it needs "
                         f"samples_per_experiment >= 2, got {samples}")  # fmt: skip
    return batch_size, samples


def _target_nodes(targets, names: list, what: str = "targets") -> list[int]:
    if targets is None:
        return list(range(len(names)))
    if isinstance(targets, (str, int, np.integer)):
        targets = [targets]
    out = []
    for t in targets:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < len(names):
            out.append(int(t))
        elif t in names:
            out.append(names.index(t))
        else:
            raise InputError(f"{what}: unknown node {t!r}; the nodes are {names}")
    if not out:
        raise InputError("targets: no node given")
    return sorted(set(out))


def _keys(frame: pd.DataFrame) -> list[tuple]:
    """The experiment of every row of a table or batch: ``(targets, values, samples)``."""
    return list(zip(frame["targets"], frame["values"], frame["samples"]))


def _values(values, names, nodes, mean, sd) -> dict[int, list[float]]:
    """Candidate values of every target node, in standardized units."""
    if isinstance(values, str):
        if values != "auto":
            raise InputError(f"values must be 'auto', a number or a dict, got {values!r}")
        return {t: [AUTO_VALUE_SD] for t in nodes}
    if is_real_number(values):
        values = [values]
    if isinstance(values, (list, tuple, np.ndarray)):
        ok = [is_real_number(v, finite=True) and abs(v) <= MAX_VALUE_SD for v in values]
        if not ok or not all(ok):
            raise InputError(
                f"values must be finite numbers of standard deviations, at most {MAX_VALUE_SD:g} "
                f"in size, got {values!r}"
            )
        return {t: list(dict.fromkeys(float(v) for v in values)) for t in nodes}  # each once
    if not isinstance(values, Mapping):
        raise InputError(f"values must be 'auto', a number or a dict, got {values!r}")
    out = {t: [AUTO_VALUE_SD] for t in nodes}
    for key, given in values.items():
        (t,) = _target_nodes([key], names, what="values")
        if t not in nodes:
            raise InputError(f"values: {key!r} is not among the targets")
        given = [given] if np.isscalar(given) else list(given)
        if not given or not all(is_real_number(v, finite=True) for v in given):
            raise InputError(f"values of {key!r} must be finite numbers, got {given!r}")
        out[t] = [(float(v) - mean[t]) / sd[t] for v in dict.fromkeys(float(v) for v in given)]
        if not all(abs(v) <= MAX_VALUE_SD for v in out[t]):
            raise InputError(
                f"values of {key!r} lie more than {MAX_VALUE_SD:g} standard deviations from "
                f"the node's mean: {given!r}"
            )
    return out


def _count_sets(pool: int, k: int, levels: dict, nodes) -> int:
    """The most multi-node candidates a pool of ``pool`` nodes gives (with the most values
    per node)."""
    most = max(len(v) for v in levels.values()) if levels else 1
    return sum(math.comb(pool, size) * most**size for size in range(2, k + 1))


def _best_nodes(singles, scores, count: int) -> list[int]:
    """The ``count`` nodes with the best single-node score (over their values)."""
    best: dict[int, float] = {}
    for e, (score, _) in zip(singles, scores):
        best[e.targets[0]] = max(score, best.get(e.targets[0], -math.inf))
    return sorted(sorted(best, key=lambda t: -best[t])[:count])


def _candidates(nodes, k, values, samples) -> list[Experiment]:
    out = []
    for size in range(1, k + 1):
        for combo in itertools.combinations(nodes, size):
            for vals in itertools.product(*(values[t] for t in combo)):
                out.append(Experiment(tuple(combo), tuple(vals), samples))
    return out
