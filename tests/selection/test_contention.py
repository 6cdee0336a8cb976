"""The contention pass of select (pyrostruct.selection.contention), with a stand-in executor."""

import pytest

from pyrostruct.selection.candidates import RestartFit
from pyrostruct.selection.contention import _contention_pass


def _state(bounds):
    state = {}
    for i, bound in enumerate(bounds):
        st = RestartFit(checkpoint={"params": {}})
        st.elbo, st.elbo_se = bound, 0.1
        state[(i, 0)] = st
    return state


def test_later_rounds_stop_doubling_below_the_best_estimate_minus_the_margin():
    """Issue 23: every candidate the rule admits after the first round doubles its budget up
    to the target se (a D = 20 PPCA rank-9 candidate: 17 + 40 + 75 s); it may stop once
    it lies clearly below the best estimate so far: A_best - z se_best - margin."""
    bounds = [-100.0, -101.0, -103.0, -104.0, -200.0]
    smc = {0: (-90.0, 0.4), 1: (-95.0, 0.3), 2: (-96.0, 0.5), 3: (-99.0, 2.0)}
    state, seen = _state(bounds), []

    def run(task, payloads, tick):
        seen.append([(p["index"], p["stop_below"]) for p in payloads])
        return [{"smc": smc[p["index"]][0], "smc_se": smc[p["index"]][1]} for p in payloads]

    skipped = _contention_pass(run, list(state), state, "abcde", ("elbo",), 5.0, 2.0)
    assert seen[0] == [(0, None), (1, None)]  # the first round knows no best yet
    assert sorted(i for i, _ in seen[1]) == [2, 3]
    assert [stop for _, stop in seen[1]] == pytest.approx([-90.0 - 2.0 * 0.4 - 5.0] * 2)
    assert list(skipped) == ["e"]
