"""The promotion policy and the judge's decisions."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from modelshelf._errors import InvalidInputError, InvalidPolicyError
from modelshelf.metrics import ArmStats, sketch_from_bins, sketch_gamma
from modelshelf_promoter._judge import Decision, decision_to_json, judge
from modelshelf_promoter._policy import (
    PromotionPolicy,
    apply_settings,
    default_policy,
    policy_from_json,
    policy_key,
    policy_to_json,
    step_index_for,
)

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LOG_GAMMA = math.log(sketch_gamma(0.01))


def _arm(requests: int, errors: int, *, median: float = 50.0, sigma: float = 0.5, seed: int = 0):
    """Merged statistics with ``requests`` log-normal latencies."""
    values = np.random.default_rng(seed).lognormal(math.log(median), sigma, requests)
    keys, counts = np.unique(np.ceil(np.log(values) / LOG_GAMMA), return_counts=True)
    bins = dict(zip(keys.astype(int).tolist(), counts.astype(float).tolist(), strict=True))
    return ArmStats(count=requests, errors=errors, latency=sketch_from_bins(bins))


HEALTHY_ACTIVE = _arm(20_000, 200, seed=1)
HEALTHY_CANARY = _arm(2_000, 20, seed=2)


def _judge(policy: PromotionPolicy | None = None, **overrides) -> Decision:
    args = {
        "step_index": 0,
        "ratio": 0.05,
        "canary_started_at": START,
        "step_started_at": START,
        "now": START + timedelta(minutes=30),
        "active": HEALTHY_ACTIVE,
        "canary": HEALTHY_CANARY,
        "canary_seen_in_last_window": True,
    }
    args.update(overrides)
    return judge(policy or default_policy(), **args)


# --- policy -----------------------------------------------------------------------------------


def test_defaults_match_the_documented_policy() -> None:
    policy = default_policy()
    assert policy.steps == (0.05, 0.25, 0.5, 1.0), policy.steps
    assert (policy.error_margin.kind, policy.error_margin.value) == ("relative", 0.05)
    assert (policy.alpha, policy.error_alpha, policy.latency_alpha) == (0.05, 0.025, 0.0125)
    assert policy_key("iris") == "iris/promoter/policy.json"


def test_policy_json_round_trip_is_canonical() -> None:
    policy = apply_settings(default_policy(), ["alpha=0.01", "error_margin.kind=absolute"])
    data = policy_to_json(policy)
    assert policy_from_json(data) == policy, "policy changed in the round trip"
    assert list(json.loads(data)) == sorted(json.loads(data)), "keys not sorted"
    assert policy_from_json(b"{}") == default_policy(), "an empty policy is not the defaults"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"steps": [0.05, 0.05, 1.0]}, "steps"),
        ({"steps": [0.5, 0.25]}, "steps"),
        ({"steps": [0.0, 1.0]}, "steps"),
        ({"steps": [0.5, 1.5]}, "steps"),
        ({"steps": []}, "steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 0.7}, "alpha"),
        ({"min_requests_per_arm": 0}, "min_requests_per_arm"),
        ({"latency_p99_ratio": 0.9}, "latency_p99_ratio"),
        ({"error_margin": {"kind": "percent", "value": 5}}, "error_margin.kind"),
        ({"error_margin": {"kind": "relative", "value": -0.1}}, "error_margin.value"),
        ({"max_canary_seconds": 0}, "max_canary_seconds"),
        ({"alhpa": 0.05}, "alhpa"),
        ({"steps": [1.0]}, "steps"),
        ({"beta": 0.0}, "beta"),
        ({"error_worse_ratio": 1.0}, "error_worse_ratio"),
        ({"error_worse_ratio": 1.04}, "error_worse_ratio"),
        ({"catch_error_ratio": 1.05}, "catch_error_ratio"),
        ({"latency_worse_ratio": 1.1}, "latency_worse_ratio"),
        ({"error_floor": 1.0}, "error_floor"),
        ({"latency_floor_ms": -1}, "latency_floor_ms"),
    ],
)
def test_invalid_policies_name_the_field_and_the_fix(data: dict, field: str) -> None:
    with pytest.raises(InvalidPolicyError) as info:
        policy_from_json(json.dumps(data).encode(), "iris/promoter/policy.json")
    message = str(info.value)
    assert field in message and "iris/promoter/policy.json" in message, message
    assert "e.g." in message or "remove it" in message, f"no hint on what to do: {message}"


def test_corrupt_policy_json_is_an_invalid_policy() -> None:
    with pytest.raises(InvalidPolicyError):
        policy_from_json(b"{not json")


def test_settings_parse_lists_json_and_nested_fields() -> None:
    policy = apply_settings(
        default_policy(),
        ["steps=0.1,0.5,1", "error_margin.value=0.002", "error_margin.kind=absolute"],
    )
    assert policy.steps == (0.1, 0.5, 1.0), policy.steps
    assert (policy.error_margin.kind, policy.error_margin.value) == ("absolute", 0.002)
    with pytest.raises(InvalidPolicyError, match="FIELD=VALUE"):
        apply_settings(default_policy(), ["alpha"])
    with pytest.raises(InvalidPolicyError, match="steps"):
        apply_settings(default_policy(), ["steps=1,0.5"])
    with pytest.raises(InvalidPolicyError, match="no sub-fields"):
        apply_settings(default_policy(), ["alpha.x=1"])


def test_step_index_for_ratio() -> None:
    policy = default_policy()
    cases = {0.0: -1, 0.01: -1, 0.05: 0, 0.1: 0, 0.25: 1, 0.5: 2, 0.75: 2, 1.0: 3}
    for ratio, expected in cases.items():
        assert step_index_for(policy, ratio) == expected, f"ratio {ratio}"


# --- decisions --------------------------------------------------------------------------------


def test_too_few_samples_holds_and_never_promotes() -> None:
    few = _arm(120, 1, seed=3)
    for step in range(4):
        decision = _judge(
            step_index=step,
            ratio=default_policy().steps[step],
            canary=few,
            now=START + timedelta(hours=5),
        )
        assert decision.action == "hold", f"step {step}: {decision.action} on 120 requests"
        assert "too few samples" in decision.reason, decision.reason
        assert decision.next_ratio is None, decision


def test_no_canary_data_in_the_last_window_holds_with_that_reason() -> None:
    decision = _judge(canary_seen_in_last_window=False)
    assert decision.action == "hold" and "no canary data" in decision.reason, decision.reason


@pytest.mark.parametrize("step", [-1, 0, 1, 2, 3])
def test_error_regression_rolls_back_at_any_step(step: int) -> None:
    bad = _arm(2_000, 80, seed=4)  # 4% vs 1%
    decision = _judge(
        step_index=step,
        ratio=0.01 if step < 0 else default_policy().steps[step],
        canary=bad,
        step_started_at=START + timedelta(minutes=29),  # a young step does not matter
        canary_seen_in_last_window=False,  # nor does a silent last window
    )
    assert decision.action == "rollback", f"step {step}: {decision.action}: {decision.reason}"
    assert decision.errors.alarm and "error rate 4.00%" in decision.reason, decision.reason


def test_a_catastrophic_canary_rolls_back_before_the_sample_minimum() -> None:
    decision = _judge(canary=_arm(60, 30, seed=5))
    assert decision.action == "rollback", decision.reason


def test_latency_regression_rolls_back_with_its_bounds() -> None:
    slow = _arm(10_000, 100, sigma=0.5 + math.log(1.5) / 2.326, seed=6)
    decision = _judge(canary=slow)
    assert decision.action == "rollback", decision.reason
    assert decision.latency_p99.alarm and "p99" in decision.reason, decision.reason
    test = decision.latency_p99
    assert test.canary_lower > test.tolerance * test.active_upper, test


def test_suspect_latency_holds_until_the_evidence_is_in() -> None:
    # p95/p99 about 1.3x active's on 2,000 requests: beyond tolerance at the hold level's
    # bounds, not significant at alpha. (The hold rests on confidence bounds, not on point
    # estimates: on 600 requests the same canary is not held, see below.)
    suspect = _arm(2_000, 20, median=65.0, seed=9)
    decision = _judge(canary=suspect)
    assert decision.action == "hold", decision.reason
    assert "not yet significant" in decision.reason, decision.reason
    assert decision.holds == ["p95", "p99"] or decision.holds == ["p95"], decision.holds


def test_a_point_estimate_beyond_tolerance_alone_does_not_hold() -> None:
    # The same canary on 600 requests: its estimated p95 is 1.3x, but the bounds cannot
    # tell that from a healthy canary yet, so the step goes on.
    decision = _judge(canary=_arm(600, 6, median=65.0, seed=9))
    assert decision.canary.p95_ms and decision.active.p95_ms, decision
    assert decision.canary.p95_ms > 1.2 * decision.active.p95_ms, "scenario is not suspect"
    assert decision.action == "advance" and not decision.holds, decision.reason


BIG_ACTIVE = _arm(200_000, 2_000, seed=11)
BIG_CANARY = _arm(200_000, 2_000, seed=12)


def test_steps_advance_in_order_then_promote() -> None:
    # Promotion happens from the last step below 1.0 (active stays the concurrent control to
    # the end) and needs the gate, so the canary here has enough data to pass it.
    policy = default_policy()
    ratio, step = policy.steps[0], 0
    seen = []
    for _ in range(len(policy.steps) + 1):
        decision = _judge(step_index=step, ratio=ratio, active=BIG_ACTIVE, canary=BIG_CANARY)
        seen.append(decision.action)
        if decision.action != "advance":
            break
        assert decision.next_step_index == step + 1, decision
        ratio, step = decision.next_ratio, decision.next_step_index
    assert seen == ["advance", "advance", "promote"], seen
    assert decision.next_ratio is None and decision.ratio == 0.5, decision
    assert decision.gate is not None and decision.gate.passed, decision.gate


def test_the_promotion_step_holds_until_the_gate_passes() -> None:
    # 2,000 canary requests with 20 errors cannot show the canary is below 1.5x active's
    # error rate: a healthy-looking canary is held at the promotion step, not promoted.
    decision = _judge(step_index=2, ratio=0.5)
    assert decision.action == "hold" and "promotion gate" in decision.reason, decision.reason
    assert decision.gate is not None and not decision.gate.errors, decision.gate


def test_a_young_step_holds() -> None:
    decision = _judge(step_started_at=START + timedelta(minutes=25))
    assert decision.action == "hold" and "5 min of 10 min" in decision.reason, decision.reason


def test_max_duration_aborts_but_a_regression_still_rolls_back() -> None:
    late = START + timedelta(hours=24, minutes=5)
    aborted = _judge(now=late, canary=_arm(100, 1, seed=8))
    assert aborted.action == "abort", aborted.reason
    assert "after 24 h 5 min (max 24 h)" in aborted.reason, aborted.reason
    bad = _judge(now=late, canary=_arm(2_000, 80, seed=4))
    assert bad.action == "rollback", bad.reason


def test_decision_carries_its_numbers_and_serializes() -> None:
    decision = _judge()
    data = decision_to_json(decision)
    back = Decision.model_validate_json(data)
    assert decision_to_json(back) == data, "decision changed in the round trip"
    record = json.loads(data)
    assert list(record) == sorted(record), "keys not sorted"
    assert record["active"]["requests"] == 20_000 and record["canary"]["errors"] == 20
    for arm in ("active", "canary"):
        assert record[arm]["p95_ms"] and record[arm]["p99_ms"], f"{arm} quantiles missing"
    assert record["errors"]["e_value"] > 0 and 0 < record["errors"]["p_value"] <= 1
    assert record["latency_p99"]["tolerance"] == 1.2 and record["policy"]["alpha"] == 0.05


def test_bad_arguments_raise_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="step index"):
        _judge(step_index=4)
    with pytest.raises(InvalidInputError, match="time zone"):
        _judge(now=datetime(2025, 3, 1, 13, 0))


def test_past_the_time_limit_an_undecided_canary_ends_inconclusive_never_promoted() -> None:
    late = START + timedelta(hours=24, minutes=5)
    decision = _judge(step_index=2, ratio=0.5, now=late)
    assert decision.action == "abort" and decision.inconclusive, decision.reason
    assert "inconclusive" in decision.reason and "promotion gate" not in decision.reason
    assert "not yet shown below 1.5x" in decision.reason, decision.reason


def test_the_step_minimum_counts_only_the_current_steps_requests() -> None:
    from modelshelf_promoter._counts import WindowCounts

    step_start = START + timedelta(minutes=20)
    windows = [
        WindowCounts(9_500, 95, 500, 5, ratio=0.05, start=START + timedelta(minutes=m))
        for m in range(0, 20, 5)
    ]
    windows.append(WindowCounts(7_500, 75, 100, 1, ratio=0.25, start=step_start))
    decision = _judge(
        step_index=1,
        ratio=0.25,
        step_started_at=step_start,
        now=step_start + timedelta(minutes=15),
        windows=windows,
    )
    assert decision.action == "hold" and "too few samples this step" in decision.reason, (
        decision.reason
    )
    assert decision.step is not None and decision.step.canary_requests == 100, decision.step
    assert decision.step.canary_minimum > 400, "the minimum is the catch regression's"


def test_the_recorded_p_value_is_the_running_minimum() -> None:
    from modelshelf_promoter._counts import WindowCounts

    # Bad early, then healthy: the e-value falls back, the p-value keeps its minimum.
    windows = [WindowCounts(9_500, 95, 500, 25, ratio=0.05)] * 2
    windows += [WindowCounts(5_000, 50, 5_000, 40, ratio=0.5)] * 20
    decision = _judge(windows=windows)
    assert decision.errors.p_value < 1 / decision.errors.e_value, decision.errors
    assert decision.errors.p_value <= 0.025 and decision.action == "rollback", decision.reason


def test_a_latency_shift_both_arms_share_is_not_read_as_a_regression() -> None:
    from modelshelf_promoter._counts import WindowCounts

    # The cumulative bounds see a canary p99 far above active's (the canary's data came
    # mostly from a slow hour both arms shared), but within each window the canary's tail
    # is no heavier than active's: no rollback.
    slow = _arm(10_000, 100, sigma=0.5 + math.log(1.5) / 2.326, seed=6)
    same = {"p95": (5, 95, 100, 1900), "p99": (1, 19, 100, 1900)}
    windows = [WindowCounts(1900, 19, 100, 1, ratio=0.05, tails=same) for _ in range(20)]
    decision = _judge(canary=slow, windows=windows)
    test = decision.latency_p99
    assert test.bounds_alarm and not test.alarm, test
    assert decision.action != "rollback", decision.reason
    # The same bounds with windows whose canary tails are heavy: rolled back.
    heavy = {"p95": (15, 95, 100, 1900), "p99": (6, 19, 100, 1900)}
    windows = [WindowCounts(1900, 19, 100, 1, ratio=0.05, tails=heavy) for _ in range(20)]
    decision = _judge(canary=slow, windows=windows)
    assert decision.action == "rollback" and decision.latency_p99.alarm, decision.reason
    assert decision.latency_p99.stratified_windows == 20, decision.latency_p99
