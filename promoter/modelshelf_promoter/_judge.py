"""The judge: one promoter look at a canary, turned into a decision with its numbers.

Pure: it reads the policy, the clock values and the merged statistics it is given, and
returns a :class:`Decision`; applying it (alias change, decision record) is the runner's.

Rules, in order:

1. **rollback** when the error-rate test or a latency test alarms, at any step and whatever
   the sample size (the tests in :mod:`modelshelf_promoter._stats` stay valid at every look);
2. **abort** when the canary has run ``max_canary_seconds`` without being promoted;
3. **hold** with reason ``no canary data`` when the canary logged nothing during the last
   window: silence is not evidence of health;
4. **hold** while either arm has fewer than ``min_requests_per_arm`` requests since the
   canary started (never advance or promote on too few samples);
5. **hold** while a latency quantile of the canary, as estimated, is beyond its tolerated
   ratio to active's but not yet significantly so (both arms having
   ``latency_min_samples``): the canary keeps its share until the evidence either
   arrives (rollback) or fades;
6. **hold** until the current step has lasted ``min_step_seconds``;
7. otherwise **advance** to the next step, or **promote** after the last one.

Advancing therefore rests on minimum samples, minimum time per step and the absence of an
alarm, not on a test proving the canary non-inferior: proving a 5% relative margin on a
1% error rate takes hundreds of thousands of requests per arm. What protects a bad canary
is that the alarm tests keep watching at every step, on the cumulative data, with their
false-alarm level held over all looks. Rule 5 exists because tail-latency evidence is
slow (a p99 needs hundreds of requests per tail sample) while the point estimate is
already informative; holding never makes a test less valid, it only gives it more data.
The error rate gets no such rule: with 1% errors a healthy canary's observed rate is
above active's half the time, so it would stall healthy canaries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelshelf import InvalidInputError, canonical_json
from modelshelf.metrics import ArmStats

from ._policy import PromotionPolicy
from ._stats import ErrorRateTest, LatencyHistogram, LatencyTest, error_rate_test, latency_test

__all__ = ["Action", "ArmReport", "Decision", "decision_to_json", "judge"]

Action = Literal["advance", "promote", "rollback", "hold", "abort"]


class ArmReport(BaseModel):
    """The headline numbers of one arm."""

    model_config = ConfigDict(frozen=True)

    requests: int
    errors: int
    error_rate: float | None
    latency_samples: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, stats: ArmStats) -> ArmReport:
        """Summarize merged statistics."""
        return cls(
            requests=stats.count,
            errors=stats.errors,
            error_rate=stats.error_rate,
            latency_samples=int(stats.latency.count),
            p50_ms=stats.quantile(0.5),
            p95_ms=stats.quantile(0.95),
            p99_ms=stats.quantile(0.99),
        )


class Decision(BaseModel):
    """What the judge decided, why, and every number behind it."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str
    decided_at: datetime
    ratio: float
    step_index: int
    next_ratio: float | None
    next_step_index: int | None
    canary_started_at: datetime
    step_started_at: datetime
    canary_seconds: float
    step_seconds: float
    canary_seen_in_last_window: bool
    active: ArmReport
    canary: ArmReport
    errors: ErrorRateTest
    latency_p95: LatencyTest
    latency_p99: LatencyTest
    policy: PromotionPolicy


def decision_to_json(decision: Decision) -> bytes:
    """Canonical bytes of a decision record (sorted keys)."""
    return canonical_json(decision.model_dump(mode="json"))


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{name} {value!r} has no time zone: pass an aware UTC datetime")
    return value.astimezone(UTC)


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.2%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _error_reason(test: ErrorRateTest) -> str:
    return (
        f"canary error rate {_pct(test.canary_rate)} vs active {_pct(test.active_rate)} "
        f"(tolerated {_pct(test.tolerated_rate)}), e-value {test.e_value:.3g} "
        f">= {1 / test.alpha:.3g}"
    )


def _latency_reason(test: LatencyTest) -> str:
    label = f"p{round(test.quantile * 100)}"
    return (
        f"canary {label} {_ms(test.canary_value)} vs active {_ms(test.active_value)}: "
        f"canary {label} >= {_ms(test.canary_lower)} > {test.tolerance:g} x "
        f"{_ms(test.active_upper)} (active's bound), always-valid at alpha {test.alpha:g}"
    )


def _suspect(test: LatencyTest) -> bool:
    return test.checked and test.observed_ratio is not None and test.observed_ratio > test.tolerance


def judge(
    policy: PromotionPolicy,
    *,
    step_index: int,
    ratio: float,
    canary_started_at: datetime,
    step_started_at: datetime,
    now: datetime,
    active: ArmStats,
    canary: ArmStats,
    canary_seen_in_last_window: bool,
) -> Decision:
    """Decide what to do with a canary at one promoter look.

    Args:
        policy: The model's promotion policy.
        step_index: Index in ``policy.steps`` of the current step (-1: below the first; see
            :func:`~modelshelf_promoter._policy.step_index_for`).
        ratio: The canary's current traffic share.
        canary_started_at: When the canary started (from the alias history).
        step_started_at: When the current ratio was set.
        now: The time of this look.
        active: Active's statistics merged since the canary started.
        canary: The canary's.
        canary_seen_in_last_window: Whether any server logged canary requests during the
            last complete metrics window.

    Returns:
        The decision; ``next_ratio`` is set when advancing.

    Raises:
        InvalidInputError: A naive datetime or a step index outside the policy's steps.
    """
    if not -1 <= step_index < len(policy.steps):
        raise InvalidInputError(
            f"step index {step_index} is outside the policy's {len(policy.steps)} steps"
        )
    now = _utc(now, "now")
    canary_started_at = _utc(canary_started_at, "canary_started_at")
    step_started_at = _utc(step_started_at, "step_started_at")
    canary_seconds = max((now - canary_started_at).total_seconds(), 0.0)
    step_seconds = max((now - step_started_at).total_seconds(), 0.0)

    errors = error_rate_test(
        active_requests=active.count,
        active_errors=active.errors,
        canary_requests=canary.count,
        canary_errors=canary.errors,
        margin=policy.error_margin.value,
        margin_kind=policy.error_margin.kind,
        alpha=policy.error_alpha,
        mixture_sd=policy.error_mixture_sd,
    )
    active_report, canary_report = ArmReport.of(active), ArmReport.of(canary)
    active_hist = LatencyHistogram.from_sketch(active.latency)
    canary_hist = LatencyHistogram.from_sketch(canary.latency)
    latency = {
        q: latency_test(
            active_hist,
            canary_hist,
            quantile=q,
            tolerance=tolerance,
            alpha=policy.latency_alpha,
            min_samples=policy.latency_min_samples,
            active_value=value_a,
            canary_value=value_c,
        )
        for q, tolerance, value_a, value_c in (
            (0.95, policy.latency_p95_ratio, active_report.p95_ms, canary_report.p95_ms),
            (0.99, policy.latency_p99_ratio, active_report.p99_ms, canary_report.p99_ms),
        )
    }

    action: Action
    next_index: int | None = None
    alarms = []
    if errors.alarm:
        alarms.append(_error_reason(errors))
    alarms.extend(_latency_reason(test) for test in latency.values() if test.alarm)
    short_a = policy.min_requests_per_arm - active.count
    short_c = policy.min_requests_per_arm - canary.count
    if alarms:
        action, reason = "rollback", "rollback: " + "; ".join(alarms)
    elif canary_seconds >= policy.max_canary_seconds:
        action = "abort"
        reason = (
            f"abort: canary undecided after {_minutes(canary_seconds)} "
            f"(max {_minutes(policy.max_canary_seconds)}) at ratio {ratio:g}"
        )
    elif not canary_seen_in_last_window:
        action, reason = "hold", "hold: no canary data in the last window"
    elif short_a > 0 or short_c > 0:
        action = "hold"
        reason = (
            f"hold: too few samples (canary {canary.count}, active {active.count}; "
            f"need {policy.min_requests_per_arm} each)"
        )
    elif suspect := [test for test in latency.values() if _suspect(test)]:
        action = "hold"
        reason = "hold: " + "; ".join(
            f"canary p{round(test.quantile * 100)} is {test.observed_ratio:.2f}x active's "
            f"(tolerated {test.tolerance:g}x), not yet significant"
            for test in suspect
        )
    elif step_seconds < policy.min_step_seconds:
        action = "hold"
        reason = (
            f"hold: step at ratio {ratio:g} has run {_minutes(step_seconds)} of "
            f"{_minutes(policy.min_step_seconds)}"
        )
    else:
        evidence = (
            f"canary {canary.count} requests, error rate {_pct(errors.canary_rate)} vs "
            f"active {_pct(errors.active_rate)} (e-value {errors.e_value:.3g}), p99 "
            f"{_ms(canary_report.p99_ms)} vs {_ms(active_report.p99_ms)}, no alarm"
        )
        if step_index + 1 < len(policy.steps):
            action, next_index = "advance", step_index + 1
            reason = f"advance {ratio:g} -> {policy.steps[next_index]:g}: {evidence}"
        else:
            action, reason = "promote", f"promote: {evidence}"

    return Decision(
        action=action,
        reason=reason,
        decided_at=now,
        ratio=ratio,
        step_index=step_index,
        next_ratio=None if next_index is None else policy.steps[next_index],
        next_step_index=next_index,
        canary_started_at=canary_started_at,
        step_started_at=step_started_at,
        canary_seconds=canary_seconds,
        step_seconds=step_seconds,
        canary_seen_in_last_window=canary_seen_in_last_window,
        active=active_report,
        canary=canary_report,
        errors=errors,
        latency_p95=latency[0.95],
        latency_p99=latency[0.99],
        policy=policy,
    )
