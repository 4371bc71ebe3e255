"""The judge: one promoter look at a canary, turned into a decision with its numbers.

Pure: it reads the policy, the clock values and the statistics it is given, and returns a
:class:`Decision`; applying it (alias change, decision record) is the runner's.

Rules, in order:

1. **rollback** when the error-rate test or a latency test alarms, at any step and whatever
   the sample size (the tests in :mod:`modelshelf_promoter._counts` and
   :mod:`modelshelf_promoter._stats` stay valid at every look);
2. **abort**, recorded as *inconclusive*, when the canary has run ``max_canary_seconds``
   without being promoted or rolled back;
3. **hold** with reason ``no canary data`` when the canary logged nothing during the last
   window: silence is not evidence of health;
4. **hold** while either arm has too few requests *during the current step*: the policy's
   ``min_requests_per_arm``, and for the canary as many as a ``catch_error_ratio``
   regression needs to show at this share (:func:`~modelshelf_promoter._counts.catch_minimum`);
5. **hold** while a latency quantile's always-valid bounds, at the relaxed level
   :data:`HOLD_ALPHA`, put the canary beyond its tolerated ratio to active's: the canary
   keeps its share until the evidence either arrives (rollback) or fades;
6. **hold** until the current step has lasted ``min_step_seconds``;
7. below the promotion step, **advance**;
8. at the promotion step (the last step below 1.0, so active is still there as the
   concurrent control), **promote** once the promotion gate shows the canary is not
   materially worse in any respect (error rate, p95, p99), else **hold** on the gate.

What a promotion guarantees: a canary materially worse in some respect (see
:mod:`modelshelf_promoter._policy`) is promoted with probability at most ``beta``, over all
looks; a canary within tolerance is rolled back with probability at most ``alpha``. The
early steps are not gated: at 5% of 200 requests a minute there is one canary error every
ten minutes, far too little to *prove* anything within hours. Their job is to catch a
``catch_error_ratio`` regression (and worse) while it touches few users; the gate does its
work at the promotion step, where a 50% share gives the most information per error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelshelf import InvalidInputError, canonical_json
from modelshelf.metrics import ROUTE_BUCKETS, ArmStats

from ._counts import CountEvidence, WindowCounts, catch_minimum, count_tests, tail_log_e
from ._durations import duration_text
from ._plausibility import ServerReport
from ._policy import PromotionPolicy
from ._stats import (
    ErrorRateTest,
    LatencyGate,
    LatencyHistogram,
    LatencyTest,
    error_rate_test,
    latency_gate,
    latency_test,
)

__all__ = [
    "CANARY_ALPHA_SHARE",
    "DEFAULT_ROUTE_BUCKETS",
    "HOLD_ALPHA",
    "MAX_SERVERS_LISTED",
    "Action",
    "ArmReport",
    "Decision",
    "GateReport",
    "StepReport",
    "decision_to_json",
    "judge",
]

HOLD_ALPHA = 0.25
"""Level of the latency hold's bounds (per quantile): a hold only delays, it never ends."""
CANARY_ALPHA_SHARE = 0.75
"""Share of a latency test's level spent on the canary's bound (see ``latency_test``)."""
MAX_SERVERS_LISTED = 200
"""Servers listed in a decision: every left-out one, then the busiest."""
DEFAULT_ROUTE_BUCKETS = ROUTE_BUCKETS
"""Route buckets assumed for windows whose objects do not say (the recorder's default)."""

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


class GateReport(BaseModel):
    """The promotion gate at one look: is the canary shown not materially worse?"""

    model_config = ConfigDict(frozen=True)

    errors: bool
    error_e_value: float
    p95: LatencyGate
    p99: LatencyGate
    beta: float
    passed: bool


class StepReport(BaseModel):
    """Requests during the current step, against the step's minimums."""

    model_config = ConfigDict(frozen=True)

    active_requests: int
    canary_requests: int
    active_minimum: int
    canary_minimum: int


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
    inconclusive: bool = False
    evidence: CountEvidence | None = None
    gate: GateReport | None = None
    step: StepReport | None = None
    holds: list[str] = Field(default_factory=list)
    servers: list[ServerReport] = Field(default_factory=list)
    servers_total: int = 0
    excluded_servers: list[str] = Field(default_factory=list)


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
    return duration_text(seconds)


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


def _label(quantile: float) -> str:
    return f"p{round(quantile * 100)}"


def _gate_reason(gate: GateReport, policy: PromotionPolicy) -> str:
    missing = []
    if not gate.errors:
        missing.append(
            f"error rate not yet shown below {policy.error_worse_ratio:g}x active's "
            f"(gate e-value {gate.error_e_value:.3g} of {1 / gate.beta:.3g})"
        )
    for test in (gate.p95, gate.p99):
        if not test.passed:
            missing.append(
                f"{_label(test.quantile)} not yet shown below {test.worse_ratio:g}x active's "
                f"(canary <= {_ms(test.canary_upper)}, active >= {_ms(test.active_lower)})"
            )
    return "; ".join(missing)


def _windows_or_totals(
    windows: Sequence[WindowCounts] | None, active: ArmStats, canary: ArmStats, ratio: float
) -> Sequence[WindowCounts]:
    if windows is not None:
        return windows
    # Without per-window counts the whole canary is one stratum (the older callers' view).
    return [
        WindowCounts(
            active_requests=active.count,
            active_errors=active.errors,
            canary_requests=canary.count,
            canary_errors=canary.errors,
        )
    ]


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
    windows: Sequence[WindowCounts] | None = None,
    route_buckets: int = DEFAULT_ROUTE_BUCKETS,
    servers: Sequence[ServerReport] = (),
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
        active: Active's statistics merged since the canary started (latencies of
            successful requests).
        canary: The canary's.
        canary_seen_in_last_window: Whether any server logged canary requests during the
            last complete metrics window.
        windows: Both arms' counts per metrics window since the canary started, oldest
            first (the strata of the error tests); without them the cumulative counts are
            one stratum and the step's requests are taken to be all of them.
        route_buckets: Route buckets of the windows' per-bucket error counts.
        servers: The per-server breakdown from the reader (left-out servers are already
            out of ``active``, ``canary`` and ``windows``); recorded and named.

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
    strata = _windows_or_totals(windows, active, canary, ratio)

    evidence = count_tests(
        strata,
        null_ratio=policy.tolerated_error_ratio,
        worse_ratio=policy.error_worse_ratio,
        error_floor=policy.error_floor,
        buckets=route_buckets,
    )
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
    if policy.error_margin.kind == "relative":
        # The stratified exact test decides; the record keeps the descriptive numbers.
        errors = errors.model_copy(
            update={
                "e_value": math.exp(min(evidence.rollback_log_e, 700.0)),
                "p_value": min(1.0, math.exp(-evidence.rollback_max_log_e)),
                "alarm": evidence.rollback_max_log_e >= math.log(1.0 / policy.error_alpha),
            }
        )
    active_report, canary_report = ArmReport.of(active), ArmReport.of(canary)
    active_hist = LatencyHistogram.from_sketch(active.latency)
    canary_hist = LatencyHistogram.from_sketch(canary.latency)
    latency: dict[float, LatencyTest] = {}
    held: list[LatencyTest] = []
    gates: dict[float, LatencyGate] = {}
    for q, tolerance, value_a, value_c in (
        (0.95, policy.latency_p95_ratio, active_report.p95_ms, canary_report.p95_ms),
        (0.99, policy.latency_p99_ratio, active_report.p99_ms, canary_report.p99_ms),
    ):
        check = functools.partial(
            latency_test,
            active_hist,
            canary_hist,
            quantile=q,
            tolerance=tolerance,
            min_samples=policy.latency_min_samples,
            active_value=value_a,
            canary_value=value_c,
            canary_share=CANARY_ALPHA_SHARE,
            floor_ms=policy.latency_floor_ms,
        )
        test = check(alpha=policy.latency_alpha)
        _, top, used = tail_log_e(strata, _label(q))
        if used:
            # Both must alarm: the bounds (exact for one distribution per arm) and the
            # window-stratified tail test (robust to shifts both arms share).
            test = test.model_copy(
                update={
                    "stratified_windows": used,
                    "stratified_max_log_e": top,
                    "bounds_alarm": test.alarm,
                    "alarm": test.alarm and top >= math.log(1.0 / policy.latency_alpha),
                }
            )
        latency[q] = test
        hold = check(alpha=HOLD_ALPHA)
        if hold.alarm and not latency[q].alarm:
            held.append(hold)
        gates[q] = latency_gate(
            active_hist,
            canary_hist,
            quantile=q,
            worse_ratio=policy.latency_worse_ratio,
            floor_ms=policy.latency_floor_ms,
            beta=policy.beta,
        )
    gate = GateReport(
        errors=evidence.gate_max_log_e >= math.log(1.0 / policy.beta),
        error_e_value=math.exp(min(evidence.gate_max_log_e, 700.0)),
        p95=gates[0.95],
        p99=gates[0.99],
        beta=policy.beta,
        passed=False,
    )
    gate = gate.model_copy(update={"passed": gate.errors and gate.p95.passed and gate.p99.passed})

    in_step = [w for w in strata if w.start is None or w.start >= step_started_at]
    step_a = sum(w.active_requests for w in in_step)
    step_c = sum(w.canary_requests for w in in_step)
    base = active.errors / active.count if active.count else 0.0
    step = StepReport(
        active_requests=step_a,
        canary_requests=step_c,
        active_minimum=policy.min_requests_per_arm,
        canary_minimum=max(
            policy.min_requests_per_arm,
            catch_minimum(
                base_rate=base,
                share=ratio,
                null_ratio=policy.tolerated_error_ratio,
                catch_ratio=policy.catch_error_ratio,
                alpha=policy.error_alpha,
            ),
        ),
    )
    left_out = [r.server_id for r in servers if r.excluded]
    # Every left-out server, then the busiest others: a fleet of thousands stays readable.
    listed = sorted(
        servers, key=lambda r: (not r.excluded, -(r.active_requests + r.canary_requests))
    )[:MAX_SERVERS_LISTED]
    note = f" [left out: {', '.join(left_out)}]" if left_out else ""

    action: Action
    next_index: int | None = None
    inconclusive = False
    alarms = []
    if errors.alarm:
        alarms.append(_error_reason(errors))
    alarms.extend(_latency_reason(test) for test in latency.values() if test.alarm)
    promotion_step = step_index >= policy.promotion_index
    if alarms:
        action, reason = "rollback", "rollback: " + "; ".join(alarms)
    elif canary_seconds >= policy.max_canary_seconds:
        action, inconclusive = "abort", True
        reason = (
            f"abort: inconclusive: canary neither shown fit to promote nor to roll back after "
            f"{_minutes(canary_seconds)} (max {_minutes(policy.max_canary_seconds)}) at ratio "
            f"{ratio:g}"
        )
        if promotion_step:
            reason += f"; {_gate_reason(gate, policy)}"
    elif not canary_seen_in_last_window:
        action, reason = "hold", "hold: no canary data in the last window"
    elif step_c < step.canary_minimum or step_a < step.active_minimum:
        action = "hold"
        reason = (
            f"hold: too few samples this step (canary {step_c}, active {step_a}; need "
            f"{step.canary_minimum} and {step.active_minimum})"
        )
    elif held:
        action = "hold"
        reason = "hold: " + "; ".join(
            f"canary {_label(test.quantile)} is beyond {test.tolerance:g}x active's at the "
            f"hold level (canary >= {_ms(test.canary_lower)}, active <= "
            f"{_ms(test.active_upper)}), not yet significant"
            for test in held
        )
    elif step_seconds < policy.min_step_seconds:
        action = "hold"
        reason = (
            f"hold: step at ratio {ratio:g} has run {_minutes(step_seconds)} of "
            f"{_minutes(policy.min_step_seconds)}"
        )
    elif not promotion_step:
        action, next_index = "advance", step_index + 1
        reason = (
            f"advance {ratio:g} -> {policy.steps[next_index]:g}: canary {step_c} requests this "
            f"step, error rate {_pct(errors.canary_rate)} vs active {_pct(errors.active_rate)}, "
            f"no alarm, no hold"
        )
    elif not gate.passed:
        action, reason = "hold", f"hold: promotion gate: {_gate_reason(gate, policy)}"
    else:
        action = "promote"
        reason = (
            f"promote: shown not materially worse at beta {policy.beta:g}: error rate "
            f"{_pct(errors.canary_rate)} vs {_pct(errors.active_rate)} (gate e-value "
            f"{gate.error_e_value:.3g}), p95 <= {_ms(gate.p95.canary_upper)}, p99 <= "
            f"{_ms(gate.p99.canary_upper)}"
        )

    return Decision(
        action=action,
        reason=reason + note,
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
        inconclusive=inconclusive,
        evidence=evidence,
        gate=gate,
        step=step,
        holds=[_label(t.quantile) for t in held],
        servers=listed,
        servers_total=len(servers),
        excluded_servers=left_out,
    )
