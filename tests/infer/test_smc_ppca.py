"""Guide-started SMC on probabilistic PCA against references (issue 23).

The ELBO's gap to the log evidence grows with the rank of a PPCA candidate,
so selection by ELBO penalizes larger ranks twice; the guide-started SMC
estimate (:func:`pyrostruct.infer.smc.smc_estimate` with ``start=guide``)
must not. The references are prior-started SMC runs with a large budget (at
D = 5 they need no guide) and, at D = 12, a long run from a start three
Laplace widths wide.
"""

import functools
import math
import warnings

import pyro
import pytest
import torch

from pyrostruct.infer.smc import smc_estimate
from pyrostruct.selection import make_ppca_data, select
from pyrostruct.selection.families import ppca, standardize

pytestmark = pytest.mark.slow


def _fits(x, ranks, w_scale=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return select(functools.partial(ppca, w_scale=w_scale), x, grid=ranks,
                      evidence=("elbo",), halving=None, steps=500, seed=0)  # fmt: skip


def _smc(fit, x, seed, **kw):
    with pyro.get_param_store().scope(fit.params), pyro.validation_enabled(False):
        pyro.set_rng_seed(seed)
        return smc_estimate(fit.model, x, max_plate_nesting=1, **kw)


def test_elbo_gap_grows_with_rank_and_guide_started_smc_gap_does_not():
    torch.set_default_dtype(torch.float64)
    try:
        x = standardize(make_ppca_data(40, 5, 2, seed=3), per_column=False)
        ranks = [1, 2, 3]
        res = _fits(x, ranks)
        elbo_gaps, smc_errors = [], []
        for r in ranks:
            fit = res.fits[r]
            ref = _smc(fit, x, 2, num_particles=1000, num_repeats=4, num_moves=10)
            est = _smc(fit, x, 1, start=fit.guide, num_particles=200, num_repeats=4,
                       num_moves=10)  # fmt: skip
            # within its reported error of the independent reference at every rank
            assert abs(est.value - ref.value) < 4 * math.hypot(ref.se, est.se) + 0.1, (r, est, ref)
            # the ELBO's gap, measured against the (more precise) agreeing SMC estimate
            elbo_gaps.append((est.value - float(res.table.set_index("candidate").elbo[r]), est.se))
            smc_errors.append(est.value - ref.value)
        (g1, s1), (g3, s3) = elbo_gaps[0], elbo_gaps[-1]
        assert g3 - g1 > 1.0 + 4 * math.hypot(s1, s3), elbo_gaps  # the ELBO's gap grows
        assert elbo_gaps[0][0] < elbo_gaps[1][0] < elbo_gaps[2][0], elbo_gaps
        # the SMC estimate's error does not grow like the ELBO's gap
        assert abs(smc_errors[-1] - smc_errors[0]) < 0.5 * (g3 - g1), (smc_errors, elbo_gaps)
    finally:
        torch.set_default_dtype(torch.float32)


def test_laplace_start_is_wide_enough_for_low_snr_ppca():
    # low SNR at D = 12, rank 3: the posterior of the loadings has heavier tails than the
    # Laplace Gaussian; the default start (one Laplace width) falls short of the long run
    # from three widths by about half a nat (-1025.3 against -1024.6), no more
    x = standardize(make_ppca_data(60, 12, 3, signal=(1.0, 2.0), seed=5), per_column=False)
    fit = _fits(x, [3]).fits[3]
    ref = _smc(fit, x, 2, start=fit.guide, inflation=3.0, num_particles=1000, num_repeats=4,
               num_moves=30, cess=0.95)  # fmt: skip
    est = _smc(fit, x, 1, start=fit.guide, num_particles=500, num_repeats=4, num_moves=10)
    assert abs(est.value - ref.value) < 4 * math.hypot(est.se, ref.se) + 0.5, (est, ref)
