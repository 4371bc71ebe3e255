r"""Window-stratified exact conditional tests of the error rate: rollback and promotion gate.

Why stratify
------------
The canary's traffic share changes at every step, and error rates change over time for
reasons shared by both arms (a burst of bad inputs, a slow dependency). On cumulative
counts such a burst lands on the canary in proportion to the share *at the time*, which is
above its cumulative share, so a healthy canary looks worse. Comparing the arms *within*
each metrics window, where both served side by side at one ratio, cancels anything the
window's requests share.

The conditional count test
--------------------------
In window :math:`s` active served :math:`n_{a,s}` requests and the canary :math:`n_{c,s}`
(canary share :math:`f_s`), with :math:`y_{a,s}, y_{c,s}` errors. If errors arrive as
Poisson processes with rates :math:`\lambda_{a,s} n_{a,s}` and :math:`\lambda_{c,s} n_{c,s}`
and the rate ratio is :math:`r = \lambda_{c,s}/\lambda_{a,s}` (whatever the window's common
level), then given the window's :math:`m_s = y_{a,s} + y_{c,s}` errors the canary's count is
binomial with

.. math::
    \pi_s(r) = \frac{r f_s}{r f_s + 1 - f_s}.

This is the conditioning of Lindon and Malek, "Anytime-valid inference for multinomial count
data", NeurIPS 2022: the nuisance (the common rate, and how it moves) drops out and what is
left is an exact test about one parameter, with no normal approximation and no minimum
count. Each error is one Bernoulli trial "is it the canary's?" with success probability
:math:`\pi_s(r)`, and for a fixed alternative :math:`r_1` the likelihood ratio against
:math:`r_0` over all windows so far is

.. math::
    \Lambda(r_1) = \prod_s \Big(\frac{\pi_s(r_1)}{\pi_s(r_0)}\Big)^{y_{c,s}}
                  \Big(\frac{1-\pi_s(r_1)}{1-\pi_s(r_0)}\Big)^{y_{a,s}}.

*Rollback* tests :math:`H_0: r \le r_0` with :math:`r_0 = 1 +` margin against a mixture of
alternatives spread on the ratio scale (:data:`ROLLBACK_LOG_STEPS`: :math:`r_1 = r_0
e^{d}`); the *promotion gate* tests :math:`H_0': r \ge r_w` (``error_worse_ratio``: the
canary is materially worse) against a few alternatives below :math:`r_w`
(:data:`GATE_LOG_RATIOS`). For :math:`r_1 > r_0` each factor has conditional mean
:math:`\le 1` under any :math:`r \le r_0` (it is linear in the true :math:`\pi_s` and equals 1
at :math:`\pi_s(r_0)`), and the mirror holds for the gate, so each :math:`\Lambda` and their
mixture are nonnegative supermartingales over the sequence of errors, with the request
counts (which depend on routing and on earlier decisions, not on later errors) as given.
Ville's inequality bounds the probability that the mixture *ever* reaches :math:`1/\alpha`
by :math:`\alpha`; the running maximum is therefore as valid as the last value, and the
recorded p-value is :math:`1/\max_t \Lambda_t`.

Errors are Bernoulli per request, not Poisson: conditionally on :math:`m_s` the canary count
is then Fisher's noncentral hypergeometric, slightly *less* variable than the binomial, with
odds ratio :math:`r(1-p_a)/(1-rp_a)`, a hair above :math:`r`; at 1% errors and
:math:`r_0=1.05` that is 1.0505. The simulation measures the test at the margin's edge.

Clustered errors: route buckets
-------------------------------
Sticky routing sends all of one client's requests to one arm, so one client with many
failing requests (bad inputs, a broken integration) is many correlated errors on that arm,
which no per-request test tolerates. The recorder counts errors per route bucket (the
request's route point in ``[0, 1)`` cut into :data:`~modelshelf.metrics.ROUTE_BUCKETS`
ranges); a client lives in one bucket. Before the test sees a window, each bucket's
cumulative count on the tested side (the canary's for the rollback test, active's for the
gate) is capped at :data:`CAP_FACTOR` times the trimmed mean of that side's buckets plus
:data:`CAP_SLACK`: no single group of clients can carry more than a few typical buckets'
worth of evidence. Lowering the canary's count can only lower the rollback statistic (its
factors grow with :math:`y_c`), and lowering active's can only lower the gate's, *for any
rule that picks how much to remove*, so the capped tests keep their level under independence
and become robust to a few heavy clients. What they give up: a regression that shows only on
one client's requests is not proven by the error test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CAP_FACTOR",
    "CAP_SLACK",
    "FLOOR_WEIGHT",
    "GATE_LOG_RATIOS",
    "GATE_WEIGHTS",
    "ROLLBACK_LOG_STEPS",
    "BucketCaps",
    "CountEvidence",
    "WindowCounts",
    "catch_minimum",
    "conditional_log_lr",
    "count_tests",
    "log_mix",
    "rate_upper_log_e",
    "tail_log_e",
]

ROLLBACK_LOG_STEPS = tuple(0.1 * 1.6**j for j in range(10))
"""Rollback alternatives: :math:`\\log(r_1/r_0)` from 0.1 (10% worse) to 6.9 (1000x)."""
GATE_LOG_RATIOS = (-0.5, 0.0, 0.5)
"""Gate alternatives as fractions of :math:`\\log r_w`: 1/sqrt(r_w), 1 (equal), sqrt(r_w)."""
GATE_WEIGHTS = (0.25, 0.5, 0.25)
CAP_FACTOR = 4.0
"""A route bucket's errors count up to this many times the side's trimmed mean bucket."""
CAP_SLACK = 2.0
"""Plus this many errors (room for Poisson noise while counts are small)."""
FLOOR_WEIGHT = 0.1
"""Weight of the absolute-floor e-process in the gate's mixture (the ratio gate has 0.9)."""
_TRIM = 0.1  # share of the largest buckets left out of the trimmed mean (at least one)


def conditional_log_lr(
    canary_errors: float,
    active_errors: float,
    canary_share: float,
    null_ratio: float,
    alt_ratio: float,
) -> float:
    """Log likelihood ratio of one window's errors, alternative ``alt_ratio`` vs ``null_ratio``.

    ``canary_share`` is the window's canary share of requests; a window where one arm had no
    requests carries no evidence (0).
    """
    if not 0.0 < canary_share < 1.0:
        return 0.0
    rest = 1.0 - canary_share
    g0 = math.log(null_ratio * canary_share + rest)
    g1 = math.log(alt_ratio * canary_share + rest)
    return canary_errors * (math.log(alt_ratio / null_ratio) - g1 + g0) + active_errors * (g0 - g1)


def log_mix(log_values: Sequence[float], weights: Sequence[float]) -> float:
    """``log(sum(w * exp(v)))`` without overflow."""
    top = max(log_values)
    return top + math.log(
        sum(w * math.exp(v - top) for v, w in zip(log_values, weights, strict=True))
    )


def rate_upper_log_e(errors: float, requests: float, level: float) -> float:
    """Log e-value against "error rate >= ``level``" (for an absolute floor on the canary).

    A mixture of Bernoulli likelihood ratios at rates ``level * exp(-d)``, ``d`` in
    ``{0.5, 1, 2, 4}``: a nonnegative supermartingale under any rate ``>= level``.
    """
    if requests <= 0 or not 0.0 < level < 1.0:
        return 0.0
    ok = requests - errors
    terms = []
    for d in (0.5, 1.0, 2.0, 4.0):
        alt = level * math.exp(-d)
        terms.append(errors * math.log(alt / level) + ok * math.log((1 - alt) / (1 - level)))
    return log_mix(terms, [0.25] * 4)


@dataclass(frozen=True)
class WindowCounts:
    """Both arms' counts in one metrics window (one stratum).

    ``*_buckets`` hold errors per route bucket for keyed requests (absent for keyless
    traffic and for servers that do not record buckets); ``ratio`` is the canary share the
    servers routed with, which tells which buckets belong to which arm.
    """

    active_requests: int
    active_errors: int
    canary_requests: int
    canary_errors: int
    ratio: float | None = None
    start: datetime | None = None
    active_buckets: Mapping[int, int] = field(default_factory=dict)
    canary_buckets: Mapping[int, int] = field(default_factory=dict)
    tails: Mapping[str, tuple[int, int, int, int]] = field(default_factory=dict)
    """Per latency quantile (``"p95"``, ``"p99"``): canary latencies above the window's
    threshold, active latencies above active's estimated quantile, and both arms'
    latency counts (see :func:`tail_log_e`)."""


def tail_log_e(windows: Iterable[WindowCounts], label: str) -> tuple[float, float, int]:
    """The stratified latency tail test: (last log e-value, running maximum, windows used).

    For a quantile ``q`` and tolerance ``t``, each window counts the canary's latencies above
    ``t`` times active's estimated ``q`` quantile and active's above that estimate, the
    estimate taken from active's data *before* the window (so it is fixed before the
    window's latencies are seen). If the canary's latency is at most ``t`` times active's in
    distribution (the tail form of "within tolerance"), a canary latency exceeds its
    threshold no more often than an active one exceeds its own, so given the window's tail
    events the canary's count is at most binomial with ``pi_s(1)``: the conditional count
    test of the error rate, with rate ratio 1 as the null and the same ratio-scale
    alternatives. A latency shift shared by both arms moves both counts and cancels within
    the window, where the cumulative bounds would read it as a difference.
    """
    alts = [math.exp(d) for d in ROLLBACK_LOG_STEPS]
    weights = [1.0 / len(alts)] * len(alts)
    log_lr = [0.0] * len(alts)
    top = 0.0
    used = 0
    for w in windows:
        counts = w.tails.get(label)
        if counts is None:
            continue
        canary_tail, active_tail, canary_n, active_n = counts
        if canary_n + active_n <= 0:
            continue
        used += 1
        share = canary_n / (canary_n + active_n)
        for j, alt in enumerate(alts):
            log_lr[j] += conditional_log_lr(canary_tail, active_tail, share, 1.0, alt)
        top = max(top, log_mix(log_lr, weights))
    return (log_mix(log_lr, weights) if used else 0.0), top, used


class BucketCaps:
    """Running per-bucket caps for one side (see the module docstring)."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self.capped: dict[int, float] = {}
        self.removed = 0.0
        self.heaviest: int | None = None

    def members(self, ratio: float, side: str) -> range:
        """Buckets routed to ``side`` at ``ratio`` (a bucket straddling it is in both)."""
        if side == "canary":
            return range(0, min(self.buckets, math.ceil(ratio * self.buckets - 1e-9)))
        return range(min(self.buckets, math.floor(ratio * self.buckets + 1e-9)), self.buckets)

    def apply(self, errors: Mapping[int, int], ratio: float, side: str) -> float:
        """Add one window's bucket errors; return how many of them count."""
        if not errors:
            return 0.0
        members = self.members(ratio, side)
        values = sorted((self.capped.get(b, 0.0) for b in members), reverse=True)
        drop = max(1, math.ceil(_TRIM * len(values))) if len(values) > 1 else 0
        kept = values[drop:]
        mean = sum(kept) / len(kept) if kept else 0.0
        cap = CAP_FACTOR * mean + CAP_SLACK
        counted = 0.0
        for bucket, count in errors.items():
            before = self.capped.get(bucket, 0.0)
            after = min(before + count, max(cap, before))
            self.capped[bucket] = after
            counted += after - before
            if after - before < count:
                self.removed += count - (after - before)
                self.heaviest = bucket
        return counted


class CountEvidence(BaseModel):
    """The stratified error tests at one look, with every number that went into them."""

    model_config = ConfigDict(frozen=True)

    windows: int
    null_ratio: float
    worse_ratio: float
    ratio_estimate: float | None
    rollback_log_e: float
    rollback_max_log_e: float
    gate_log_e: float
    gate_max_log_e: float
    floor_log_e: float
    capped_canary_errors: float
    capped_active_errors: float
    heaviest_canary_bucket: int | None
    heaviest_active_bucket: int | None
    bucketed: bool


def count_tests(
    windows: Iterable[WindowCounts],
    *,
    null_ratio: float,
    worse_ratio: float,
    error_floor: float,
    buckets: int,
) -> CountEvidence:
    """Run the rollback and gate e-processes over the windows in time order.

    Args:
        windows: The strata, oldest first.
        null_ratio: The tolerated rate ratio :math:`r_0` (1 + relative margin).
        worse_ratio: The materially-worse ratio :math:`r_w` the gate must exclude.
        error_floor: An absolute error rate below which the canary is never materially
            worse (0 disables); the gate also passes when the canary's rate is shown below it.
        buckets: Route buckets the recorder used (for the caps).
    """
    alts_up = [null_ratio * math.exp(d) for d in ROLLBACK_LOG_STEPS]
    up_w = [1.0 / len(alts_up)] * len(alts_up)
    log_w = math.log(worse_ratio)
    alts_down = [worse_ratio * math.exp(-log_w + k * log_w) for k in GATE_LOG_RATIOS]
    up = [0.0] * len(alts_up)
    down = [0.0] * len(alts_down)
    up_max = down_max = 0.0
    canary_caps, active_caps = BucketCaps(buckets), BucketCaps(buckets)
    total = {"n_a": 0, "y_a": 0, "n_c": 0, "y_c": 0}
    capped_c = capped_a = 0.0
    count = 0
    bucketed = False
    for w in windows:
        count += 1
        total["n_a"] += w.active_requests
        total["y_a"] += w.active_errors
        total["n_c"] += w.canary_requests
        total["y_c"] += w.canary_errors
        n = w.active_requests + w.canary_requests
        if n <= 0:
            continue
        share = w.canary_requests / n
        ratio = share if w.ratio is None else w.ratio
        y_c, y_a = float(w.canary_errors), float(w.active_errors)
        if w.canary_buckets or w.active_buckets:
            bucketed = True
        # Each side is capped only in the test where lowering it is conservative.
        y_c_rb = (
            y_c
            - sum(w.canary_buckets.values())
            + canary_caps.apply(w.canary_buckets, ratio, "canary")
        )
        y_a_gate = (
            y_a
            - sum(w.active_buckets.values())
            + active_caps.apply(w.active_buckets, ratio, "active")
        )
        capped_c += y_c_rb
        capped_a += y_a_gate
        for j, alt in enumerate(alts_up):
            up[j] += conditional_log_lr(y_c_rb, y_a, share, null_ratio, alt)
        for j, alt in enumerate(alts_down):
            down[j] += conditional_log_lr(y_c, y_a_gate, share, worse_ratio, alt)
        up_max = max(up_max, log_mix(up, up_w))
        down_max = max(down_max, _gate_mix(down, total, error_floor))
    floor_log_e = (
        rate_upper_log_e(total["y_c"], total["n_c"], error_floor) if error_floor > 0 else 0.0
    )
    n_a, y_a_t, n_c, y_c_t = total["n_a"], total["y_a"], total["n_c"], total["y_c"]
    estimate = None
    if n_a and n_c and y_a_t:
        estimate = (y_c_t / n_c) / (y_a_t / n_a)
    return CountEvidence(
        windows=count,
        null_ratio=null_ratio,
        worse_ratio=worse_ratio,
        ratio_estimate=estimate,
        rollback_log_e=log_mix(up, up_w) if count else 0.0,
        rollback_max_log_e=up_max,
        gate_log_e=_gate_mix(down, total, error_floor) if count else 0.0,
        gate_max_log_e=down_max,
        floor_log_e=floor_log_e,
        capped_canary_errors=capped_c,
        capped_active_errors=capped_a,
        heaviest_canary_bucket=canary_caps.heaviest,
        heaviest_active_bucket=active_caps.heaviest,
        bucketed=bucketed,
    )


def _gate_mix(down: list[float], total: dict[str, int], error_floor: float) -> float:
    """The gate's e-value: the ratio gate, mixed with the absolute floor when there is one.

    Both are nonnegative supermartingales when the canary is materially worse (its rate at
    least ``error_floor`` *and* at least ``worse_ratio`` times active's), so their weighted
    mean is one too: one threshold, no union bound.
    """
    ratio_gate = log_mix(down, GATE_WEIGHTS)
    if error_floor <= 0.0:
        return ratio_gate
    floor = rate_upper_log_e(total["y_c"], total["n_c"], error_floor)
    return log_mix([ratio_gate, floor], [1.0 - FLOOR_WEIGHT, FLOOR_WEIGHT])


def catch_minimum(
    *, base_rate: float, share: float, null_ratio: float, catch_ratio: float, alpha: float
) -> int:
    """Canary requests a step needs before it may advance, from the regression to catch.

    The number of canary requests at which a canary with ``catch_ratio`` times the base
    error rate would, on average, have given the rollback test its threshold
    ``log(1/alpha)`` of evidence at this ``share`` (the expected log likelihood ratio of
    one window's errors, per canary request). Without a base rate (no errors yet) or at a
    share without a control the minimum is 0: there is nothing to derive it from, and the
    request floor of the policy applies alone.
    """
    if base_rate <= 0.0 or not 0.0 < share < 1.0:
        return 0
    rest = 1.0 - share
    # Expected errors per canary request under the catch regression, on each arm.
    y_c = catch_ratio * base_rate
    y_a = base_rate * rest / share
    gain = conditional_log_lr(y_c, y_a, share, null_ratio, catch_ratio)
    if gain <= 0.0:
        return 0
    return math.ceil(math.log(1.0 / alpha) / gain)
