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
    assert seen[0] == [(0, None)]  # the first round knows no best yet: the best bound alone
    assert sorted(i for i, _ in seen[1]) == [1, 2, 3]
    assert [stop for _, stop in seen[1]] == pytest.approx([-90.0 - 2.0 * 0.4 - 5.0] * 3)
    assert list(skipped) == ["e"]


def test_the_first_estimate_runs_alone_so_the_second_can_stop_early():
    """Issue 23: the two best bounds were estimated together, neither with a level to stop
    below; on a D = 20, n = 500 PPCA set of true rank 6 the rank-7 candidate (16 nats
    below by its bound) doubled to 1600 particles without meeting the target se: 854 s of
    an 885 s sweep, against 22 s for rank 6. Estimated after the best, it gets a level."""
    state, seen = _state([-100.0, -116.0]), []
    smc = {0: (-80.0, 0.3), 1: (-98.0, 1.6)}

    def run(task, payloads, tick):
        seen.append([(p["index"], p["stop_below"]) for p in payloads])
        return [{"smc": smc[p["index"]][0], "smc_se": smc[p["index"]][1]} for p in payloads]

    assert _contention_pass(run, list(state), state, "ab", ("elbo",), 5.0, 3.0) == {}
    assert seen == [[(0, None)], [(1, pytest.approx(-80.0 - 3.0 * 0.3 - 5.0))]]


def test_a_failed_first_estimate_passes_the_first_turn_to_the_next_bound():
    state, seen = _state([-100.0, -101.0, -150.0]), []

    def run(task, payloads, tick):
        seen.append([p["index"] for p in payloads])
        return [{"failed": "boom"} if p["index"] == 0 else {"smc": -95.0, "smc_se": 0.2}
                for p in payloads]  # fmt: skip

    skipped = _contention_pass(run, list(state), state, "abc", ("elbo",), 5.0, 3.0)
    assert seen == [[0], [1]]
    assert state[(0, 0)].smc_failed == "boom" and state[(1, 0)].smc == -95.0
    assert list(skipped) == ["c"]
