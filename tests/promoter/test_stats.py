"""Metrics summaries (serialization, merging) and the promoter's sequential tests."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from ddsketch import DDSketch

from modelshelf._errors import InvalidInputError
from modelshelf.metrics import (
    ArmStats,
    MetricsSummary,
    arm_stats_from_json,
    arm_stats_to_json,
    metrics_key,
    new_sketch,
    parse_metrics_key,
    parse_window_key,
    sketch_from_bins,
    sketch_gamma,
    summary_from_json,
    summary_key,
    summary_to_json,
    window_key,
    window_start,
)
from modelshelf_promoter import _stats
from modelshelf_promoter._stats import (
    MIN_ERRORS_TO_ALARM,
    LatencyHistogram,
    error_rate_test,
    latency_test,
    mixture_log_e_value,
    quantile_lower_bound,
    quantile_upper_bound,
)

WINDOW = datetime(2025, 3, 1, 12, 34, tzinfo=UTC)
QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
LOG_GAMMA = math.log(sketch_gamma(0.01))


def _sketch(values: list[float]) -> DDSketch:
    sketch = new_sketch()
    for value in values:
        sketch.add(value)
    return sketch


def _summary(values: list[float], *, errors: int = 1, seq: int = 0, server: str = "web-1"):
    return MetricsSummary(
        model="iris",
        version="1.2.0",
        server_id=server,
        seq=seq,
        window_start=WINDOW,
        window_seconds=60,
        count=len(values),
        errors=errors,
        latency=_sketch(values),
        created_at=WINDOW + timedelta(seconds=61),
    )


def _dyadic(rng: np.random.Generator, n: int) -> list[float]:
    # Multiples of 1/64 add exactly in any order, so sums compare bit for bit.
    return [float(v) for v in np.round(rng.lognormal(3.5, 0.6, n) * 64) / 64]


# --- summaries --------------------------------------------------------------------------------


def test_summary_round_trip_preserves_everything_exactly() -> None:
    rng = np.random.default_rng(1)
    values = [float(v) for v in rng.lognormal(3.5, 0.8, 2000)] + [0.0, 0.0]
    summary = _summary(values, errors=17, seq=42)
    data = summary_to_json(summary)
    back = summary_from_json(data)
    assert summary_to_json(back) == data, "re-serializing a parsed summary changed its bytes"
    for q in QUANTILES:
        assert back.latency.get_quantile_value(q) == summary.latency.get_quantile_value(q), (
            f"quantile {q} changed in the round trip"
        )
    assert (back.latency.count, back.latency.sum) == (summary.latency.count, summary.latency.sum)
    assert (back.latency._min, back.latency._max) == (min(values), max(values)), "min/max lost"
    assert (back.count, back.errors, back.seq, back.window_start) == (2002, 17, 42, WINDOW)
    assert list(json.loads(data)) == sorted(json.loads(data)), "top-level keys are not sorted"


def test_same_content_gives_same_bytes_whatever_the_insertion_order() -> None:
    values = _dyadic(np.random.default_rng(2), 500)
    forward = summary_to_json(_summary(values))
    backward = summary_to_json(_summary(values[::-1]))
    assert forward == backward, "the serialized sketch depends on insertion order"


def test_summary_key_round_trip_and_layout() -> None:
    summary = _summary([1.0], seq=7, server="web-3.eu-west")
    key = summary_key(summary)
    assert key == "iris/metrics/1.2.0/20250301T123400Z/web-3.eu-west-00000007.json", key
    parsed = parse_metrics_key(key)
    assert (parsed.model, parsed.version, parsed.server_id, parsed.seq) == (
        "iris",
        "1.2.0",
        "web-3.eu-west",
        7,
    ), f"parsed wrong parts: {parsed}"
    assert parsed.window_start == WINDOW, "window start lost in the key"
    for bad in (
        "iris/metrics/1.2.0/20250301T123400Z/web.json",
        "iris/metrics/1.2.0/20250301T123400Z/-1.json",
        "iris/metrics/1.2/20250301T123400Z/web-1-1.json",
        "iris/metrics/1.2.0/2025-03-01/web-1-1.json",
        "iris/versions/1.2.0.json",
    ):
        with pytest.raises(InvalidInputError):
            parse_metrics_key(bad)


def test_windows_align_on_the_epoch_and_need_aware_times() -> None:
    at = datetime(2025, 3, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert window_start(at, 60) == WINDOW, "one-minute window not floored"
    assert window_key(at, 300) == "20250301T123000Z", "five-minute window not floored"
    paris = at.astimezone(timezone(timedelta(hours=1)))
    assert window_key(paris, 60) == "20250301T123400Z", "non-UTC input not converted"
    assert parse_window_key("20250301T123400Z") == WINDOW
    with pytest.raises(InvalidInputError):
        window_key(datetime(2025, 3, 1, 12, 34), 60)
    with pytest.raises(InvalidInputError):
        window_key(at, 0)
    with pytest.raises(InvalidInputError):
        metrics_key("iris", "1.2.0", WINDOW, "web/1", 0)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(errors=d["count"] + 1), "errors"),
        (lambda d: d["latency"].update(count=d["latency"]["count"] + 1), "count"),
        (lambda d: d["latency"]["bins"].update({"x": 1.0}), "index"),
        (lambda d: d["latency"].update(min=None), "min"),
        (lambda d: d.update(window_start="2025-03-01T12:34:30Z"), "aligned"),
        (lambda d: d.update(version="1.2"), "version"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.pop("latency") and d.update(latency=[1, 2]), "latency"),
        (lambda d: d.update(route_buckets=100, bucket_errors={"100": 1}), "bucket_errors"),
        (lambda d: d.update(bucket_errors={"3": 1}), "route_buckets"),
        (lambda d: d.update(route_buckets=100, bucket_errors={"3": 99}), "more than the errors"),
        (lambda d: d.update(served_ratio=1.5), "served_ratio"),
        (lambda d: d.update(error_latency=d["latency"]), "failed-request sketch"),
    ],
)
def test_corrupt_summaries_raise_a_clear_error(mutate, needle: str) -> None:
    data = json.loads(summary_to_json(_summary([10.0, 20.0, 30.0])))
    mutate(data)
    with pytest.raises(InvalidInputError) as info:
        summary_from_json(json.dumps(data).encode(), "iris/metrics/x.json")
    message = str(info.value)
    assert "iris/metrics/x.json" in message and needle in message, message


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[]", b'{"count": 1}'])
def test_unparseable_bytes_raise_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="corrupt metrics object"):
        summary_from_json(data)


def test_merge_is_associative_commutative_and_exact() -> None:
    rng = np.random.default_rng(3)
    parts = [_dyadic(rng, n) for n in (300, 1, 700)]
    a, b, c = (ArmStats.from_summary(_summary(p, seq=i)) for i, p in enumerate(parts))
    left = arm_stats_to_json(a.merge(b).merge(c))
    right = arm_stats_to_json(a.merge(b.merge(c)))
    swapped = arm_stats_to_json(c.merge(a).merge(b))
    assert left == right, "merge is not associative"
    assert left == swapped, "merge is not commutative"
    merged = a.merge(b).merge(c)
    everything = _sketch([v for p in parts for v in p])
    for q in QUANTILES:
        assert merged.quantile(q) == everything.get_quantile_value(q), (
            f"merged quantile {q} differs from the sketch of all values"
        )
    assert (merged.count, merged.errors, merged.summaries) == (1001, 3, 3)
    assert a.count == 300 and a.latency.count == 300, "merge mutated its input"
    assert arm_stats_to_json(arm_stats_from_json(left)) == left, "ArmStats round trip"


def test_merging_sketches_of_different_accuracy_is_refused() -> None:
    coarse = DDSketch(0.05)
    coarse.add(10.0)
    other = ArmStats(count=1, errors=0, latency=coarse)
    with pytest.raises(InvalidInputError, match="relative accuracy"):
        ArmStats.from_summary(_summary([1.0])).merge(other)


# --- error-rate test --------------------------------------------------------------------------


def _first_alarms(
    rng: np.random.Generator,
    runs: int,
    looks: int,
    p_active: float,
    p_canary: float,
    share: float,
    per_look: int,
    rule,
) -> int:
    alarms = 0
    for _ in range(runs):
        n = rng.poisson(per_look, looks)
        n_c = rng.binomial(n, share)
        n_a = n - n_c
        y_c, y_a = rng.binomial(n_c, p_canary), rng.binomial(n_a, p_active)
        c = np.cumsum([n_a, y_a, n_c, y_c], axis=1)
        if any(rule(*(int(v) for v in c[:, k])) for k in range(looks)):
            alarms += 1
    return alarms


def _judge_rule(kind: str, margin: float, alpha: float):
    def rule(n_a: int, y_a: int, n_c: int, y_c: int) -> bool:
        return error_rate_test(
            active_requests=n_a,
            active_errors=y_a,
            canary_requests=n_c,
            canary_errors=y_c,
            margin=margin,
            margin_kind=kind,
            alpha=alpha,
            mixture_sd=0.01,
        ).alarm

    return rule


def _naive_rule(n_a: int, y_a: int, n_c: int, y_c: int) -> bool:
    if not n_a or not n_c:
        return False
    p_a, p_c = y_a / n_a, y_c / n_c
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_c * (1 - p_c) / n_c)
    return se > 0 and (p_c - p_a) / se > 1.645


# Upper end of a binomial(300, 0.05) at 1 - 1e-4: a valid test stays below it.
_TOLERATED_ALARMS = 15 + 3.7 * math.sqrt(300 * 0.05 * 0.95)


@pytest.mark.parametrize(
    ("kind", "margin", "p_canary"),
    [("absolute", 0.0, 0.02), ("relative", 0.05, 0.021), ("absolute", 0.005, 0.025)],
)
def test_false_alarms_stay_below_alpha_under_repeated_looks(
    kind: str, margin: float, p_canary: float
) -> None:
    """300 canaries exactly on the null's boundary, 60 looks each; alpha 0.05."""
    rng = np.random.default_rng(11)
    p_active = 0.02
    alarms = _first_alarms(
        rng, 300, 60, p_active, p_canary, 0.1, 1000, _judge_rule(kind, margin, 0.05)
    )
    assert alarms <= _TOLERATED_ALARMS, (
        f"{alarms}/300 false alarms at the boundary ({kind} {margin}): not always valid"
    )


def test_the_harness_catches_a_test_that_is_not_always_valid() -> None:
    """The same harness, with a fixed-sample z-test re-run at every look, must fail."""
    rng = np.random.default_rng(11)
    alarms = _first_alarms(rng, 300, 60, 0.02, 0.02, 0.1, 1000, _naive_rule)
    assert alarms > _TOLERATED_ALARMS, (
        f"the naive rule raised only {alarms}/300 alarms: the harness cannot tell"
    )


def test_clear_regression_is_detected_with_its_numbers() -> None:
    test = error_rate_test(
        active_requests=20_000,
        active_errors=200,
        canary_requests=2_000,
        canary_errors=60,
        margin=0.05,
        margin_kind="relative",
        alpha=0.025,
        mixture_sd=0.01,
    )
    assert test.alarm, f"3% vs 1% on 2,000 canary requests not detected: {test}"
    assert test.e_value >= 40 and test.p_value <= 0.025, test
    assert test.tolerated_rate == pytest.approx(0.0105), test
    assert test.difference == pytest.approx(0.03 - 1.05 * 0.01), test


def test_relative_and_absolute_margins_mean_what_they_say() -> None:
    counts = {"active_requests": 400_000, "active_errors": 4_000, "canary_requests": 400_000}
    common = {"alpha": 0.05, "mixture_sd": 0.01}
    # Canary at 1.5%: inside a 60% relative margin, outside a 0.1 pp absolute one.
    inside = error_rate_test(
        **counts, canary_errors=6_000, margin=0.6, margin_kind="relative", **common
    )
    outside = error_rate_test(
        **counts, canary_errors=6_000, margin=0.001, margin_kind="absolute", **common
    )
    assert not inside.alarm and inside.e_value < 1, f"within relative margin alarmed: {inside}"
    assert outside.alarm, f"beyond absolute margin not detected: {outside}"
    assert outside.tolerated_rate == pytest.approx(0.011), outside


def test_a_better_canary_and_empty_arms_give_no_evidence() -> None:
    better = error_rate_test(
        active_requests=10_000,
        active_errors=300,
        canary_requests=10_000,
        canary_errors=100,
        margin=0.0,
        margin_kind="absolute",
        alpha=0.05,
        mixture_sd=0.01,
    )
    assert not better.alarm and better.e_value < 0.05 and better.p_value == 1.0, better
    empty = error_rate_test(
        active_requests=100,
        active_errors=1,
        canary_requests=0,
        canary_errors=0,
        margin=0.05,
        margin_kind="relative",
        alpha=0.05,
        mixture_sd=0.01,
    )
    assert not empty.alarm and empty.e_value == 1.0 and empty.canary_rate is None, empty


def test_no_alarm_before_the_minimum_number_of_canary_errors() -> None:
    few = MIN_ERRORS_TO_ALARM - 1
    test = error_rate_test(
        active_requests=100_000,
        active_errors=0,
        canary_requests=few,
        canary_errors=few,
        margin=0.0,
        margin_kind="absolute",
        alpha=0.05,
        mixture_sd=0.01,
    )
    assert test.e_value > 20 and not test.alarm, f"alarmed on {few} errors: {test}"


@pytest.mark.parametrize("theta", [-0.02, 0.0, 0.004, 0.02])
def test_closed_form_matches_the_half_normal_mixture(theta: float) -> None:
    variance, tau = 4e-5, 0.01
    grid = np.linspace(0.0, 12 * tau, 200_001)
    # Likelihood ratio of drift mu vs 0 for an estimate theta with this variance.
    lr = np.exp((grid * theta - grid**2 / 2) / variance)
    density = 2 * np.exp(-(grid**2) / (2 * tau**2)) / (tau * math.sqrt(2 * math.pi))
    numeric = float(np.sum(lr * density) * (grid[1] - grid[0]))
    closed = math.exp(mixture_log_e_value(theta, variance, tau))
    assert closed == pytest.approx(numeric, rel=1e-3), f"closed form {closed} vs {numeric}"


# --- latency ----------------------------------------------------------------------------------


def _hist(values: np.ndarray) -> LatencyHistogram:
    keys = np.ceil(np.log(values) / LOG_GAMMA).astype(np.int64)
    uniq, counts = np.unique(keys, return_counts=True)
    bins = dict(zip(uniq.tolist(), counts.astype(float).tolist(), strict=True))
    return LatencyHistogram.from_sketch(sketch_from_bins(bins))


def test_histogram_reads_exact_counts_from_a_real_sketch() -> None:
    values = [1.0, 2.0, 2.0, 50.0, 1000.0]
    hist = LatencyHistogram.from_sketch(_sketch([*values, 0.0]))
    assert hist.below == 1 and hist.total == 6, hist
    for i in range(len(hist.keys)):
        below_edge = sum(v <= hist.edge(i) * (1 + 1e-12) for v in [0.0, *values])
        assert hist.cumulative[i] == below_edge, f"bin {hist.keys[i]} miscounts"


def test_quantile_bounds_bracket_the_truth() -> None:
    rng = np.random.default_rng(5)
    hist = _hist(rng.lognormal(math.log(50), 0.5, 50_000))
    true_p99 = 50 * math.exp(0.5 * 2.3263478740408408)
    lower = quantile_lower_bound(hist, 0.99, 0.01)
    upper = quantile_upper_bound(hist, 0.99, 0.01)
    assert lower is not None and upper is not None, "no bounds on 50,000 values"
    assert lower < true_p99 < upper, f"{lower} < {true_p99} < {upper} fails"
    assert upper / lower < 1.25, f"bounds too loose on 50,000 values: {lower}..{upper}"


def test_latency_false_alarms_stay_below_alpha_with_zero_tolerance() -> None:
    """Identical arms, tolerance 1.0 (the null's boundary), 20 looks, 200 runs, alpha 0.1."""
    rng = np.random.default_rng(6)
    alarms = 0
    for _ in range(200):
        a = rng.lognormal(3.9, 0.5, 20 * 400)
        c = rng.lognormal(3.9, 0.5, 20 * 100)
        for look in range(1, 21):
            result = latency_test(
                _hist(a[: look * 400]),
                _hist(c[: look * 100]),
                quantile=0.95,
                tolerance=1.0,
                alpha=0.1,
                min_samples=50,
            )
            if result.alarm:
                alarms += 1
                break
    # Binomial(200, 0.1) has mean 20, sd 4.2.
    assert alarms <= 20 + 3.7 * 4.25, f"{alarms}/200 latency false alarms at alpha 0.1"


def test_slow_canary_tail_is_detected_and_small_samples_are_not_checked() -> None:
    rng = np.random.default_rng(7)
    active = _hist(rng.lognormal(math.log(50), 0.5, 20_000))
    slow = _hist(rng.lognormal(math.log(50), 0.5 + math.log(1.5) / 2.326, 10_000))
    result = latency_test(active, slow, quantile=0.99, tolerance=1.2, alpha=0.0125, min_samples=200)
    assert result.checked and result.alarm, f"1.5x p99 on 10,000 requests missed: {result}"
    assert result.canary_lower > 1.2 * result.active_upper, result
    tiny = _hist(rng.lognormal(math.log(500), 0.5, 100))
    unchecked = latency_test(
        active, tiny, quantile=0.99, tolerance=1.2, alpha=0.0125, min_samples=200
    )
    assert not unchecked.checked and not unchecked.alarm, unchecked


def test_bernoulli_mixture_is_a_test_martingale_on_average() -> None:
    """E[e-value] <= 1 under the null: checked exactly over the binomial distribution."""
    n, p0 = 200, 0.05
    expectation = 0.0
    for k in range(n + 1):
        log_pmf = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        log_pmf += k * math.log(p0) + (n - k) * math.log(1 - p0)
        expectation += math.exp(log_pmf + _stats.bernoulli_log_e_value(k, n, p0))
    assert expectation == pytest.approx(1.0, abs=1e-9), f"E[e] = {expectation}, not 1"
