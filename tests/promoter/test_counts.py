"""The window-stratified error tests: valid at their boundaries, robust to bursts and clients."""

from __future__ import annotations

import math

import numpy as np

from modelshelf_promoter._counts import (
    WindowCounts,
    catch_minimum,
    conditional_log_lr,
    count_tests,
)

ALPHA = 0.05
# Upper end of a binomial(300, 0.05) at 1 - 1e-4: a valid test stays below it.
TOLERATED = 15 + 3.7 * math.sqrt(300 * 0.05 * 0.95)
SHARES = [0.05] * 10 + [0.25] * 10 + [0.5] * 40  # the steps of a canary, one look a window


def _canary(
    rng: np.random.Generator, p_active: float, ratio: float, per_window: int
) -> list[WindowCounts]:
    out = []
    for share in SHARES:
        n = rng.poisson(per_window)
        n_c = rng.binomial(n, share)
        n_a = n - n_c
        out.append(
            WindowCounts(
                active_requests=int(n_a),
                active_errors=int(rng.binomial(n_a, p_active)),
                canary_requests=int(n_c),
                canary_errors=int(rng.binomial(n_c, min(p_active * ratio, 1.0))),
                ratio=share,
            )
        )
    return out


def _tests(windows: list[WindowCounts], **overrides: float):
    args = {"null_ratio": 1.05, "worse_ratio": 1.5, "error_floor": 0.0, "buckets": 100}
    args.update(overrides)
    return count_tests(windows, **args)  # type: ignore[arg-type]


def test_rollback_test_holds_its_level_on_the_boundary_over_all_looks() -> None:
    """300 canaries at exactly the tolerated ratio (1.05x), 60 looks through three steps."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(300):
        evidence = _tests(_canary(rng, 0.02, 1.05, 2000))
        alarms += evidence.rollback_max_log_e >= math.log(1 / ALPHA)  # ever, at any look
    assert alarms <= TOLERATED, f"{alarms}/300 false alarms at the boundary: not always valid"


def test_the_gate_holds_its_level_against_a_materially_worse_canary() -> None:
    """300 canaries at exactly the materially-worse ratio (1.5x): the gate rarely passes."""
    rng = np.random.default_rng(5)
    passed = 0
    for _ in range(300):
        evidence = _tests(_canary(rng, 0.02, 1.5, 2000))
        passed += evidence.gate_max_log_e >= math.log(1 / ALPHA)
    assert passed <= TOLERATED, f"the gate passed {passed}/300 canaries 1.5x worse"


def test_the_gate_passes_a_healthy_canary_and_the_rollback_test_catches_a_bad_one() -> None:
    rng = np.random.default_rng(7)
    healthy = _tests(_canary(rng, 0.02, 1.0, 4000))
    assert healthy.gate_max_log_e >= math.log(40), f"healthy canary not shown fit: {healthy}"
    bad = _tests(_canary(rng, 0.02, 3.0, 2000))
    assert bad.rollback_max_log_e >= math.log(40), f"3x errors not caught: {bad}"
    assert bad.gate_max_log_e < math.log(40), f"the gate passed a 3x canary: {bad}"


def test_a_burst_shared_by_both_arms_cancels_within_its_window() -> None:
    # A healthy canary (1% errors on both arms); at the 50% step one window has 30% errors
    # on both. Stratified, the burst says nothing about the canary; pooled into one
    # stratum it lands on the canary at 50% while its cumulative share is lower.
    windows = [WindowCounts(9500, 95, 500, 5, ratio=0.05) for _ in range(12)]
    windows += [WindowCounts(5000, 50, 5000, 50, ratio=0.5) for _ in range(3)]
    windows.append(WindowCounts(5000, 1500, 5000, 1500, ratio=0.5))
    stratified = _tests(windows)
    assert stratified.rollback_max_log_e < 0.5, (
        f"the burst counted against the canary: {stratified}"
    )
    pooled = WindowCounts(
        sum(w.active_requests for w in windows),
        sum(w.active_errors for w in windows),
        sum(w.canary_requests for w in windows),
        sum(w.canary_errors for w in windows),
    )
    cumulative = _tests([pooled])
    assert cumulative.rollback_max_log_e >= math.log(40), (
        f"the harness should show the cumulative bias: {cumulative}"
    )


def test_one_heavy_failing_client_cannot_roll_a_healthy_canary_back() -> None:
    # 5% step: 5 canary buckets. One client in bucket 2 fails 20% of its 30 requests a
    # window; the other buckets have the canary's and active's 1%.
    def window(with_buckets: bool) -> WindowCounts:
        canary_buckets = {0: 1, 2: 6} if with_buckets else {}
        active_buckets = {b: 1 for b in range(5, 100, 5)} if with_buckets else {}
        return WindowCounts(
            active_requests=1900,
            active_errors=19,
            canary_requests=130,
            canary_errors=7,
            ratio=0.05,
            active_buckets=active_buckets,
            canary_buckets=canary_buckets,
        )

    capped = _tests([window(True) for _ in range(30)])
    assert capped.rollback_max_log_e < math.log(40), f"one client rolled back: {capped}"
    assert capped.heaviest_canary_bucket == 2, f"the heavy bucket is not named: {capped}"
    uncapped = _tests([window(False) for _ in range(30)])
    assert uncapped.rollback_max_log_e >= math.log(40), (
        f"without route buckets the same data must alarm (the harness): {uncapped}"
    )


def test_a_zero_error_canary_passes_the_gate_through_the_absolute_floor() -> None:
    windows = [WindowCounts(10_000, 0, 10_000, 0, ratio=0.5) for _ in range(4)]
    without = _tests(windows)
    assert without.gate_max_log_e == 0.0, "no errors anywhere cannot show a ratio"
    with_floor = _tests(windows, error_floor=0.0005)
    assert with_floor.gate_max_log_e >= math.log(40), f"floor gate: {with_floor}"


def test_windows_without_a_control_carry_no_evidence() -> None:
    assert conditional_log_lr(5, 0, 1.0, 1.05, 3.0) == 0.0
    assert conditional_log_lr(0, 5, 0.0, 1.05, 3.0) == 0.0
    only_canary = _tests([WindowCounts(0, 0, 1000, 500, ratio=1.0)])
    assert only_canary.rollback_max_log_e == 0.0 and only_canary.gate_max_log_e == 0.0


def test_step_minimum_comes_from_the_regression_to_catch() -> None:
    at_5 = catch_minimum(base_rate=0.01, share=0.05, null_ratio=1.05, catch_ratio=3, alpha=0.025)
    at_25 = catch_minimum(base_rate=0.01, share=0.25, null_ratio=1.05, catch_ratio=3, alpha=0.025)
    assert 300 < at_5 < 400 and 400 < at_25 < 550, (at_5, at_25)
    rarer = catch_minimum(base_rate=0.001, share=0.05, null_ratio=1.05, catch_ratio=3, alpha=0.025)
    assert 9 * at_5 < rarer < 11 * at_5, "ten times rarer errors need ten times the requests"
    assert (
        catch_minimum(base_rate=0.0, share=0.05, null_ratio=1.05, catch_ratio=3, alpha=0.025) == 0
    )


def test_the_tail_test_holds_its_level_when_both_arms_share_a_distribution() -> None:
    from modelshelf_promoter._counts import tail_log_e

    rng = np.random.default_rng(13)
    alarms = 0
    for _ in range(300):
        windows = []
        for share in SHARES:
            n = rng.poisson(2000)
            n_c = int(rng.binomial(n, share))
            n_a = int(n - n_c)
            # Tail events at the same 1% rate on both arms (the null's boundary).
            tails = {"p99": (int(rng.binomial(n_c, 0.01)), int(rng.binomial(n_a, 0.01)), n_c, n_a)}
            windows.append(WindowCounts(n_a, 0, n_c, 0, ratio=share, tails=tails))
        _, top, used = tail_log_e(windows, "p99")
        assert used == len(SHARES)
        alarms += top >= math.log(1 / ALPHA)
    assert alarms <= TOLERATED, f"{alarms}/300 false tail alarms on the boundary"
