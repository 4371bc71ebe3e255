"""Simulated canaries under the promoter's rules: the acceptance figures of the judge, in one table.

Each scenario runs ``--canaries`` independent canaries (default 1,000) with a promoter look
every 5 minutes, from the first step until each one is rolled back, promoted or ends
inconclusive at the policy's time limit (24 h). Traffic is Poisson at ``rpm`` requests a
minute, split by the current step's ratio over 100 route buckets (sticky routing: a client
is one route point); errors are Bernoulli per request; latencies of successful requests are
binned exactly as the recorder's DDSketch (relative accuracy 1%) bins them. A metrics window
is one 5-minute look here (the fleet's windows are 1 minute; a finer stratum only helps).

What runs is the judge's arithmetic, vectorised over canaries: the window-stratified exact
conditional error tests with their route-bucket caps and the stratified latency tail test
(:mod:`modelshelf_promoter._counts`, with the reader's tail thresholds), the always-valid
quantile bounds (:mod:`modelshelf_promoter._stats`), the hold, gate, step
minimums and time limit of :func:`modelshelf_promoter._judge.judge`, and the reader's
plausibility checks. The constants and the scalar formulas are imported from the promoter,
and ``--check N`` (default 2) replays the first N canaries of every scenario through the real
``judge()`` at every look (real sketches, real windows, the reader's server breakdown) and
counts the looks where it decided otherwise; the table's last column prints that count.

Scenarios (the issue's): healthy canaries (A/A) at 20, 200, 2,000 and 100,000 requests a
minute, with a shared error burst (errors x10 on both arms for 5 minutes, one every 4 hours
on average), with shared latency bursts (both arms x3 slower for 5 minutes, one an hour on
average), with one bad client (3% of the traffic, 20% errors, sticky), at the margin's
edge; a 1.5x error regression and a p99-only x1.5 regression (p95 unchanged) at every
traffic level; p99 x1.3, between the tolerance and materially worse, where either outcome
is allowed; 1% -> 3% errors; heavy (Pareto) tails with p99 x1.5; a low base rate
(0 -> 0.1% errors); and one of four servers reporting canary counts x100, with the reader's
checks and, for scale, without them.

Below the table, :func:`information_bound` prints what the error counts alone allow a healthy
canary at 200 requests a minute within 3 h (the acceptance figure the default policy misses),
what a planned-horizon design would (:func:`spending_bound`), and what a one-time test at a
fixed horizon, valid at any look, adds to the judge's gate (:func:`horizon_bound`).

Usage: ``python benchmarks/promoter_sim.py [--canaries 1000] [--seed 7] [--check 2]
[--only NAME]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from modelshelf.metrics import SKETCH_RELATIVE_ACCURACY, ArmStats, sketch_from_bins, sketch_gamma
from modelshelf_promoter._counts import (
    CAP_FACTOR,
    CAP_SLACK,
    FLOOR_WEIGHT,
    GATE_LOG_RATIOS,
    GATE_WEIGHTS,
    ROLLBACK_LOG_STEPS,
    WindowCounts,
)
from modelshelf_promoter._judge import CANARY_ALPHA_SHARE, HOLD_ALPHA, judge
from modelshelf_promoter._plausibility import ServerTotals, check_servers
from modelshelf_promoter._policy import PromotionPolicy, apply_settings
from modelshelf_promoter._reader import MIN_TAIL_SAMPLES
from modelshelf_promoter._stats import _LOGIT_STEPS

Array = npt.NDArray[np.float64]
INTERVAL = 300  # seconds between looks = one window
BUCKETS = 100
SERVERS = 4
_GAMMA = sketch_gamma(SKETCH_RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_START = datetime(2025, 1, 1, tzinfo=UTC)
Z95, Z99 = 1.6448536269514722, 2.3263478740408408


# --- latency distributions: CDFs evaluated at sketch bin edges ------------------------------


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def lognormal(median: float, sigma: float) -> Callable[[float], float]:
    """CDF of a log-normal latency."""
    return lambda x: _phi((math.log(x) - math.log(median)) / sigma) if x > 0 else 0.0


def pareto(scale: float, shape: float) -> Callable[[float], float]:
    """CDF of ``scale * U**(-1/shape)``: a heavy (Pareto) tail."""
    return lambda x: 0.0 if x <= scale else 1.0 - (x / scale) ** (-shape)


def tail_stretch(
    cdf: Callable[[float], float], knee: float, power: float
) -> Callable[[float], float]:
    """The distribution of ``T(X)``: unchanged below ``knee``, ``knee * (X/knee)**power`` above.

    Quantiles below the knee stay put; above it they grow, so a knee at active's p95 gives a
    p99-only regression.
    """

    def stretched(x: float) -> float:
        return cdf(x) if x <= knee else cdf(knee * (x / knee) ** (1.0 / power))

    return stretched


def quantile_of(cdf: Callable[[float], float], q: float) -> float:
    """Numeric inverse of a CDF (bisection on the log scale)."""
    lo, hi = 1e-6, 1e9
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Scenario:
    """One kind of canary."""

    name: str
    rpm: float = 200.0
    active_error: float = 0.01
    canary_error: float = 0.01
    active_latency: Callable[[float], float] = field(default=lognormal(50.0, 0.5))
    canary_latency: Callable[[float], float] | None = None  # None: as active
    burst_every_hours: float = 0.0  # shared bursts (both arms), 0: none
    burst_factor: float = 10.0
    latency_burst: float = 1.0  # during a burst both arms' latencies are this much slower
    bad_client_share: float = 0.0  # one sticky client with this traffic share...
    bad_client_error: float = 0.2  # ...and this error rate, whichever arm serves it
    liar: bool = False  # one of four servers reports canary counts x100
    checks: bool = True  # the reader's plausibility checks
    harmful: bool = False  # a regression: "promoted" is the failure, not "rolled back"


def _grid(cdfs: list[Callable[[float], float]]) -> tuple[int, Array]:
    """Sketch bin keys covering the tail region the arms need (their p80 to beyond p99.999).

    Mass below the first bin is lumped into it and mass above the last into the last: the
    bounds for p95 and p99 never look there, and the replay through judge() sees the same
    lumped bins.
    """
    low = min(quantile_of(c, 0.8) for c in cdfs)
    high = max(quantile_of(c, 0.999995) for c in cdfs)
    k_lo = math.ceil(math.log(low) / _LOG_GAMMA)
    k_hi = math.ceil(math.log(high) / _LOG_GAMMA)
    return k_lo, np.exp(np.arange(k_lo, k_hi + 1) * _LOG_GAMMA)


def _probs(cdf: Callable[[float], float], edges: Array) -> Array:
    cum = np.array([cdf(float(e)) for e in edges])
    cum[-1] = 1.0
    return np.maximum(np.diff(np.concatenate([[0.0], cum])), 0.0)


# --- vectorised mirrors of the promoter's scalar formulas -----------------------------------


def _log_mix(values: Array, weights: npt.ArrayLike) -> Array:
    w = np.asarray(weights, dtype=float)
    top = values.max(axis=-1, keepdims=True)
    mixed: Array = (top + np.log((w * np.exp(values - top)).sum(axis=-1, keepdims=True)))[..., 0]
    return mixed


def _cond_llr(y_c: Array, y_a: Array, share: Array, r0: float, r1: npt.ArrayLike) -> Array:
    """conditional_log_lr for arrays; r1 on the last axis."""
    r1 = np.asarray(r1, dtype=float)
    s = share[..., None]
    ok = (s > 0.0) & (s < 1.0)
    rest = 1.0 - s
    g0 = np.log(r0 * s + rest)
    g1 = np.log(r1 * s + rest)
    out = y_c[..., None] * (np.log(r1 / r0) - g1 + g0) + y_a[..., None] * (g0 - g1)
    return np.where(ok, out, 0.0)


def _rate_upper(errors: Array, requests: Array, level: float) -> Array:
    if level <= 0:
        return np.zeros_like(errors)
    d = np.array([0.5, 1.0, 2.0, 4.0])
    alt = level * np.exp(-d)
    ok = (requests - errors)[..., None]
    terms = errors[..., None] * np.log(alt / level) + ok * np.log((1 - alt) / (1 - level))
    out = _log_mix(terms, [0.25] * 4)
    return np.where(requests > 0, out, 0.0)


_STEPS = np.array(_LOGIT_STEPS)


def _bern(successes: Array, trials: Array, p0: float) -> Array:
    """bernoulli_log_e_value for arrays."""
    base = math.log(p0 / (1 - p0))
    alt = 1.0 / (1.0 + np.exp(-(base + _STEPS)))
    up, down = np.log(alt / p0), np.log((1 - alt) / (1 - p0))
    terms = successes[..., None] * up + (trials - successes)[..., None] * down
    top = terms.max(axis=-1, keepdims=True)
    out = (top + np.log(np.exp(terms - top).sum(axis=-1, keepdims=True) / len(_STEPS)))[..., 0]
    return np.where(trials > 0, out, 0.0)


def _upper(cum: Array, edges: Array, q: float, alpha: float) -> Array:
    """quantile_upper_bound per row (NaN: none yet)."""
    k, nb = cum.shape
    n = cum[:, -1]
    thr = math.log(1.0 / alpha)
    lo, hi = np.zeros(k, dtype=np.int64), np.full(k, nb, dtype=np.int64)
    rows = np.arange(k)
    for _ in range(int(math.log2(nb)) + 2):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        rej = _bern(cum[rows, np.minimum(mid, nb - 1)], n, q) >= thr
        hi = np.where(active & rej, mid, hi)
        lo = np.where(active & ~rej, mid + 1, lo)
    return np.where((lo < nb) & (n > 0), edges[np.minimum(lo, nb - 1)], np.nan)


def _lower(cum: Array, edges: Array, q: float, alpha: float) -> Array:
    """quantile_lower_bound per row, at the last *non-empty* bin as the real histogram has."""
    k, nb = cum.shape
    n = cum[:, -1]
    thr = math.log(1.0 / alpha)
    lo, hi = np.full(k, -1, dtype=np.int64), np.full(k, nb - 1, dtype=np.int64)
    rows = np.arange(k)
    for _ in range(int(math.log2(nb)) + 2):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi + 1) // 2
        rej = _bern(n - cum[rows, mid], n, 1.0 - q) >= thr
        lo = np.where(active & rej, mid, lo)
        hi = np.where(active & ~rej, mid - 1, hi)
    # The real histogram lists only non-empty bins: step back to the first bin holding
    # the same cumulative count.
    found = lo >= 0
    target = cum[rows, np.maximum(lo, 0)]
    first = (cum < target[:, None]).sum(axis=1)
    return np.where(found & (n > 0), edges[np.minimum(first, nb - 1)], np.nan)


def _caps_apply(capped: Array, errors: Array, members: npt.NDArray[np.bool_]) -> Array:
    """BucketCaps.apply for arrays; updates ``capped`` in place, returns counted errors."""
    m = members.sum(axis=1)
    vals = np.where(members, capped, -np.inf)
    vals = -np.sort(-vals, axis=1)  # descending, non-members last
    drop = np.where(m > 1, np.maximum(1, np.ceil(0.1 * m)), 0).astype(np.int64)
    idx = np.arange(capped.shape[1])[None, :]
    keep = (idx >= drop[:, None]) & (idx < m[:, None])
    kept_n = keep.sum(axis=1)
    mean = np.where(kept_n > 0, np.where(keep, vals, 0.0).sum(axis=1) / np.maximum(kept_n, 1), 0.0)
    cap = CAP_FACTOR * mean + CAP_SLACK
    after = np.minimum(capped + errors, np.maximum(cap[:, None], capped))
    after = np.where(errors > 0, after, capped)
    counted: Array = (after - capped).sum(axis=1)
    capped[...] = after
    return counted


def _binomial_lower_tail(successes: float, trials: float, p: float) -> float:
    """``P(Binomial(trials, p) <= successes)``, summed in log space (no normal approximation)."""
    n, c = int(trials), int(successes)
    if c >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)
    terms = [
        head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        for k in range(c + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


@dataclass(frozen=True)
class HorizonTest:
    """A one-time promotion test at a fixed time after the canary's start (this benchmark's
    analysis only; the judge does not have it).

    At the look ``decide_seconds`` after the start, and at no other, the canary's share of
    the errors in the promotion step's windows that started before ``data_seconds`` is
    tested against its share at ``error_worse_ratio``: given the windows' error counts it is
    a sum of independent Bernoulli trials (Poisson-binomial) under that ratio, whose lower
    tail is at most the binomial one with the mean probability (Hoeffding 1956, Theorem 4)
    below its mean minus one. Passing at level ``beta`` stands in for the sequential error
    gate, which keeps ``policy.beta - beta``; the latency gate is unchanged. A test that can
    reject only at one fixed time is valid however often the promoter looks (its rejection
    event does not depend on the looks), so this is an always-valid gate, not a planned
    group-sequential design. ``decide_seconds - data_seconds`` is the reader's lateness
    bound: by then the horizon's windows are closed and no late object changes them.
    Active's errors enter capped as in the gate (fewer errors can only raise the p-value).
    """

    beta: float
    data_seconds: float
    decide_seconds: float


def _catch_minimum(base: Array, share: Array, r0: float, catch: float, alpha: float) -> Array:
    ok = (base > 0) & (share > 0) & (share < 1)
    s = np.where(ok, share, 0.5)
    y_c = catch * base
    y_a = base * (1 - s) / s
    gain = _cond_llr(y_c, y_a, s, r0, [catch])[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.ceil(math.log(1.0 / alpha) / gain)
    return np.where(ok & (gain > 0), need, 0.0)


# --- the simulation ---------------------------------------------------------------------------


@dataclass
class Result:
    """What happened to each canary of a scenario."""

    scenario: Scenario
    outcome: npt.NDArray[np.int8]  # 0 running, 1 rolled back, 2 promoted, 3 inconclusive
    minutes: Array
    named: int = 0
    check_looks: int = 0
    check_disagree: int = 0
    seconds: float = 0.0


class _History:
    """The full per-window record of the canaries replayed through the real judge."""

    def __init__(self, ids: list[int], k_lo: int, nb: int) -> None:
        self.ids = ids
        self.windows: dict[int, list[WindowCounts]] = {i: [] for i in ids}
        self.k_lo, self.nb = k_lo, nb


def _regular(
    rng: np.random.Generator,
    mean: float,
    ratio: Array,
    sc: Scenario,
    burst: Array,
    canary_members: npt.NDArray[np.bool_],
    active_members: npt.NDArray[np.bool_],
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """One window of the many small clients: counts per arm, errors spread over buckets."""
    n = len(ratio)
    n_tot = rng.poisson(mean, n)
    n_c = rng.binomial(n_tot, ratio)
    n_a = n_tot - n_c
    y_c = rng.binomial(n_c, np.minimum(sc.canary_error * burst, 1.0))
    y_a = rng.binomial(n_a, np.minimum(sc.active_error * burst, 1.0))
    be_c = np.zeros((n, BUCKETS))
    be_a = np.zeros((n, BUCKETS))
    for r in np.unique(ratio):
        rows = np.flatnonzero(ratio == r)
        cm, am = canary_members[rows[0]], active_members[rows[0]]
        be_c[rows] = rng.multinomial(y_c[rows], cm / cm.sum())
        be_a[rows] = rng.multinomial(y_a[rows], am / am.sum())
    f = float
    return (n_c.astype(f), n_a.astype(f), y_c.astype(f), y_a.astype(f), be_c, be_a)


def _arm_stats(count: int, errors: int, bins_row: Array, k_lo: int) -> ArmStats:
    nonzero = np.flatnonzero(bins_row)
    bins = dict(zip((nonzero + k_lo).tolist(), bins_row[nonzero].tolist(), strict=True))
    return ArmStats(count=count, errors=errors, latency=sketch_from_bins(bins))


def simulate(
    sc: Scenario,
    policy: PromotionPolicy,
    canaries: int,
    seed: int,
    check: int,
    horizon: HorizonTest | None = None,
) -> Result:
    """Run ``canaries`` canaries of one scenario; replay ``check`` of them through judge().

    With ``horizon`` the gate is the judge's plus :class:`HorizonTest` (then ``check`` must
    be 0: the real judge has no such test to replay).
    """
    if horizon is not None and check:
        raise ValueError("a horizon test cannot be replayed through judge(): pass check=0")
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    k = canaries
    steps = np.array(policy.steps)
    max_runs = math.ceil(policy.max_canary_seconds / INTERVAL)
    a_cdf = sc.active_latency
    c_cdf = sc.canary_latency or a_cdf
    k_lo, edges = _grid([a_cdf, c_cdf])
    nb = len(edges)
    p_a, p_c = _probs(a_cdf, edges), _probs(c_cdf, edges)
    slow_by = sc.latency_burst
    p_a_slow = _probs(lambda x: a_cdf(x / slow_by), edges)
    p_c_slow = _probs(lambda x: c_cdf(x / slow_by), edges)
    # The real histogram's edges are exp(key * log(gamma)) computed one by one.
    edges = np.array([math.exp(key * _LOG_GAMMA) for key in range(k_lo, k_lo + nb)])

    r0 = policy.tolerated_error_ratio
    rw = policy.error_worse_ratio
    alts_up = r0 * np.exp(np.array(ROLLBACK_LOG_STEPS))
    alts_down = rw * np.exp(-math.log(rw) + np.array(GATE_LOG_RATIOS) * math.log(rw))
    thr_err = math.log(1.0 / policy.error_alpha)
    thr_gate = math.log(1.0 / (policy.beta - (horizon.beta if horizon else 0.0)))
    thr_lat = math.log(1.0 / policy.latency_alpha)
    alts_tail = np.exp(np.array(ROLLBACK_LOG_STEPS))
    per_look = sc.rpm * INTERVAL / 60.0
    bad_point = rng.random(k)  # the bad client's route point, per canary
    bad_bucket = np.minimum((bad_point * BUCKETS).astype(np.int64), BUCKETS - 1)

    st: dict[str, np.ndarray] = {
        "id": np.arange(k),
        "step": np.zeros(k, dtype=np.int64),
        "step_start": np.zeros(k, dtype=np.int64),
        "bad_bucket": bad_bucket,
        "n_a": np.zeros(k),
        "y_a": np.zeros(k),
        "n_c": np.zeros(k),
        "y_c": np.zeros(k),
        "sn_a": np.zeros(k),
        "sn_c": np.zeros(k),
        "up": np.zeros((k, len(alts_up))),
        "down": np.zeros((k, len(alts_down))),
        "up_max": np.zeros(k),
        "down_max": np.zeros(k),
        # The horizon test's sums: canary errors, errors (active's capped), errors and their
        # probabilities at the worse ratio (uncapped); its outcome.
        "hz_c": np.zeros(k),
        "hz_m": np.zeros(k),
        "hz_all": np.zeros(k),
        "hz_mean": np.zeros(k),
        "hz_ok": np.zeros(k, dtype=bool),
        "cap_c": np.zeros((k, BUCKETS)),
        "cap_a": np.zeros((k, BUCKETS)),
        "lat_a": np.zeros((k, nb)),
        "lat_c": np.zeros((k, nb)),
        **{
            f"{part}_{label}": (
                np.zeros((k, len(ROLLBACK_LOG_STEPS)))
                if part == "tail"
                else np.full(
                    k,
                    -1 if part in ("tka", "tkc") else 0,
                    dtype=np.int64 if part in ("tka", "tkc", "tused") else float,
                )
            )
            for label in ("p95", "p99")
            for part in ("tail", "tmax", "tused", "tka", "tkc")
        },
    }
    outcome = np.zeros(k, dtype=np.int8)
    minutes = np.full(k, np.nan)
    check_ids = list(range(min(check, k)))
    hist = _History(check_ids, k_lo, nb)
    server_totals = {i: {f"web-{s}": ServerTotals() for s in range(SERVERS)} for i in check_ids}
    res = Result(sc, outcome, minutes)
    bidx = np.arange(BUCKETS)[None, :]

    for run in range(1, max_runs + 1):
        n_alive = len(st["id"])
        if n_alive == 0:
            break
        ratio = steps[st["step"]]
        canary_members = bidx < np.ceil(ratio * BUCKETS - 1e-9)[:, None]
        active_members = bidx >= np.floor(ratio * BUCKETS + 1e-9)[:, None]
        # Traffic of this window: regular clients over the buckets, plus the bad client.
        burst = np.ones(n_alive)
        if sc.burst_every_hours > 0:
            hit = rng.random(n_alive) < INTERVAL / (sc.burst_every_hours * 3600)
            burst = np.where(hit, sc.burst_factor, 1.0)
        # With the reader's checks on, every object of the lying server fails the
        # latency-count check and is left out: what is judged is the other three servers.
        honest = 0.75 if sc.liar else 1.0
        regular = per_look * (1.0 - sc.bad_client_share) * honest
        n_c, n_a, y_c, y_a, be_c, be_a = _regular(
            rng, regular, ratio, sc, burst, canary_members, active_members
        )
        if sc.bad_client_share > 0:
            nb_req = rng.poisson(per_look * sc.bad_client_share, n_alive).astype(float)
            nb_err = rng.binomial(nb_req.astype(np.int64), sc.bad_client_error).astype(float)
            on_canary = st["bad_bucket"] < np.ceil(ratio * BUCKETS - 1e-9)
            rows = np.arange(n_alive)
            be_c[rows, st["bad_bucket"]] += np.where(on_canary, nb_err, 0.0)
            be_a[rows, st["bad_bucket"]] += np.where(on_canary, 0.0, nb_err)
            n_c += np.where(on_canary, nb_req, 0.0)
            n_a += np.where(on_canary, 0.0, nb_req)
            y_c += np.where(on_canary, nb_err, 0.0)
            y_a += np.where(on_canary, 0.0, nb_err)
        # Latencies of the successful requests, binned.
        if sc.latency_burst != 1.0:
            slow = (burst > 1.0)[:, None]
            pa_now = np.where(slow, p_a_slow[None, :], p_a[None, :])
            pc_now = np.where(slow, p_c_slow[None, :], p_c[None, :])
        else:
            pa_now, pc_now = p_a[None, :], p_c[None, :]
        lat_a = rng.poisson((n_a - y_a)[:, None] * pa_now).astype(float)
        lat_c = rng.poisson((n_c - y_c)[:, None] * pc_now).astype(float)
        if sc.liar and not sc.checks:
            # The lying server's quarter: real latencies, canary counts x100.
            l_c, l_a, l_yc, l_ya, l_bc, l_ba = _regular(
                rng, per_look * 0.25, ratio, sc, burst, canary_members, active_members
            )
            lat_a += rng.poisson((l_a - l_ya)[:, None] * p_a[None, :])
            lat_c += rng.poisson((l_c - l_yc)[:, None] * p_c[None, :])
            n_a, y_a, be_a = n_a + l_a, y_a + l_ya, be_a + l_ba
            n_c, y_c, be_c = n_c + 100 * l_c, y_c + 100 * l_yc, be_c + 100 * l_bc

        # --- the judge's error tests on this window -----------------------------------------
        n_w = n_a + n_c
        share = np.where(n_w > 0, n_c / np.maximum(n_w, 1), 0.0)
        y_c_rb = _caps_apply(st["cap_c"], be_c, canary_members)
        y_a_gate = _caps_apply(st["cap_a"], be_a, active_members)
        st["up"] += _cond_llr(y_c_rb, y_a, share, r0, alts_up)
        st["down"] += _cond_llr(y_c, y_a_gate, share, rw, alts_down)
        if horizon is not None:
            _horizon_window(st, horizon, policy, run, share, y_c, y_a, y_a_gate)
        for key, add in (("n_a", n_a), ("y_a", y_a), ("n_c", n_c), ("y_c", y_c)):
            st[key] += add
        st["sn_a"] += n_a
        st["sn_c"] += n_c
        st["up_max"] = np.maximum(
            st["up_max"], _log_mix(st["up"], [1 / len(alts_up)] * len(alts_up))
        )
        gate_now = _log_mix(st["down"], GATE_WEIGHTS)
        if policy.error_floor > 0:
            floor = _rate_upper(st["y_c"], st["n_c"], policy.error_floor)
            gate_now = _log_mix(
                np.stack([gate_now, floor], axis=-1), [1 - FLOOR_WEIGHT, FLOOR_WEIGHT]
            )
        st["down_max"] = np.maximum(st["down_max"], gate_now)
        # The stratified tail test: thresholds set from active's data before this window.
        tails: dict[str, tuple[Array, Array, Array, Array]] = {}
        for label in ("p95", "p99"):
            ka, kc = st[f"tka_{label}"], st[f"tkc_{label}"]
            on = ka >= 0
            cum_wa = np.cumsum(lat_a, axis=1)
            cum_wc = np.cumsum(lat_c, axis=1)
            tot_wa, tot_wc = cum_wa[:, -1], cum_wc[:, -1]
            rows = np.arange(n_alive)
            above_a = tot_wa - cum_wa[rows, np.clip(ka, 0, nb - 1)]
            above_c = np.where(kc < nb, tot_wc - cum_wc[rows, np.clip(kc, 0, nb - 1)], 0.0)
            n_wa = np.where(on, tot_wa, 0.0)
            n_wc = np.where(on, tot_wc, 0.0)
            above_a, above_c = np.where(on, above_a, 0.0), np.where(on, above_c, 0.0)
            share_t = np.where(n_wa + n_wc > 0, n_wc / np.maximum(n_wa + n_wc, 1), 0.0)
            st[f"tail_{label}"] += _cond_llr(above_c, above_a, share_t, 1.0, alts_tail)
            st[f"tmax_{label}"] = np.maximum(
                st[f"tmax_{label}"],
                _log_mix(st[f"tail_{label}"], [1 / len(alts_tail)] * len(alts_tail)),
            )
            st[f"tused_{label}"] += on & (n_wa + n_wc > 0)
            tails[label] = (above_c, above_a, n_wc, n_wa)
        st["lat_a"] += lat_a
        st["lat_c"] += lat_c
        cum_a_all = np.cumsum(st["lat_a"], axis=1)
        for label, tol in (("p95", policy.latency_p95_ratio), ("p99", policy.latency_p99_ratio)):
            q = int(label[1:]) / 100.0
            total = cum_a_all[:, -1]
            idx = (cum_a_all < (q * total)[:, None]).sum(axis=1)
            ready = total >= MIN_TAIL_SAMPLES
            st[f"tka_{label}"] = np.where(ready, idx, -1)
            step_up = math.ceil(math.log(tol) / math.log(_GAMMA) - 1e-9)
            st[f"tkc_{label}"] = np.where(ready, idx + step_up, -1)

        # --- latency tests --------------------------------------------------------------------
        cum_a = np.cumsum(st["lat_a"], axis=1)
        cum_c = np.cumsum(st["lat_c"], axis=1)
        tot_a, tot_c = cum_a[:, -1], cum_c[:, -1]
        checked = (tot_a >= policy.latency_min_samples) & (tot_c >= policy.latency_min_samples)
        lat_alarm = np.zeros(n_alive, dtype=bool)
        lat_hold = np.zeros(n_alive, dtype=bool)
        gate_lat = np.ones(n_alive, dtype=bool)
        for q, tol in ((0.95, policy.latency_p95_ratio), (0.99, policy.latency_p99_ratio)):
            alarm_q = np.zeros(n_alive, dtype=bool)
            label = f"p{round(q * 100)}"
            strat_ok = (st[f"tused_{label}"] == 0) | (st[f"tmax_{label}"] >= thr_lat)
            for level, target in ((policy.latency_alpha, "alarm"), (HOLD_ALPHA, "hold")):
                u = _upper(cum_a, edges, q, level * (1 - CANARY_ALPHA_SHARE))
                lo = _lower(cum_c, edges, q, level * CANARY_ALPHA_SHARE)
                hit = checked & ~np.isnan(u) & ~np.isnan(lo) & (lo > tol * u)
                hit &= lo > policy.latency_floor_ms
                if target == "alarm":
                    hit &= strat_ok
                    alarm_q = hit
                    lat_alarm |= hit
                else:
                    lat_hold |= hit & ~alarm_q
            u_c = _upper(cum_c, edges, q, policy.beta / 2)
            l_a = _lower(cum_a, edges, q, policy.beta / 2)
            passed = ~np.isnan(u_c) & (
                ((policy.latency_floor_ms > 0) & (u_c <= policy.latency_floor_ms))
                | (~np.isnan(l_a) & (u_c < policy.latency_worse_ratio * l_a))
            )
            gate_lat &= passed

        # --- the judge's rules ----------------------------------------------------------------
        err_alarm = st["up_max"] >= thr_err
        gate_ok = ((st["down_max"] >= thr_gate) | st["hz_ok"]) & gate_lat
        base = np.where(st["n_a"] > 0, st["y_a"] / np.maximum(st["n_a"], 1), 0.0)
        need_c = np.maximum(
            policy.min_requests_per_arm,
            _catch_minimum(base, ratio, r0, policy.catch_error_ratio, policy.error_alpha),
        )
        few = (st["sn_c"] < need_c) | (st["sn_a"] < policy.min_requests_per_arm)
        young = (run - st["step_start"]) * INTERVAL < policy.min_step_seconds
        promo_step = st["step"] >= policy.promotion_index
        timed_out = run * INTERVAL >= policy.max_canary_seconds
        seen = n_c > 0
        rollback = err_alarm | lat_alarm
        abort = ~rollback & timed_out
        ok = ~rollback & ~abort & seen & ~few & ~lat_hold & ~young
        advance = ok & ~promo_step
        promote = ok & promo_step & gate_ok
        action = np.full(n_alive, "hold", dtype=object)
        action[advance] = "advance"
        action[promote] = "promote"
        action[abort] = "abort"
        action[rollback] = "rollback"

        _replay(
            sc,
            policy,
            hist,
            server_totals,
            st,
            run,
            ratio,
            action,
            res,
            (n_a, y_a, n_c, y_c, be_a, be_c, lat_a, lat_c),
            tails,
        )

        ids = st["id"]
        done = rollback | abort | promote
        outcome[ids[rollback]] = 1
        outcome[ids[promote]] = 2
        outcome[ids[abort]] = 3
        minutes[ids[done]] = run * INTERVAL / 60
        st["step"] = np.where(advance, st["step"] + 1, st["step"])
        st["step_start"] = np.where(advance, run, st["step_start"])
        st["sn_a"] = np.where(advance, 0.0, st["sn_a"])
        st["sn_c"] = np.where(advance, 0.0, st["sn_c"])
        if done.any():
            keep = ~done
            st = {name: value[keep] for name, value in st.items()}
    res.seconds = time.perf_counter() - began
    return res


def _horizon_window(
    st: dict[str, np.ndarray],
    horizon: HorizonTest,
    policy: PromotionPolicy,
    run: int,
    share: Array,
    y_c: Array,
    y_a: Array,
    y_a_gate: Array,
) -> None:
    """Add one window to the horizon test's sums; at its one look, apply it."""
    ended = run * INTERVAL  # this window started INTERVAL earlier
    if ended - INTERVAL < horizon.data_seconds:
        rw = policy.error_worse_ratio
        use = (share > 0) & (share < 1) & (st["step"] >= policy.promotion_index)
        worse_p = rw * share / (rw * share + 1 - share)
        st["hz_c"] += np.where(use, y_c, 0.0)
        st["hz_m"] += np.where(use, y_c + y_a_gate, 0.0)
        st["hz_all"] += np.where(use, y_c + y_a, 0.0)
        st["hz_mean"] += np.where(use, (y_c + y_a) * worse_p, 0.0)
    if ended != horizon.decide_seconds:
        return
    passed = []
    sums = (st["hz_c"], st["hz_m"], st["hz_all"], st["hz_mean"])
    for c, m, total, mean in zip(*sums, strict=True):
        if total <= 0 or c > mean - 1:
            passed.append(False)
            continue
        passed.append(_binomial_lower_tail(c, math.floor(m), mean / total) <= horizon.beta)
    st["hz_ok"] = np.array(passed, dtype=bool)


def _replay(
    sc: Scenario,
    policy: PromotionPolicy,
    hist: _History,
    server_totals: dict[int, dict[str, ServerTotals]],
    st: dict[str, np.ndarray],
    run: int,
    ratio: Array,
    action: npt.NDArray[np.object_],
    res: Result,
    window: tuple[Array, ...],
    tails: dict[str, tuple[Array, Array, Array, Array]],
) -> None:
    """Give the checked canaries' data to the real judge() and compare its action."""
    n_a, y_a, n_c, y_c, be_a, be_c, _lat_a, _lat_c = window
    for row in np.flatnonzero(np.isin(st["id"], hist.ids)):
        cid = int(st["id"][row])
        start = _START + timedelta(seconds=(run - 1) * INTERVAL)
        hist.windows[cid].append(
            WindowCounts(
                active_requests=int(n_a[row]),
                active_errors=int(y_a[row]),
                canary_requests=int(n_c[row]),
                canary_errors=int(y_c[row]),
                ratio=float(ratio[row]),
                start=start,
                active_buckets={int(b): int(v) for b, v in enumerate(be_a[row]) if v},
                canary_buckets={int(b): int(v) for b, v in enumerate(be_c[row]) if v},
                tails={
                    label: tuple(int(part[row]) for part in parts)  # type: ignore[misc]
                    for label, parts in tails.items()
                    if st[f"tka_{label}"][row] >= 0 or parts[2][row] + parts[3][row] > 0
                },
            )
        )
        totals = server_totals[cid]
        honest = range(1, SERVERS) if sc.liar else range(SERVERS)
        if sc.liar:
            totals["web-0"].implausible_objects += 2  # latency count != request count
        for s in honest:
            t = totals[f"web-{s}"]
            t.active_requests += int(n_a[row]) // len(honest)
            t.canary_requests += int(n_c[row]) // len(honest)
            t.expected_canary += float(ratio[row]) * (int(n_a[row]) + int(n_c[row])) / len(honest)
            t.ratio_known_requests = t.active_requests + t.canary_requests
        reports = check_servers(totals) if sc.checks else []
        decision = judge(
            policy,
            step_index=int(st["step"][row]),
            ratio=float(ratio[row]),
            canary_started_at=_START,
            step_started_at=_START + timedelta(seconds=int(st["step_start"][row]) * INTERVAL),
            now=_START + timedelta(seconds=run * INTERVAL),
            active=_arm_stats(
                int(st["n_a"][row]), int(st["y_a"][row]), st["lat_a"][row], hist.k_lo
            ),
            canary=_arm_stats(
                int(st["n_c"][row]), int(st["y_c"][row]), st["lat_c"][row], hist.k_lo
            ),
            canary_seen_in_last_window=bool(n_c[row] > 0),
            windows=hist.windows[cid],
            route_buckets=BUCKETS,
            servers=reports,
        )
        res.check_looks += 1
        if decision.action != action[row]:
            res.check_disagree += 1
        if (
            decision.action in ("rollback", "promote", "abort")
            and "web-0" in decision.excluded_servers
        ):
            res.named += 1


# --- the table --------------------------------------------------------------------------------


def scenarios() -> list[Scenario]:
    """The issue's scenarios, in the table's order."""
    base = lognormal(50.0, 0.5)
    p95 = 50.0 * math.exp(0.5 * Z95)
    p99_only = tail_stretch(base, p95, 1.0 + math.log(1.5) / (0.5 * (Z99 - Z95)))
    heavy = pareto(20.0, 2.0)
    heavy_p95 = 20.0 * 20 ** (1 / 2.0)
    heavy_p99 = tail_stretch(heavy, heavy_p95, 1.0 + math.log(1.5) / math.log(100**0.5 / 20**0.5))
    out = [
        Scenario("A/A", rpm=20),
        Scenario("A/A", rpm=200),
        Scenario("A/A", rpm=2000),
        Scenario("A/A", rpm=100_000),
        Scenario("A/A, shared bursts", rpm=200, burst_every_hours=4),
        Scenario("A/A, shared bursts", rpm=100_000, burst_every_hours=4),
        Scenario(
            "A/A, latency x3 bursts",
            rpm=200,
            burst_every_hours=1,
            burst_factor=1.0001,
            latency_burst=3.0,
        ),
        Scenario(
            "A/A, latency x3 bursts",
            rpm=100_000,
            burst_every_hours=1,
            burst_factor=1.0001,
            latency_burst=3.0,
        ),
        Scenario("A/A, bad sticky client", rpm=200, bad_client_share=0.03),
        Scenario("A/A, bad sticky client", rpm=2000, bad_client_share=0.03),
        Scenario("margin's edge (1.05%)", rpm=2000, canary_error=0.0105),
    ]
    for rpm in (20, 200, 2000, 100_000):
        out.append(Scenario("errors 1.5x", rpm=rpm, canary_error=0.015, harmful=True))
    for rpm in (20, 200, 2000, 100_000):
        out.append(Scenario("p99 x1.5 only", rpm=rpm, canary_latency=p99_only, harmful=True))
    # Between the tolerance (1.2x) and materially worse (1.5x): either outcome is allowed.
    p99_13 = tail_stretch(base, p95, 1.0 + math.log(1.3) / (0.5 * (Z99 - Z95)))
    for rpm in (200, 2000):
        out.append(
            Scenario("p99 x1.3 (indifference)", rpm=rpm, canary_latency=p99_13, harmful=True)
        )
    out += [
        Scenario("errors 1% -> 3%", rpm=200, canary_error=0.03, harmful=True),
        Scenario(
            "heavy tail, p99 x1.5",
            rpm=2000,
            active_latency=heavy,
            canary_latency=heavy_p99,
            harmful=True,
        ),
        Scenario("errors 0 -> 0.1%", rpm=200, active_error=0.0, canary_error=0.001, harmful=True),
        Scenario("errors 0 -> 0.1%", rpm=2000, active_error=0.0, canary_error=0.001, harmful=True),
        Scenario("liar x100, 1% -> 3%", rpm=200, canary_error=0.03, liar=True, harmful=True),
        Scenario(
            "  same, reader checks off",
            rpm=200,
            canary_error=0.03,
            liar=True,
            checks=False,
            harmful=True,
        ),
    ]
    return out


def _median(values: Array) -> str:
    return "-" if len(values) == 0 else f"{np.median(values):.0f}"


def information_bound(
    policy: PromotionPolicy, rpm: float, error_rate: float, runs: int, seed: int
) -> tuple[float, float, float]:
    """What the errors alone allow: the share of healthy canaries promoted within 3 h by
    the most direct always-valid test there is, by the same test given the weight the gate's
    mixture gives equal rates, and by a single fixed-sample test at exactly 3 h.

    The sequential test is Wald's SPRT of ``r = 1`` (the canary equal to active) against
    ``r = error_worse_ratio`` on the conditional count (each error is the canary's with
    probability 1/2 or ``r_w / (r_w + 1)``), at ``beta``, with the canary at 50 % from the
    first minute: no ramp, no latency gate, no mixture over alternatives, no step minimums.
    Errors arrive at ``rpm * error_rate`` a minute. The fixed-sample test is the one-sided
    z-test of the log rate ratio on every error of 3 h; it may look once only.
    """
    rng = np.random.default_rng(seed)
    share, worse = 0.5, policy.error_worse_ratio
    equal_p, worse_p = share, worse * share / (worse * share + 1 - share)
    canary_step = math.log(equal_p / worse_p)
    active_step = math.log((1 - equal_p) / (1 - worse_p))
    boundary = math.log(1 / policy.beta)
    # The gate mixes alternatives; its weight on equal rates raises the boundary by its log.
    weighted = boundary - math.log(GATE_WEIGHTS[GATE_LOG_RATIOS.index(0.0)])
    per_minute = rpm * error_rate
    horizon = 180.0
    # Enough errors that a run still short of the boundary after them is past 3 h anyway.
    most = int(per_minute * horizon * 3) + 50
    level = np.zeros(runs)
    crossed = {b: np.full(runs, most + 1) for b in (boundary, weighted)}
    for k in range(1, most + 1):
        canary = rng.random(runs) < equal_p
        level += np.where(canary, canary_step, active_step)
        for b, at in crossed.items():
            at[(at > most) & (level >= b)] = k
    # The k-th error of a Poisson stream arrives after a Gamma(k) time.
    shares = [
        float(np.mean((at <= most) & (rng.gamma(at.astype(float), 1.0 / per_minute) <= horizon)))
        for at in crossed.values()
    ]
    errors = per_minute * horizon * share  # per arm
    z = math.log(worse) / math.sqrt(2.0 / errors)
    normal = NormalDist()
    fixed = normal.cdf(z - normal.inv_cdf(1 - policy.beta))
    return shares[0], shares[1], fixed


def spending_bound(
    policy: PromotionPolicy, rpm: float, error_rate: float, runs: int, seed: int
) -> tuple[float, float]:
    """What a test that plans its horizon allows: the share of healthy canaries promoted
    within 3 h, and of canaries at ``error_worse_ratio`` promoted at all, by a
    group-sequential test with a look every 5 minutes and ``beta`` spent over the 3 h
    (Lan-DeMets O'Brien-Fleming-type spending), same split and errors as
    :func:`information_bound`.

    Promotion is the test rejecting ``r = error_worse_ratio`` at a look: the z statistic
    of the canary's share of the errors against its share at that ratio falls below the
    look's boundary. The boundaries are calibrated by simulation at that ratio so that the
    chance of crossing by look k is the spending function at k / looks. Such a test is
    valid at its planned looks only, not at any time (not always-valid): past the horizon
    it has nothing left to spend.
    """
    rng = np.random.default_rng(seed)
    share, worse = 0.5, policy.error_worse_ratio
    looks = 36  # 3 h of 5-minute looks
    per_look = rpm * error_rate * INTERVAL / 60
    worse_p = worse * share / (worse * share + 1 - share)
    normal = NormalDist()
    edge = normal.inv_cdf(1 - policy.beta / 2)

    def z_paths(ratio: float) -> npt.NDArray[np.float64]:
        canary = rng.poisson(per_look * share * ratio, (runs, looks)).cumsum(axis=1)
        active = rng.poisson(per_look * (1 - share), (runs, looks)).cumsum(axis=1)
        total = np.maximum(canary + active, 1)
        z = (canary - total * worse_p) / np.sqrt(total * worse_p * (1 - worse_p))
        return np.asarray(z, dtype=np.float64)

    calibration = z_paths(worse)
    alive = np.ones(runs, dtype=bool)
    bounds = np.full(looks, -np.inf)
    for k in range(looks):
        spent = 2 - 2 * normal.cdf(edge / math.sqrt((k + 1) / looks))
        left = spent - (1 - alive.mean())
        if left > 0:
            bounds[k] = np.quantile(calibration[alive, k], left / alive.mean())
        alive &= calibration[:, k] > bounds[k]
    healthy = float(np.mean((z_paths(1.0) <= bounds).any(axis=1)))
    bad = float(np.mean((z_paths(worse) <= bounds).any(axis=1)))
    return healthy, bad


FAST_RAMP = {"steps": (0.05, 0.5, 1.0), "min_requests_per_arm": 100, "catch_error_ratio": 6.0}
"""A shorter ramp for :func:`horizon_bound`: 5% for about 20 minutes at 200 req/min, then 50%."""


def horizon_bound(
    policy: PromotionPolicy, canaries: int, seed: int
) -> list[tuple[str, float, float, float, float]]:
    """What a one-time test at a fixed horizon (:class:`HorizonTest`, 80% of ``beta``) adds
    to the judge at 200 req/min, per variant: the share of healthy canaries promoted within
    3 h without it and with it (same seed), their median minutes to promotion with it, and
    the share of 1.5x error canaries promoted at all with it.

    Variants: the given policy with the horizon's windows up to 2 h 45 min and its look at
    3 h (the reader closes a window 15 minutes after it starts); :data:`FAST_RAMP`, same
    horizon; and :data:`FAST_RAMP` with windows up to 3 h at the 3 h look, which is valid
    only if that look's outcome is recorded once and never recomputed from later objects.
    """
    by_name = {(sc.name, sc.rpm): sc for sc in scenarios()}
    healthy, bad = by_name[("A/A", 200.0)], by_name[("errors 1.5x", 200.0)]
    fast = policy.model_copy(update=FAST_RAMP)
    share = 0.8 * policy.beta
    variants = [
        ("default steps, windows to 2 h 45 min", policy, HorizonTest(share, 9900, 10800)),
        ("steps 5 -> 50%, windows to 2 h 45 min", fast, HorizonTest(share, 9900, 10800)),
        ("steps 5 -> 50%, windows to 3 h, recorded once", fast, HorizonTest(share, 10800, 10800)),
    ]

    def within(res: Result) -> float:
        return float(np.mean((res.outcome == 2) & (res.minutes <= 180)))

    out = []
    for label, pol, test in variants:
        plain = simulate(healthy, pol, canaries, seed, 0)
        good = simulate(healthy, pol, canaries, seed, 0, test)
        worse = simulate(bad, pol, canaries, seed + 1, 0, test)
        median = float(np.median(good.minutes[good.outcome == 2]))
        out.append((label, within(plain), within(good), median, float(np.mean(worse.outcome == 2))))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--canaries", type=int, default=1000, help="canaries per scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--check", type=int, default=2, help="canaries replayed through judge()")
    parser.add_argument("--only", default=None, help="run scenarios whose name contains this")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="policy setting"
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--rpm", type=float, default=None, help="only scenarios at this rate")
    args = parser.parse_args(argv)
    policy = apply_settings(PromotionPolicy(), args.set)
    print(
        f"policy: steps {list(policy.steps)} "
        f"(promotion from {policy.steps[policy.promotion_index]}),"
        f" error margin {policy.error_margin.value:g} relative, materially worse: errors "
        f"{policy.error_worse_ratio:g}x (floor {policy.error_floor:.2%}), latency "
        f"{policy.latency_worse_ratio:g}x; alpha {policy.alpha:g}, beta {policy.beta:g}; "
        f"a look every {INTERVAL // 60} min, time limit {policy.max_canary_seconds / 3600:g} h; "
        f"{args.canaries} canaries per scenario"
    )
    header = (
        f"{'scenario':<28} {'req/min':>8} {'rolled back':>11} {'promoted':>9} "
        f"{'inconcl.':>9} {'median min':>10} {'<= 3 h':>7} {'named':>6} {'judge()':>9}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for i, sc in enumerate(scenarios()):
        if (args.only and args.only not in sc.name) or (args.rpm and sc.rpm != args.rpm):
            continue
        res = simulate(sc, policy, args.canaries, args.seed + 17 * i, args.check)
        k = args.canaries
        rolled, promoted, inconclusive = (int((res.outcome == v).sum()) for v in (1, 2, 3))
        # The median time of the outcome that matters: rollback for a regression (and for
        # a healthy canary, promotion).
        key = 1 if sc.harmful else 2
        times = res.minutes[res.outcome == key]
        within = int(((res.outcome == 2) & (res.minutes <= 180)).sum())
        if args.verbose and not sc.harmful and len(times):
            print("   promotion minutes p50/p90/p95:", np.percentile(times, [50, 90, 95]))
        named = f"{res.named}" if sc.liar and sc.checks else ""
        print(
            f"{sc.name:<28} {sc.rpm:>8,.0f} {rolled / k:>11.1%} {promoted / k:>9.1%} "
            f"{inconclusive / k:>9.1%} {_median(times):>10} "
            f"{'' if sc.harmful else f'{within / k:.1%}':>7} {named:>6} "
            f"{res.check_disagree:>4}/{res.check_looks:<4}"
        )
        sys.stdout.flush()
    print(
        "median min: of rollbacks for regressions, of promotions for healthy canaries; "
        "<= 3 h: promoted within 3 hours; named: decisions naming the lying server; "
        "judge(): looks where the real judge decided otherwise / looks replayed"
    )
    sequential, weighted, fixed = information_bound(policy, 200.0, 0.01, 20_000, args.seed)
    print(
        "information bound, healthy canary at 200 req/min and 1% errors, promoted within 3 h: "
        f"{sequential:.1%} by an SPRT of equal rates against {policy.error_worse_ratio:g}x at "
        f"beta {policy.beta:g} with a 50% split from the first minute (errors only, 20,000 "
        f"runs), {weighted:.1%} with the gate's weight on equal rates; {fixed:.1%} by a "
        "fixed-sample test allowed one look, at 3 h"
    )
    healthy, bad = spending_bound(policy, 200.0, 0.01, 100_000, args.seed)
    print(
        f"a test that plans its horizon, same canary: {healthy:.1%} promoted within 3 h (and "
        f"{bad:.2%} of {policy.error_worse_ratio:g}x canaries promoted) by a group-sequential "
        f"test with a look every 5 min and beta {policy.beta:g} spent over the 3 h "
        "(O'Brien-Fleming-type; 100,000 runs): valid at its planned looks, not at any time"
    )
    for label, plain, with_test, median, bad_promoted in horizon_bound(
        policy, args.canaries, args.seed
    ):
        print(
            f"a one-time test at a fixed horizon added to the gate (beta {0.8 * policy.beta:g} of "
            f"{policy.beta:g}, look at 3 h), {label}: healthy at 200 req/min promoted within "
            f"3 h {plain:.1%} without it, {with_test:.1%} with it (median {median:.0f} min); "
            f"1.5x errors {bad_promoted:.1%} promoted"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
