"""Fit candidate Pyro models and compare their log evidence: :func:`select`.

Each candidate ``m`` is fitted by stochastic variational inference (Hoffman et
al., "Stochastic variational inference", 2013) from ``num_restarts``
initializations; the restart with the highest final ELBO is kept, and its log
evidence ``log p(x | m)`` is bounded from below by the ELBO and by the
importance-weighted bound (:mod:`pyrostruct.infer.evidence`). Posterior model
probabilities follow from Bayes' rule,

.. math::

    \\log p(m \\mid x) = \\log p(x \\mid m) + \\log p(m)
        - \\log \\sum_{m'} p(x \\mid m') p(m'),

with the bound in place of ``log p(x | m)``. Selecting the candidate with the
largest maximized ELBO is consistent, also under misspecification (Chérief-Abdellatif,
"Consistency of ELBO maximization for model selection", AABI 2019).

Restarts are vectorized: the ``num_restarts`` restarts of a candidate whose
guide ``select`` builds (:class:`~pyro.infer.autoguide.AutoNormal`) run as one
SVI fit of the model inside an extra outermost plate of size ``R``,

.. code-block:: python

    def vectorized(*args, **kwargs):
        with pyro.plate("_pyrostruct_restarts", R, dim=-(max_plate_nesting + 1)):
            return model(*args, **kwargs)

with the guide built on the wrapped model (its parameters get a leading restart
dim, each restart's slice starting from its own initialization) and the loss
summed over restarts. Restarts share no parameter and Adam's update is
elementwise (so is ClippedAdam's clipping), so each restart follows its own
path. One step pays the Python overhead of a step once, while its tensor work
grows with ``R`` (timings: ``benchmarks/results/vectorized_restarts.md``). Each
restart's ELBO comes from the log weights of the traces summed over every dim
but the restart plate (discrete sites summed out by tensor contraction, with
the restart plate kept); the best restart is sliced out into an ordinary guide
of the original model, so evidence estimates, posteriors and ArviZ export see a
plain fit. A model that does not broadcast over the extra batch dim
(``locs[z]`` indexing of an enumerated assignment: plain indexing acts on the
leftmost dim, which the restart plate would occupy) is vectorized with
:func:`torch.func.vmap` instead: the restarts' AutoNormal parameters are
stacked, the mean-field draws and their log densities computed batched, and the
model's log joint (enumerated sites summed out) per restart under ``vmap``, so
the model runs as written (:func:`_vmap_restart_log_weights`). Candidates with
their own guide, or that neither way vectorizes, fit their restarts one by one
(``vectorize_restarts``).

User models with a discrete assignment get a data-aware initialization
(:func:`mixture_init`: k-means++ centers for the component locations, a
different seeding per restart) when no ``init`` is given. Their evidence
accounts for label switching (:func:`label_symmetry`): the final ELBO is that
of the kept restart's guide symmetrized over the label permutations (when the
model is checked to be invariant under them), and the final IWAE bound uses
every fitted restart, symmetrized, as one mixture proposal (:func:`_mixture_iwae`),
so that restarts which found different posterior modes all count.

A candidate that raises while fitting is reported, not fatal: see ``on_error``.

Successive halving (Jamieson & Talwalkar, "Non-stochastic best arm
identification and hyperparameter optimization", AISTATS 2016) saves compute:
after each fraction of the steps in ``halving``, candidates (and, when not
vectorized, restarts) whose ELBO, extrapolated optimistically along its recent
trend to the end of the run, is still worse than the best one's beyond
``halving_z`` standard errors plus a margin are not fitted further. The steps
saved are reported.

The pieces live in their own modules: the candidates and how a restart is
built (:mod:`~pyrostruct.selection.candidates`), vectorized restarts
(:mod:`~pyrostruct.selection.restarts`), label symmetry
(:mod:`~pyrostruct.selection.symmetry`), the executor tasks
(:mod:`~pyrostruct.selection.tasks`), a candidate's final evidence
(:mod:`~pyrostruct.selection.evidence`), successive halving
(:mod:`~pyrostruct.selection.halving`) and the result
(:mod:`~pyrostruct.selection.result`); this module is the sweep itself: one
function whose docstring documents every option (about 130 of its lines), hence
over 500 lines.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

from pyrostruct.data import model_arguments
from pyrostruct.errors import InputError, check_seed
from pyrostruct.executors import check_executor, executor_session
from pyrostruct.infer.evidence import LowESSWarning
from pyrostruct.infer.init import mixture_init
from pyrostruct.selection.candidates import (
    Candidate,
    FittedCandidate,
    RestartFit,
    _check_int,
    _check_lr,
    _Context,
    _log_prior,
    _normalize_candidates,
)
from pyrostruct.selection.contention import _contention_pass
from pyrostruct.selection.evidence import _smc_skipped
from pyrostruct.selection.halving import _halve
from pyrostruct.selection.restarts import _not_vectorizable
from pyrostruct.selection.symmetry import label_symmetry
from pyrostruct.selection.tasks import _failure, _payload, _run_task

__all__ = ["Candidate", "FittedCandidate", "label_symmetry", "mixture_init", "select"]

EVIDENCE_METHODS = ("elbo", "iwae", "smc")


def select(
    candidates: Mapping | Callable,
    *args,
    grid: Iterable | None = None,
    steps: int = 1000,
    num_restarts: int = 2,
    evidence: Sequence[str] = ("elbo", "iwae", "smc"),
    prior: Mapping | None = None,
    executor: str = "serial",
    seed: int = 0,
    lr: float = 0.05,
    halving: Sequence[float] | None = (0.25, 0.5),
    halving_z: float = 3.0,
    halving_margin: float | None = None,
    elbo_particles: int = 500,
    iwae_particles: int = 100,
    iwae_repeats: int = 10,
    smc_particles: int = 500,
    smc_target_se: float = 0.5,
    contention_margin: float = 5.0,
    max_workers: int | None = None,
    ess_warning: float = 0.05,
    progress: bool = False,
    vectorize_restarts: bool | None = None,
    on_error: str = "keep",
    symmetrize: bool = True,
    **kwargs,
):
    """Fit each candidate model by SVI and rank them by their log evidence.

    :param candidates: ``{name: model}``, ``{name: (model, guide)}``,
        ``{name: Candidate}``, or a family ``lambda g: model`` together with
        ``grid``.
    :type candidates: mapping or callable
    :param args, kwargs: passed to every model and guide (typically the data); NumPy
        arrays and numeric pandas objects as tensors (:func:`pyrostruct.data.model_arguments`).
    :param grid: the values ``g`` of a family ``candidates``; they are the
        candidates' names.
    :type grid: iterable, optional
    :param int steps: SVI steps per restart (ClippedAdam, learning rate
        decaying tenfold).
    :param int num_restarts: initializations per candidate; the restart with the
        best final ELBO (a 100-particle estimate) is kept as the candidate's
        posterior, and the IWAE bound uses every fitted restart as a mixture
        proposal (restarts that reached other posterior modes add their mass).
        Restarts are cheap when vectorized; posteriors with several modes beyond
        label switching (small data, many components) need more of them, and
        more ``iwae_particles``.
    :param evidence: estimators to compute, among ``"elbo"``, ``"iwae"`` and
        ``"smc"``. ``"smc"`` is the guide-free tempered SMC estimate
        (:func:`~pyrostruct.infer.smc.smc_estimate`, ``smc_particles`` particles,
        8 runs), computed only for candidates small enough for it
        (:func:`~pyrostruct.infer.smc.smc_affordable`: at most 10 continuous latent
        dimensions and 100 observed values), only when every candidate is (the
        candidates are ranked by one estimator), and only when at least two are
        left to rank after successive halving (``result.smc_skipped`` says
        why it did not run). Otherwise the candidates still in contention
        after the bounds (:mod:`~pyrostruct.selection.contention`) get the SMC
        estimate started from their fitted guide (annealed from the Laplace
        Gaussian at the mode nearest the guide's mean, symmetrized over label permutations;
        :func:`~pyrostruct.selection.evidence._smc_guide`), and the others keep
        their bound; ``result.table.evidence_method`` says which ranked each
        candidate, ``smc_start`` how its SMC started. A bound's effective
        sample size cannot tell that its guide missed a mode (it weighs only
        what the guide proposes); SMC, which starts from the prior, can. The bounds fall
        short of the evidence by a gap that grows with the model's size and its posterior's
        modes; SMC's estimate does not. The log
        evidence used for the posterior model probabilities is SMC's when
        computed, else the IWAE bound when computed (the tighter
        bound), else the ELBO; ``result.evidence_method`` says which.
    :type evidence: sequence of str
    :param prior: prior probabilities of the candidates (normalized); uniform by
        default.
    :type prior: mapping, optional
    :param str executor: where the fits run, ``"serial"``, ``"process"`` or
        ``"ray"`` (:mod:`pyrostruct.executors`); same seed, same result.
    :param int seed: seed of every random choice (initializations, SVI,
        estimators).
    :param float lr: learning rate of the ClippedAdam optimizer, for the
        candidates that do not set their own (:class:`Candidate` ``lr``).
    :param halving: fractions of ``steps`` after which clearly worse restarts and
        candidates stop (successive halving); ``None`` fits everything to the
        end.
    :type halving: sequence of float or None
    :param float halving_z: a candidate stops when its ELBO is below the best
        one's by more than ``halving_z`` combined standard errors plus
        ``halving_margin`` nats.
    :param halving_margin: the margin of that rule in nats; ``None`` (default)
        means ``max(10, 0.02 |best ELBO|)`` (early ELBOs are not converged).
    :type halving_margin: float, optional
    :param int elbo_particles: particles of the final ELBO estimate, computed
        for the best restart of each candidate (restarts are ranked by a
        100-particle ELBO).
    :param int iwae_particles: ``K`` of the IWAE bound, computed for the best
        restart of each candidate.
    :param int iwae_repeats: number of independent repeats of the IWAE bound.
    :param int smc_particles: particles of each of the 8 runs of the SMC estimate
        (see ``evidence``); guide-started runs (4) start at 200 particles and
        double, up to ``4 * smc_particles``, until their standard error is at
        most ``smc_target_se`` nats.
    :param float smc_target_se: see ``smc_particles``.
    :param float contention_margin: nats of the contention rule
        (:mod:`~pyrostruct.selection.contention`).
    :param max_workers: worker processes of the ``"process"`` executor (default
        ``min(cpu count, 8)``), CPUs of the ``"ray"`` one.
    :type max_workers: int, optional
    :param float ess_warning: warn (:class:`~pyrostruct.infer.LowESSWarning`)
        naming the candidates whose importance weights have an effective sample
        size below this fraction of ``iwae_particles``.
    :param bool progress: show a progress bar over candidates.
    :param vectorize_restarts: fit the ``num_restarts`` restarts of a candidate in
        one SVI run, batched along an extra outermost plate (see the module
        docstring), instead of one run per restart. ``None`` (default):
        vectorize every candidate whose guide ``select`` builds and whose model
        broadcasts over the extra dim (checked by a trial run; models with
        ``pyro.param`` sites, shared by the restarts, are not vectorized), others
        fit their restarts one by one. ``True``: the same, but raise
        :class:`InputError` if a candidate cannot be vectorized. ``False``: one
        SVI run per restart. A task of the executor is one candidate with all its
        restarts when vectorized, one (candidate, restart) otherwise; restarts of
        a vectorized candidate are not dropped by successive halving (they cost
        little), candidates are. Vectorized and sequential restarts draw
        different random numbers, so their results differ within Monte Carlo
        error; each is reproducible.
    :type vectorize_restarts: bool or None
    :param str on_error: what a candidate whose model raises (or whose ELBO
        becomes non-finite) does to the sweep, ``"keep"`` or ``"raise"``.
        ``"keep"`` (default): the other candidates are fitted and returned; the
        failed one gets ``status`` ``"failed: <error>"``, NaN evidence and
        posterior probability, an entry in ``result.failures``, and a
        :class:`~pyrostruct.selection.result.CandidateFailedWarning` names it; the
        posterior probabilities are then over the fitted candidates only. When
        every candidate fails, a :class:`RuntimeError` lists each error.
        ``"raise"``: the first failure stops the sweep with a
        :class:`RuntimeError` naming the candidate (chained to the original
        exception) and the results computed so far are discarded.
    :param bool symmetrize: estimate the final ELBO and IWAE bound of a candidate
        whose model is invariant under relabelling (a mixture, checked
        numerically) with its guide symmetrized over the label permutations
        (:func:`label_symmetry`): a unimodal guide covers one of the ``K!``
        copies of each posterior mode, and without it the bounds of a
        ``K``-component candidate fall short by up to ``log K!``, which biases
        the selection towards small ``K``. ``result.symmetrized`` says which
        candidates were.
    :returns: the evidence and posterior probability of every candidate, with
        ``vectorized_restarts`` (candidate -> whether its restarts ran
        vectorized), ``not_vectorized`` (candidate -> why not, when tried) and
        ``restart_elbos`` (candidate -> each restart's last 100-particle ELBO),
        ``failures`` (candidate -> error message, see ``on_error``),
        ``data_init`` (candidate -> whether :func:`mixture_init` initialized it),
        ``symmetrized`` (candidate -> whether its final evidence accounts for
        label switching) and ``iwae_restarts`` (candidate -> how many restarts
        the IWAE proposal mixes).
    :rtype: ~pyrostruct.selection.SelectionResult
    :raises InputError: for no candidates, bad option values (``lr`` not a finite
        positive number, ...), unknown executor or prior names, or
        ``vectorize_restarts=True`` for a candidate that cannot be vectorized.
    :raises RuntimeError: when a candidate failed with ``on_error="raise"``, or
        every candidate failed.
    """
    from pyrostruct.selection.result import CandidateFailedWarning, SelectionResult

    cands = _normalize_candidates(candidates, grid)
    args, kwargs = model_arguments(args, kwargs)
    names = [n for n, _ in cands]
    if len(set(map(repr, names))) != len(names):
        raise InputError("candidate names must be unique")
    steps = _check_int(steps, "steps")
    num_restarts = _check_int(num_restarts, "num_restarts")
    for value, label in [
        (elbo_particles, "elbo_particles"),
        (iwae_particles, "iwae_particles"),
        (iwae_repeats, "iwae_repeats"),
        (smc_particles, "smc_particles"),
    ]:
        _check_int(value, label)
    if isinstance(evidence, str):
        evidence = (evidence,)
    evidence = tuple(evidence)
    bad = [e for e in evidence if e not in EVIDENCE_METHODS]
    if bad or not evidence:
        raise InputError(f"evidence must be a subset of {list(EVIDENCE_METHODS)}, got {evidence}")
    _check_lr(lr, "lr")
    _check_lr(smc_target_se, "smc_target_se")
    _check_lr(contention_margin, "contention_margin")
    data_init = {}
    for j, (name, cand) in enumerate(cands):
        if cand.guide is None and cand.guide_factory is None and cand.init is None:
            try:
                init = mixture_init(cand.model, *args, **kwargs)
            except Exception:  # noqa: BLE001 - a model that raises fails later, named
                init = None
            if init is not None:
                cands[j] = (name, dataclasses.replace(cand, init=init))
        data_init[name] = cands[j][1].init is not None and cand.init is None
    for name, cand in cands:
        if cand.lr is not None:
            _check_lr(cand.lr, f"candidate {name!r}: lr")
    if on_error not in ("keep", "raise"):
        raise InputError(f"on_error must be 'keep' or 'raise', got {on_error!r}")
    rungs = sorted({int(round(f * steps)) for f in (halving or ())})
    if any(not 0 < f < 1 for f in (halving or ())):
        raise InputError(f"halving fractions must lie strictly between 0 and 1, got {halving}")
    rungs = [r for r in rungs if 0 < r < steps] + [steps]
    log_prior = _log_prior(prior, names)
    smc_skipped = _smc_skipped(cands, args, kwargs) if "smc" in evidence else {}
    # one estimator ranks all candidates: either every candidate gets the guide-free SMC
    # estimate, or the ones in contention get it started from their guides
    guide_smc = bool(smc_skipped) and "smc" in evidence
    check_executor(executor)
    if vectorize_restarts is not None and not isinstance(vectorize_restarts, bool):
        raise InputError(
            f"vectorize_restarts must be None, True or False, got {vectorize_restarts!r}"
        )

    # which candidates fit their restarts as one vectorized SVI run
    vectorized, not_vectorized, vmap_restarts = set(), {}, set()
    failures: dict[int, dict] = {}  # candidate index -> _failure() record
    if num_restarts > 1 and vectorize_restarts is not False:
        for i, (name, cand) in enumerate(cands):
            try:
                used: list = []
                reason = _not_vectorizable(cand, args, kwargs, num_restarts, vmap_used=used)
                if reason is None and used[0]:
                    vmap_restarts.add(i)
            except InputError:
                raise
            except Exception as e:  # noqa: BLE001 - the model raised: this candidate fails
                _record_failure(failures, _failure(i, None, e), cands, on_error, state=None)
                continue
            if reason is None:
                vectorized.add(i)
            else:
                not_vectorized[name] = reason
        if vectorize_restarts and not_vectorized:
            name, reason = next(iter(not_vectorized.items()))
            raise InputError(
                f"vectorize_restarts=True, but the restarts of candidate {name!r} cannot be "
                f"vectorized: {reason}; pass vectorize_restarts=None to fit them one by one"
            )

    ctx = _Context(
        cands,
        args,
        kwargs,
        steps,
        float(lr),
        check_seed(seed),
        elbo_particles,
        iwae_particles,
        iwae_repeats,
        rung_particles=min(100, elbo_particles),
        smc_particles=smc_particles,
        smc_guide_particles=min(200, smc_particles),
        smc_target_se=float(smc_target_se),
        num_restarts=num_restarts,
        symmetrize=bool(symmetrize),
        vmap_restarts=frozenset(vmap_restarts),
    )
    tasks = {(i, r): None for i in range(len(cands)) for r in range(num_restarts)}
    state = {key: RestartFit() for key in tasks}
    alive = {key for key in tasks if key[0] not in failures}
    group_state: dict[int, dict] = {}  # parameters of the vectorized candidates
    dropped_at: dict[int, int] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cands), desc="candidates", unit="model")
    start = 0
    with executor_session(executor, ctx, max_workers=max_workers) as run:
        # 1. fit every (candidate, restart) rung by rung, dropping clear losers; a task
        # is one candidate with all its restarts (vectorized) or one (candidate, restart)
        for stop in rungs:
            keys = sorted({(i, None) for i, _ in alive if i in vectorized})
            keys += sorted(key for key in alive if key[0] not in vectorized)
            payloads = [
                _payload(i, r, start, stop, False, evidence, group_state.get(i))
                if r is None
                else _payload(i, r, start, stop, False, evidence, state[(i, r)].checkpoint)
                for i, r in keys
            ]
            for (i, r), out in zip(keys, run(_run_task, payloads)):
                if "failed" in out:
                    _record_failure(failures, out, cands, on_error, state)
                    alive.difference_update([k for k in alive if k[0] == i])
                    continue
                if r is None:
                    group_state[i] = out["state"]
                    for j in range(num_restarts):
                        st = state[(i, j)]
                        st.absorb({
                            "losses": out["losses"][j],
                            "seconds": out["seconds"] / num_restarts,
                            "elbo": out["elbo"][j],
                            "elbo_se": out["elbo_se"][j],
                            "rung_elbo": out["elbo"][j],
                            "enumerated": out["enumerated"],
                            "max_plate_nesting": out["max_plate_nesting"],
                        })  # fmt: skip
                    continue
                st = state[(i, r)]
                st.absorb(out)
                st.rung_elbo = st.elbo
            start = stop
            if not alive:
                break
            if stop < steps:
                newly = _halve(
                    alive, state, halving_z, halving_margin, dropped_at, stop, steps, vectorized
                )
                if bar is not None and newly:
                    bar.update(newly)
        # 2. the evidence of the best restart of each remaining candidate
        chosen = {}
        for key in sorted(alive):
            if key[0] not in chosen or state[key].elbo > state[chosen[key[0]]].elbo:
                chosen[key[0]] = key
        keys = [chosen[i] for i in sorted(chosen)]
        payloads = [
            _payload(i, r, steps, steps, True, evidence, group_state[i], vectorized=True)
            if i in vectorized
            else _payload(i, r, steps, steps, True, evidence, state[(i, r)].checkpoint)
            for i, r in keys
        ]
        for payload in payloads:  # the other restarts join the IWAE proposal (_evidence)
            i, r = payload["index"], payload["restart"]
            payload["others"] = [
                (j, None if i in vectorized else state[(i, j)].checkpoint["params"],
                 state[(i, j)].elbo)
                for j in range(num_restarts)
                if j != r and (i, j) in alive and math.isfinite(state[(i, j)].elbo)
            ]  # fmt: skip
            payload["own_elbo"] = state[(i, r)].elbo

        def tick(payload, out):
            if bar is not None:
                if "failed" in out:
                    bar.set_postfix_str(f"{cands[payload['index']][0]}: failed")
                else:
                    bar.set_postfix_str(f"{cands[payload['index']][0]}: ELBO {out['elbo']:.4g}")
                bar.update(1)

        for (i, r), out in zip(keys, run(_run_task, payloads, tick)):
            if "failed" in out:
                _record_failure(failures, out, cands, on_error, state)
                alive.difference_update([k for k in alive if k[0] == i])
                continue
            st = state[(i, r)]
            st.absorb(out)
            st.chosen = True
        if bar is not None:
            bar.close()
        # 3. the guide-free SMC estimate of every fitted candidate (all small enough)
        kept = [k for k in keys if k in alive]
        if "smc" in evidence and len(kept) < 2:  # nothing left to rank: not worth its cost
            smc_skipped = {cands[i][0]: "not needed: one candidate left to rank" for i, _ in keys}
            evidence = tuple(e for e in evidence if e != "smc")
        if "smc" in evidence and guide_smc:  # 3b. guide-started, in contention only
            smc_bar = tqdm(desc="SMC evidence", unit="model") if progress else None
            smc_skipped.update(_contention_pass(
                run, kept, state, names, evidence, contention_margin, halving_z, smc_bar
            ))  # fmt: skip
            for i, r in kept:  # those estimated are no longer skipped
                if state[(i, r)].smc_start == "guide":
                    smc_skipped.pop(names[i], None)
            if smc_bar is not None:
                smc_bar.close()
        elif "smc" in evidence:
            smc_bar = None
            if progress:
                from tqdm.auto import tqdm

                smc_bar = tqdm(total=len(kept), desc="SMC evidence", unit="model")
            smc_tasks = [{"index": i, "restart": r, "task": "smc",
                          "model_params": state[(i, r)].checkpoint["params"]}
                         for i, r in kept]  # fmt: skip

            def smc_tick(payload, out):
                if smc_bar is not None:
                    smc_bar.update(1)

            for key, out in zip(kept, run(_run_task, smc_tasks, smc_tick)):
                st = state[key]
                if "failed" in out:  # SMC's failure leaves the fitted candidate as it is
                    st.smc_failed = out["failed"]
                    continue
                st.absorb(out)
            if smc_bar is not None:
                smc_bar.close()

    if len(failures) == len(cands):
        # a bad input of every candidate stays an InputError (the CLI's exit code 2)
        error = InputError if all(f["input_error"] for f in failures.values()) else RuntimeError
        raise error(
            "every candidate failed: "
            + "; ".join(f"{cands[i][0]!r}: {f['failed']}" for i, f in sorted(failures.items()))
        ) from next(iter(failures.values()))["exception"]
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(cands)} candidates failed and were left out of the "
            "posterior model probabilities: "
            + "; ".join(f"{cands[i][0]!r}: {f['failed']}" for i, f in sorted(failures.items()))
            + " (see result.failures; on_error='raise' stops at the first failure)",
            CandidateFailedWarning,
            stacklevel=2,
        )
    total_steps = steps * num_restarts * len(cands)
    run_steps = sum(len(s.losses) for s in state.values())
    result = SelectionResult._from_fits(
        cands,
        ctx,
        state,
        alive,
        dropped_at,
        log_prior,
        evidence,
        {cands[i][0]: f["failed"] for i, f in failures.items()},
        savings={
            "steps_full": total_steps,
            "steps_run": run_steps,
            "fraction_saved": 1 - run_steps / total_steps,
        },
    )
    result.vectorized_restarts = {name: i in vectorized for i, (name, _) in enumerate(cands)}
    result.data_init = data_init
    result.iwae_restarts = {
        name: max((state[(i, r)].iwae_restarts for r in range(num_restarts)), default=0)
        for i, (name, _) in enumerate(cands)
    }
    result.symmetrized = {
        name: any(state[(i, r)].symmetrized for r in range(num_restarts))
        for i, (name, _) in enumerate(cands)
    }
    result.not_vectorized = not_vectorized
    result.smc_skipped = smc_skipped
    result.restart_elbos = {
        name: [state[(i, r)].rung_elbo for r in range(num_restarts)]
        for i, (name, _) in enumerate(cands)
    }
    if "iwae" in evidence and iwae_particles > 1:
        t = result.table
        low = t[(t.status == "fitted") & (t.ess < ess_warning * iwae_particles)]
        if len(low):
            warnings.warn(
                f"importance-weighted bound: effective sample size below "
                f"{ess_warning:.0%} of {iwae_particles} particles for candidates "
                f"{list(low.candidate)} (ESS {[round(v, 1) for v in low.ess]}); their IWAE "
                "bounds are loose (typical above the true model size)",
                LowESSWarning,
                stacklevel=2,
            )
    if result.smc_failed:  # the table mixes estimates then: say so
        name, why = next(iter(result.smc_failed.items()))
        warnings.warn(
            f"the SMC evidence estimate failed for candidates {list(result.smc_failed)} "
            f"({name!r}: {why}); they are ranked by their IWAE bound (result.smc_failed; the "
            "table's evidence_method names each candidate's estimate)",
            UserWarning,
            stacklevel=2,
        )
    return result


def _record_failure(failures: dict, out: dict, cands, on_error: str, state) -> None:
    """Note candidate ``out["index"]``'s failure; with ``on_error="raise"``, raise it."""
    i = out["index"]
    name = cands[i][0]
    if on_error == "raise":
        done = sorted(
            {cands[k[0]][0] for k, st in (state or {}).items() if st.losses} - {name},
            key=repr,
        )
        raise RuntimeError(
            f"select: candidate {name!r} failed: {out['failed']} (on_error='raise'; candidates "
            f"partly or fully fitted before it, now discarded: {done}; pass on_error='keep' to "
            "keep the others)"
        ) from out.get("exception")
    failures.setdefault(i, out)
