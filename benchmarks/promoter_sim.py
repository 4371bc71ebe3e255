"""Simulated canaries judged by the real promoter judge.

A seeded synthetic fleet serves a steady stream of requests (Poisson, ``--rpm`` per minute)
split between active and canary by the current step's ratio. Errors are Bernoulli per
request, latencies log-normal. Every simulated 5 minutes the promoter looks at the
cumulative data since the canary started and :func:`modelshelf_promoter._judge.judge`
decides. Counts are drawn per 5-minute interval (binomial); every request's latency is
drawn and binned exactly as a DDSketch of relative accuracy 1% bins it (no subsampling),
and the judge gets real DDSketches built from those bins. A ratio change reaches the fleet
at once (real servers take a poll interval).

Parts printed in one run:

* A/A: canaries identical to active (1% errors): how often the judge rolls one back, next
  to a naive rule re-checked at every run on the same data (roll back when the canary's
  error rate exceeds active's x 1.05 by a one-shot one-sided z-test at alpha 0.05);
* the same at the margin's edge: canaries at exactly the tolerated error rate (1.05%);
* A/B errors: active 1% vs canary 3% errors: detection rate and requests until rollback;
* A/B latency: a canary whose p99 is 1.5x active's (p95 1.33x, same median): the same;
* healthy canary at 200 requests per minute: time to full promotion (taken from the A/A
  canaries, which are healthy canaries).

How "the same data" is arranged: until a rule alarms, the canary's path (ratio changes)
follows the judge's progress rules (sample counts, time, and a hold while a latency
quantile looks beyond tolerance), never its alarms. Every canary is simulated along that
alarm-free path and each rule's first alarm on it is recorded; a rule "rolls back" a
canary when its first alarm comes before the path's promotion, which is exactly what a
promoter using that rule would do on that data. The simulation checks at every look that
the judge's own non-alarm decisions agree with the path.

The latency regression is slow to prove at the 5% step (about 10 canary requests a minute,
a p99 tail sample every 10 minutes); the judge holds the canary there meanwhile, so its
figures are dominated by that wait rather than by the traffic share.

Usage: ``python benchmarks/promoter_sim.py [--canaries 1000] [--seed 7] [--rpm 200]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from modelshelf.metrics import SKETCH_RELATIVE_ACCURACY, ArmStats, sketch_from_bins, sketch_gamma
from modelshelf_promoter._judge import judge
from modelshelf_promoter._policy import PromotionPolicy

INTERVAL_SECONDS = 300
Z_P99 = 2.3263478740408408  # standard normal 0.99 quantile
_LOG_GAMMA = math.log(sketch_gamma(SKETCH_RELATIVE_ACCURACY))
# Latencies are binned between 0.01 ms and 1000 s; anything outside lands in the end bins.
_KEY_MIN = math.ceil(math.log(0.01) / _LOG_GAMMA)
_KEY_MAX = math.ceil(math.log(1e6) / _LOG_GAMMA)
_BINS = _KEY_MAX - _KEY_MIN + 1
_START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    """One kind of canary."""

    name: str
    rpm: float = 200.0
    active_error: float = 0.01
    canary_error: float = 0.01
    median_ms: float = 50.0
    active_sigma: float = 0.5
    canary_sigma: float = 0.5


@dataclass
class Outcome:
    """What happened to each simulated canary."""

    judge_alarm_run: list[int | None] = field(default_factory=list)
    naive_alarm_run: list[int | None] = field(default_factory=list)
    promote_run: list[int | None] = field(default_factory=list)
    total_requests_at: list[list[int]] = field(default_factory=list)
    canary_requests_at: list[list[int]] = field(default_factory=list)
    judge_calls: int = 0
    seconds: float = 0.0

    def rolled_back(self, alarms: list[int | None]) -> list[int]:
        """Indices of canaries whose first alarm came before (or without) promotion."""
        out = []
        for i, alarm in enumerate(alarms):
            promoted = self.promote_run[i]
            if alarm is not None and (promoted is None or alarm <= promoted):
                out.append(i)
        return out


def _naive_alarm(n_a: np.ndarray, y_a: np.ndarray, n_c: np.ndarray, y_c: np.ndarray) -> np.ndarray:
    """The naive rule: one-sided z-test of p_c > 1.05 p_a at 0.05, re-run at every look."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_a = np.where(n_a > 0, y_a / np.maximum(n_a, 1), 0.0)
        p_c = np.where(n_c > 0, y_c / np.maximum(n_c, 1), 0.0)
        diff = p_c - 1.05 * p_a
        se = np.sqrt(
            p_c * (1 - p_c) / np.maximum(n_c, 1) + 1.05**2 * p_a * (1 - p_a) / np.maximum(n_a, 1)
        )
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), 0.0)
    return (n_c > 0) & (n_a > 0) & (diff > 0) & (z > 1.6448536269514722)


def _bin_latencies(
    rng: np.random.Generator, counts: np.ndarray, sigma: float, median_ms: float, out: np.ndarray
) -> None:
    """Draw ``counts[i]`` latencies for canary i and add their sketch bins to ``out[i]``."""
    total = int(counts.sum())
    if total == 0:
        return
    values = rng.lognormal(math.log(median_ms), sigma, size=total)
    keys = np.ceil(np.log(values) / _LOG_GAMMA).astype(np.int64)
    np.clip(keys, _KEY_MIN, _KEY_MAX, out=keys)
    owner = np.repeat(np.arange(len(counts)), counts)
    flat = owner * _BINS + (keys - _KEY_MIN)
    out += np.bincount(flat, minlength=out.size).reshape(out.shape)


# The value a DDSketch reports for each bin (its representative), for min, max and sum.
_GAMMA = sketch_gamma(SKETCH_RELATIVE_ACCURACY)
_BIN_VALUES = np.exp(np.arange(_KEY_MIN, _KEY_MAX + 1) * _LOG_GAMMA) * 2 / (1 + _GAMMA)


def _arm(count: int, errors: int, bins_row: np.ndarray) -> ArmStats:
    nonzero = np.flatnonzero(bins_row)
    bins = dict(zip((nonzero + _KEY_MIN).tolist(), bins_row[nonzero].tolist(), strict=True))
    sketch = sketch_from_bins(
        bins,
        minimum=float(_BIN_VALUES[nonzero[0]]) if len(nonzero) else None,
        maximum=float(_BIN_VALUES[nonzero[-1]]) if len(nonzero) else None,
        value_sum=float(bins_row @ _BIN_VALUES),
    )
    return ArmStats(count=count, errors=errors, latency=sketch)


def simulate(
    scenario: Scenario,
    policy: PromotionPolicy,
    canaries: int,
    seed: int,
    max_runs: int = 288,
    track_naive: bool = True,
) -> Outcome:
    """Simulate ``canaries`` independent canaries of one scenario along their alarm-free paths.

    A canary's simulation ends at promotion, or once every tracked rule has alarmed (with
    ``track_naive=False`` only the judge is tracked).

    Returns:
        Per canary: the run (1-based, one every 5 minutes) of the judge's first rollback,
        of the naive rule's first alarm, of promotion, and the cumulative request counts.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    k = canaries
    steps = policy.steps
    step = np.zeros(k, dtype=np.int64)
    step_start_run = np.zeros(k, dtype=np.int64)
    n = np.zeros((2, k), dtype=np.int64)  # [active, canary]
    y = np.zeros((2, k), dtype=np.int64)
    bins = np.zeros((2, k, _BINS), dtype=np.float64)
    alive = np.ones(k, dtype=bool)  # not yet promoted
    judged = np.ones(k, dtype=bool)  # the judge has not alarmed yet
    out = Outcome(
        judge_alarm_run=[None] * k,
        naive_alarm_run=[None] * k,
        promote_run=[None] * k,
        total_requests_at=[[] for _ in range(k)],
        canary_requests_at=[[] for _ in range(k)],
    )
    for run in range(1, max_runs + 1):
        if not alive.any():
            break
        ratio = np.array(steps)[step]
        total = np.where(alive, rng.poisson(scenario.rpm * INTERVAL_SECONDS / 60, size=k), 0)
        n_c = rng.binomial(total, ratio)
        n_a = total - n_c
        e_c = rng.binomial(n_c, scenario.canary_error)
        e_a = rng.binomial(n_a, scenario.active_error)
        n += np.stack([n_a, n_c])
        y += np.stack([e_a, e_c])
        _bin_latencies(rng, n_a, scenario.active_sigma, scenario.median_ms, bins[0])
        _bin_latencies(rng, n_c, scenario.canary_sigma, scenario.median_ms, bins[1])

        naive = _naive_alarm(n[0], y[0], n[1], y[1])
        now = _START + timedelta(seconds=run * INTERVAL_SECONDS)
        min_step_runs = math.ceil(policy.min_step_seconds / INTERVAL_SECONDS)
        for i in np.flatnonzero(alive):
            out.total_requests_at[i].append(int(n[0, i] + n[1, i]))
            out.canary_requests_at[i].append(int(n[1, i]))
            if naive[i] and out.naive_alarm_run[i] is None:
                out.naive_alarm_run[i] = run
            decision = judge(
                policy,
                step_index=int(step[i]),
                ratio=float(ratio[i]),
                canary_started_at=_START,
                step_started_at=_START
                + timedelta(seconds=int(step_start_run[i]) * INTERVAL_SECONDS),
                now=now,
                active=_arm(int(n[0, i]), int(y[0, i]), bins[0, i]),
                canary=_arm(int(n[1, i]), int(y[1, i]), bins[1, i]),
                canary_seen_in_last_window=bool(n_c[i] > 0),
            )
            out.judge_calls += 1
            # The alarm-free path: the judge's progress rules, re-derived from the numbers
            # it reports so the path goes on after an alarm (for the naive rule's sake).
            ready = (
                n_c[i] > 0
                and min(n[0, i], n[1, i]) >= policy.min_requests_per_arm
                and run - step_start_run[i] >= min_step_runs
                and not any(
                    t.checked and t.observed_ratio is not None and t.observed_ratio > t.tolerance
                    for t in (decision.latency_p95, decision.latency_p99)
                )
            )
            if decision.action == "rollback":
                if judged[i]:
                    out.judge_alarm_run[i] = run
                    judged[i] = False
                if not track_naive or out.naive_alarm_run[i] is not None:
                    alive[i] = False
                    continue
            elif decision.action == "abort":  # undecided after max_canary_seconds
                alive[i] = False
                continue
            elif (decision.action in ("advance", "promote")) != ready:
                raise AssertionError(f"judge said {decision.action}, the path says {ready}")
            if ready:
                if step[i] + 1 < len(steps):
                    step[i] += 1
                    step_start_run[i] = run
                else:
                    out.promote_run[i] = run
                    alive[i] = False
    out.seconds = time.perf_counter() - started
    return out


def _rate_line(label: str, hits: int, total: int) -> str:
    rate = hits / total
    half = 1.96 * math.sqrt(max(rate * (1 - rate), 1e-12) / total)
    return f"{label:<44} {rate:7.2%}  ({hits}/{total}, +-{half:.1%})"


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f}" if values else "n/a"


def part_aa(policy: PromotionPolicy, canaries: int, seed: int, rpm: float) -> Outcome:
    """A/A: false rollbacks of the judge and of the naive rule, on the same canaries."""
    out = simulate(Scenario("A/A", rpm=rpm), policy, canaries, seed)
    judge_rb = out.rolled_back(out.judge_alarm_run)
    naive_rb = out.rolled_back(out.naive_alarm_run)
    print(f"A/A: {canaries} canaries identical to active (1% errors), {rpm:g} req/min")
    print(
        "  "
        + _rate_line(
            f"false rollbacks, sequential judge (alpha {policy.alpha:g})", len(judge_rb), canaries
        )
    )
    print(
        "  " + _rate_line("false rollbacks, naive z-test re-run each look", len(naive_rb), canaries)
    )
    print(f"  ({out.judge_calls:,} judge calls, {out.seconds:.1f} s)")
    return out


def part_margin_edge(policy: PromotionPolicy, canaries: int, seed: int, rpm: float) -> Outcome:
    """Canaries exactly at the tolerated error rate (1.05%): the hardest case for the test."""
    edge = 0.01 * (1 + policy.error_margin.value)
    out = simulate(Scenario("edge", rpm=rpm, canary_error=edge), policy, canaries, seed)
    judge_rb = out.rolled_back(out.judge_alarm_run)
    naive_rb = out.rolled_back(out.naive_alarm_run)
    print(
        f"At the margin's edge: {canaries} canaries at {edge:.2%} errors vs active 1% "
        "(within tolerance, barely)"
    )
    print(
        "  "
        + _rate_line(
            f"false rollbacks, sequential judge (error share {policy.error_alpha:g})",
            len(judge_rb),
            canaries,
        )
    )
    print(
        "  " + _rate_line("false rollbacks, naive z-test re-run each look", len(naive_rb), canaries)
    )
    print(f"  ({out.judge_calls:,} judge calls, {out.seconds:.1f} s)")
    return out


def part_regression(
    title: str,
    scenario: Scenario,
    policy: PromotionPolicy,
    canaries: int,
    seed: int,
    naive: bool = True,
) -> Outcome:
    """A/B: how often and how fast a bad canary is rolled back before promotion."""
    out = simulate(scenario, policy, canaries, seed, track_naive=naive)
    caught = out.rolled_back(out.judge_alarm_run)
    naive_rb = out.rolled_back(out.naive_alarm_run)
    total = [out.total_requests_at[i][out.judge_alarm_run[i] - 1] for i in caught]  # type: ignore[operator]
    canary = [out.canary_requests_at[i][out.judge_alarm_run[i] - 1] for i in caught]  # type: ignore[operator]
    minutes = [out.judge_alarm_run[i] * 5 for i in caught]  # type: ignore[operator]
    print(f"{title}: {canaries} canaries, {scenario.rpm:g} req/min")
    print("  " + _rate_line("rolled back before promotion (judge)", len(caught), canaries))
    print(
        f"  {'median requests until rollback (all / canary)':<44} "
        f"{_median(total)} / {_median(canary)}; median {_median(minutes)} min"
    )
    if naive:
        print(
            "  " + _rate_line("rolled back by the naive rule (for scale)", len(naive_rb), canaries)
        )
    print(f"  ({out.judge_calls:,} judge calls, {out.seconds:.1f} s)")
    return out


def part_healthy(aa: Outcome, rpm: float) -> None:
    """Time to full promotion of the healthy (A/A) canaries that were not rolled back."""
    rolled = set(aa.rolled_back(aa.judge_alarm_run))
    minutes = [
        run * 5 for i, run in enumerate(aa.promote_run) if run is not None and i not in rolled
    ]
    print(f"Healthy canary at {rpm:g} req/min (the A/A canaries): {len(minutes)} promoted")
    if minutes:
        print(
            f"  median time to full promotion {_median(minutes)} min "
            f"(min {min(minutes)}, max {max(minutes)})"
        )


def main(argv: list[str] | None = None) -> int:
    """Run every simulation part and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=1000, help="canaries per scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rpm", type=float, default=200.0, help="total requests per minute")
    args = parser.parse_args(argv)
    policy = PromotionPolicy()
    print(
        f"policy: steps {list(policy.steps)}, >= {policy.min_requests_per_arm} requests/arm, "
        f">= {policy.min_step_seconds / 60:g} min/step, error margin "
        f"{policy.error_margin.kind} {policy.error_margin.value:g}, latency tolerance "
        f"{policy.latency_p95_ratio:g}x p95 / {policy.latency_p99_ratio:g}x p99, "
        f"alpha {policy.alpha:g}; one look every 5 min"
    )
    started = time.perf_counter()
    aa = part_aa(policy, args.canaries, args.seed, args.rpm)
    part_margin_edge(policy, args.canaries, args.seed + 3, args.rpm)
    part_regression(
        "A/B errors: active 1% vs canary 3%",
        Scenario("errors", rpm=args.rpm, canary_error=0.03),
        policy,
        args.canaries,
        args.seed + 1,
    )
    part_regression(
        "A/B latency: canary p99 1.5x active's (p95 1.33x, same median)",
        Scenario("latency", rpm=args.rpm, canary_sigma=0.5 + math.log(1.5) / Z_P99),
        policy,
        args.canaries,
        args.seed + 2,
        naive=False,
    )
    part_healthy(aa, args.rpm)
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
