r"""Sequential tests that stay valid although the promoter looks at the data at every run.

The judge's error-rate tests for relative margins (rollback and promotion gate) are the
window-stratified exact conditional tests of :mod:`modelshelf_promoter._counts`; the
normal-approximation mSPRT below serves absolute margins, on cumulative counts. The latency
bounds below serve all three latency rules: rollback (canary's lower bound above the
tolerance times active's upper bound, the canary's bound getting 3/4 of the level), the
promotion gate (:func:`latency_gate`: the mirror image, at ``beta``) and the hold (the
rollback rule at a relaxed level).

The promoter re-reads the cumulative counts since the canary started every few minutes and
rolls back the first time a test alarms. A fixed-sample test re-run at every look would
alarm far more often than its level says; the tests below bound the probability of *ever*
alarming on a canary that is within tolerance, over all looks together.

Error rate: one-sided mixture SPRT
----------------------------------
Let :math:`p_a, p_c` be the error rates of active and canary. With a relative margin
:math:`m` the null hypothesis is :math:`H_0: p_c \le (1+m)\,p_a`; with an absolute margin
:math:`\delta` it is :math:`H_0: p_c \le p_a + \delta`. Both read :math:`\theta \le 0` for
the contrast

.. math::
    \theta = p_c - (1+m)\,p_a \quad\text{or}\quad \theta = p_c - p_a - \delta .

From the cumulative counts (:math:`n` requests and :math:`y` errors per arm),
:math:`\hat\theta` is the same contrast of the observed rates and :math:`V` its variance,
:math:`V = p_c(1-p_c)/n_c + k^2 p_a(1-p_a)/n_a` (:math:`k = 1+m` or 1), evaluated at the
observed rates, or at the rates fitted on the boundary of :math:`H_0` (the pooled rate
shifted by the margin) when that is larger. The observed-rate form matters: with rare
errors and a small canary share the canary's count is right-skewed, and the excess errors
that would cause a false alarm also raise its observed variance. With the pooled variance
alone the false-alarm rate measured 5.8% at a nominal 5% (1% errors, 5% canary share, 288
looks, 1,000 runs); with the form used here, 0.8% (and 2.1% at a 50% share, 1.0% with 10%
errors, 0% with 0.1% errors, all on the boundary of a zero margin).

The statistic is the normal-mixture likelihood ratio of the mixture sequential probability
ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous
Monitoring of A/B Tests", Operations Research 70(3), 2022 (arXiv:1512.04922), Section 4,
with the mixing distribution restricted to regressions (a half-normal of scale
:math:`\tau` on :math:`\theta \ge 0`) so that the test is one-sided:

.. math::
    \Lambda = 2\sqrt{\frac{V}{V+\tau^2}}\;
              \exp\!\Big(\frac{\tau^2\hat\theta^2}{2V(V+\tau^2)}\Big)\;
              \Phi\!\Big(\frac{\tau\hat\theta}{\sqrt{V(V+\tau^2)}}\Big).

(Johari et al.'s two-sided statistic is the same without the factor :math:`2\Phi(\cdot)`.)
A single scale :math:`\tau` suits regressions of about that size; a catastrophic canary
(say 50% errors) would wait for hundreds of requests, because the mixture puts almost no
weight on such effects. The test therefore mixes two scales,
:math:`\Lambda = 0.8\,\Lambda_{\tau} + 0.2\,\Lambda_{10\tau}` (a mixture of mixtures
is still a mixture), which costs :math:`\log(1/0.8)` of evidence on small regressions and
catches a catastrophic one at the first look. The test alarms the first time
:math:`\Lambda \ge 1/\alpha`; :math:`\Lambda` is an e-value and
:math:`\min(1, 1/\Lambda)` an always-valid p-value.

*Why it is valid.* In information time :math:`I = 1/V`, :math:`S = \hat\theta I` is a
Brownian motion with drift :math:`\theta` when the observations are Gaussian with known
variance, whatever the traffic split does over time (each arm's running mean over nested
samples has :math:`\mathrm{Cov}(\bar y_j, \bar y_k) = \mathrm{Var}(\bar y_k)` for
:math:`j \le k`). For every :math:`\mu \ge 0`, :math:`\exp(\mu S - \mu^2 I/2)` is then a
nonnegative supermartingale under any :math:`\theta \le 0`; :math:`\Lambda` is its mixture
over :math:`\mu \sim` half-normal(:math:`\tau`) (integrating gives the formula above), so
it is one too, and Ville's inequality gives
:math:`P_{H_0}(\exists n: \Lambda_n \ge 1/\alpha) \le \alpha` for the whole composite null.

*What that means here.* Error counts are binomial, not Gaussian, and :math:`V` is
estimated: the guarantee is the mSPRT's asymptotic one (normal approximation). To keep the
approximation out of its worst regime the test does not alarm before the canary has
:data:`MIN_ERRORS_TO_ALARM` errors. The simulation (``benchmarks/promoter_sim.py``) and the
tests measure the false-alarm rate under repeated looks, including on the boundary of
:math:`H_0` with a zero margin; both stay below :math:`\alpha`. The variance also assumes
independent requests: errors that come in bursts (one bad client, one bad host) are more
variable than binomial and make the test alarm more readily.

Latency: time-uniform confidence bounds on quantiles
----------------------------------------------------
For a quantile :math:`q` (0.95, 0.99) and tolerance :math:`r` (e.g. 1.2) the null is
:math:`\xi_c \le r\,\xi_a` (:math:`\xi` the true latency quantile of each arm). The test
builds an always-valid lower confidence bound :math:`L` for the canary's quantile and an
upper bound :math:`U` for active's, each at level :math:`\alpha/2`, and alarms when
:math:`L > r\,U`. This is the quantile confidence sequence of Howard and Ramdas,
"Sequential estimation of quantiles with applications to A/B-testing and best-arm
identification", Bernoulli 28(3), 2022, built from a mixture of Bernoulli likelihood ratios:

* For a value :math:`x`, if :math:`\xi_c \le x` then each canary latency exceeds :math:`x`
  with probability at most :math:`1-q`, so for the count :math:`E` of exceedances among
  :math:`n` values and any :math:`\pi > 1-q`,
  :math:`(\pi/(1-q))^E\,((1-\pi)/q)^{n-E}` is a nonnegative supermartingale; the test mixes
  it over a fixed grid of :math:`\pi` (:data:`_LOGIT_STEPS`) and rejects
  ":math:`\xi_c \le x`" when the mixture reaches :math:`2/\alpha`. :math:`L` is the largest
  rejected :math:`x`. The e-value falls as :math:`x` grows, so "ever :math:`L \ge \xi_c`"
  implies "ever reject at :math:`x = \xi_c`", which has probability :math:`\le \alpha/2`.
* :math:`U` is the mirror image with the count of active latencies below :math:`y`.

The counts are read from the DDSketch bins, which are exact: bin :math:`k` counts the
values in :math:`(\gamma^{k-1}, \gamma^k]`. Candidate values are bin edges, where the
counts have no sketch error at all; restricting to them only makes the bounds wider.

*What the latency rule guarantees:* if latencies are independent draws from a fixed
distribution per arm, then the probability that the rule **ever** rolls back a canary
whose true p95 and p99 are within the tolerated ratios of active's is at most the
latency share of alpha (:math:`\alpha/4` per quantile), at any number of looks. It does
not protect against drift: a latency change over time that hits the arms at different
traffic shares (the canary's data come mostly from later steps) is read as a difference
between versions. The same holds for the error rate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from ddsketch.ddsketch import BaseDDSketch
from pydantic import BaseModel, ConfigDict

from modelshelf.metrics import sketch_bins, sketch_gamma

__all__ = [
    "MIN_ERRORS_TO_ALARM",
    "ErrorRateTest",
    "LatencyGate",
    "LatencyHistogram",
    "LatencyTest",
    "bernoulli_log_e_value",
    "error_rate_test",
    "latency_gate",
    "latency_test",
    "mixture_e_value",
    "mixture_log_e_value",
    "quantile_lower_bound",
    "quantile_upper_bound",
    "two_scale_log_e_value",
]

MIN_ERRORS_TO_ALARM = 5
"""The error test never alarms before the canary has this many errors (see above)."""

# The error test's second mixing scale (a multiple of the policy's) and its weight.
_WIDE_SCALE = 10.0
_WIDE_WEIGHT = 0.2
# Alternatives of the Bernoulli mixture, as steps on the log-odds scale above the null.
_LOGIT_STEPS = tuple(0.2 * 1.3**j for j in range(11))
_LOG_MAX = 700.0  # exp() overflows a little above 709


def _norm_logcdf(x: float) -> float:
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    # Asymptotic expansion; exact enough where Phi underflows.
    return -0.5 * x * x - math.log(-x) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / (x * x))


def mixture_log_e_value(theta_hat: float, variance: float, mixture_sd: float) -> float:
    """Log of the one-sided normal-mixture likelihood ratio (see the module docstring)."""
    if not variance > 0.0:
        return 0.0
    tau2 = mixture_sd * mixture_sd
    total = variance + tau2
    z = mixture_sd * theta_hat / math.sqrt(variance * total)
    return math.log(2.0) + 0.5 * math.log(variance / total) + 0.5 * z * z + _norm_logcdf(z)


def two_scale_log_e_value(theta_hat: float, variance: float, mixture_sd: float) -> float:
    """Log of ``0.8 * Lambda(sd) + 0.2 * Lambda(10 * sd)``: the error test's statistic."""
    narrow = math.log1p(-_WIDE_WEIGHT) + mixture_log_e_value(theta_hat, variance, mixture_sd)
    wide = math.log(_WIDE_WEIGHT) + mixture_log_e_value(
        theta_hat, variance, _WIDE_SCALE * mixture_sd
    )
    top = max(narrow, wide)
    return top + math.log(math.exp(narrow - top) + math.exp(wide - top))


def mixture_e_value(theta_hat: float, variance: float, mixture_sd: float) -> float:
    """The one-sided mSPRT statistic :math:`\\Lambda` (capped at ``exp(700)``)."""
    return math.exp(min(mixture_log_e_value(theta_hat, variance, mixture_sd), _LOG_MAX))


class ErrorRateTest(BaseModel):
    """The error-rate test at one look, with every number that went into it."""

    model_config = ConfigDict(frozen=True)

    active_requests: int
    active_errors: int
    canary_requests: int
    canary_errors: int
    active_rate: float | None
    canary_rate: float | None
    margin_kind: Literal["relative", "absolute"]
    margin: float
    tolerated_rate: float | None
    difference: float
    std_error: float
    mixture_sd: float
    e_value: float
    p_value: float
    alpha: float
    alarm: bool


def _null_fit(
    n_a: int, y_a: int, n_c: int, y_c: int, slope: float, shift: float
) -> tuple[float, float]:
    """Rates on the boundary p_c = slope * p_a + shift fitted to the pooled errors."""
    p_a = (y_a + y_c - n_c * shift) / (n_a + slope * n_c)
    upper = (1.0 - shift) / slope
    p_a = min(max(p_a, 0.0), upper)
    return p_a, min(slope * p_a + shift, 1.0)


def error_rate_test(
    *,
    active_requests: int,
    active_errors: int,
    canary_requests: int,
    canary_errors: int,
    margin: float,
    margin_kind: Literal["relative", "absolute"],
    alpha: float,
    mixture_sd: float,
) -> ErrorRateTest:
    """Test ``canary error rate > tolerated rate`` on cumulative counts (one-sided mSPRT).

    Args:
        active_requests: Requests served by active since the canary started.
        active_errors: Errors among them.
        canary_requests: Requests served by the canary.
        canary_errors: Errors among them.
        margin: The tolerated worsening (relative factor or absolute rate difference).
        margin_kind: ``"relative"`` or ``"absolute"``.
        alpha: Level of this test; it alarms when the e-value reaches ``1 / alpha``.
        mixture_sd: Scale of the mixing distribution (an error-rate difference); a second
            component ten times wider carries 20% of the weight.

    Returns:
        The statistics and ``alarm``. Without requests on either arm the e-value is 1.
    """
    n_a, y_a, n_c, y_c = active_requests, active_errors, canary_requests, canary_errors
    slope, shift = (1.0 + margin, 0.0) if margin_kind == "relative" else (1.0, margin)
    rate_a = y_a / n_a if n_a else None
    rate_c = y_c / n_c if n_c else None
    tolerated = None if rate_a is None else min(slope * rate_a + shift, 1.0)
    if rate_a is None or rate_c is None:
        theta_hat, variance, log_e = 0.0, 0.0, 0.0
    else:
        theta_hat = rate_c - slope * rate_a - shift
        fit_a, fit_c = _null_fit(n_a, y_a, n_c, y_c, slope, shift)
        variance = max(
            rate_c * (1 - rate_c) / n_c + slope * slope * rate_a * (1 - rate_a) / n_a,
            fit_c * (1 - fit_c) / n_c + slope * slope * fit_a * (1 - fit_a) / n_a,
        )
        log_e = two_scale_log_e_value(theta_hat, variance, mixture_sd)
    threshold = math.log(1.0 / alpha)
    return ErrorRateTest(
        active_requests=n_a,
        active_errors=y_a,
        canary_requests=n_c,
        canary_errors=y_c,
        active_rate=rate_a,
        canary_rate=rate_c,
        margin_kind=margin_kind,
        margin=margin,
        tolerated_rate=tolerated,
        difference=theta_hat,
        std_error=math.sqrt(variance),
        mixture_sd=mixture_sd,
        e_value=math.exp(min(log_e, _LOG_MAX)),
        p_value=min(1.0, math.exp(-log_e)) if log_e > -_LOG_MAX else 1.0,
        alpha=alpha,
        alarm=log_e >= threshold and y_c >= MIN_ERRORS_TO_ALARM,
    )


# --- latency ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyHistogram:
    """Cumulative bin counts of a latency sketch, ready for rank queries.

    ``keys`` ascend; ``cumulative[i]`` counts the values at or below ``gamma ** keys[i]``
    (including ``below``, the values at or below zero).
    """

    gamma: float
    below: float
    keys: tuple[int, ...]
    cumulative: tuple[float, ...]

    @property
    def total(self) -> float:
        """Number of values."""
        return self.cumulative[-1] if self.cumulative else self.below

    def edge(self, index: int) -> float:
        """Upper edge of the bin ``keys[index]``."""
        return math.exp(self.keys[index] * math.log(self.gamma))

    @classmethod
    def from_sketch(cls, sketch: BaseDDSketch) -> LatencyHistogram:
        """Read the bins of a DDSketch."""
        bins, below = sketch_bins(sketch)
        keys = tuple(sorted(bins))
        running = below
        cumulative = []
        for key in keys:
            running += bins[key]
            cumulative.append(running)
        return cls(
            gamma=sketch_gamma(sketch._mapping.relative_accuracy),
            below=below,
            keys=keys,
            cumulative=tuple(cumulative),
        )


@functools.lru_cache(maxsize=64)
def _alternatives(p0: float) -> tuple[tuple[float, float], ...]:
    """Per alternative: log(alt / p0) and log((1 - alt) / (1 - p0))."""
    base = math.log(p0 / (1 - p0))
    out = []
    for step in _LOGIT_STEPS:
        alt = 1.0 / (1.0 + math.exp(-(base + step)))
        out.append((math.log(alt / p0), math.log((1 - alt) / (1 - p0))))
    return tuple(out)


def bernoulli_log_e_value(successes: float, trials: float, p0: float) -> float:
    """Log of a mixture of likelihood ratios against ``Bernoulli(p0)`` for larger rates.

    A nonnegative supermartingale under any rate ``<= p0``; the alternatives are spread
    uniformly over :data:`_LOGIT_STEPS` on the log-odds scale above ``p0``.
    """
    if trials <= 0:
        return 0.0
    failures = trials - successes
    terms = [successes * up + failures * down for up, down in _alternatives(p0)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms) / len(terms))


def quantile_upper_bound(hist: LatencyHistogram, q: float, alpha: float) -> float | None:
    """Always-valid upper confidence bound for the ``q`` quantile, or None when none yet.

    ``P(ever true quantile > bound) <= alpha`` for independent draws.
    """
    threshold = math.log(1.0 / alpha)
    n = hist.total
    if n <= 0:
        return None
    if bernoulli_log_e_value(hist.below, n, q) >= threshold:
        return 0.0

    def rejects(i: int) -> bool:
        return bernoulli_log_e_value(hist.cumulative[i], n, q) >= threshold

    # The e-value grows with the bin index: binary search for the first rejection.
    lo, hi = 0, len(hist.keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if rejects(mid):
            hi = mid
        else:
            lo = mid + 1
    return hist.edge(lo) if lo < len(hist.keys) else None


def quantile_lower_bound(hist: LatencyHistogram, q: float, alpha: float) -> float | None:
    """Always-valid lower confidence bound for the ``q`` quantile, or None when none yet.

    ``P(ever true quantile <= bound) <= alpha`` for independent draws.
    """
    threshold = math.log(1.0 / alpha)
    n = hist.total
    if n <= 0:
        return None

    def rejects(i: int) -> bool:
        return bernoulli_log_e_value(n - hist.cumulative[i], n, 1.0 - q) >= threshold

    # The e-value falls with the bin index: binary search for the last rejection.
    lo, hi = -1, len(hist.keys) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if rejects(mid):
            lo = mid
        else:
            hi = mid - 1
    return hist.edge(lo) if lo >= 0 else None


class LatencyTest(BaseModel):
    """The latency test for one quantile at one look."""

    model_config = ConfigDict(frozen=True)

    quantile: float
    tolerance: float
    active_samples: int
    canary_samples: int
    active_value: float | None
    canary_value: float | None
    observed_ratio: float | None
    active_upper: float | None
    canary_lower: float | None
    alpha: float
    checked: bool
    alarm: bool
    stratified_windows: int = 0
    stratified_max_log_e: float | None = None
    bounds_alarm: bool | None = None


def latency_test(
    active: LatencyHistogram,
    canary: LatencyHistogram,
    *,
    quantile: float,
    tolerance: float,
    alpha: float,
    min_samples: int,
    active_value: float | None = None,
    canary_value: float | None = None,
    canary_share: float = 0.5,
    floor_ms: float = 0.0,
) -> LatencyTest:
    """Test ``canary quantile > tolerance * active quantile`` with always-valid bounds.

    Args:
        active: Active's latency histogram.
        canary: The canary's.
        quantile: e.g. 0.99.
        tolerance: Largest tolerated ratio canary / active, e.g. 1.2.
        alpha: Level of this test, split between the two bounds.
        min_samples: Both arms need this many latencies before the test is checked.
        active_value: Point estimate of active's quantile, for the record.
        canary_value: The canary's.
        canary_share: The share of ``alpha`` spent on the canary's bound (the judge gives
            it 3/4: at small steps active has far more samples, so its bound is tight
            even at a small level, and the canary's bound is the one that decides).
        floor_ms: No alarm while the canary's lower bound is at or below this latency.
    """
    n_a, n_c = int(active.total), int(canary.total)
    checked = n_a >= min_samples and n_c >= min_samples
    upper = lower = None
    if checked:
        upper = quantile_upper_bound(active, quantile, alpha * (1.0 - canary_share))
        lower = quantile_lower_bound(canary, quantile, alpha * canary_share)
    ratio = None
    if active_value and canary_value is not None:
        ratio = canary_value / active_value
    return LatencyTest(
        quantile=quantile,
        tolerance=tolerance,
        active_samples=n_a,
        canary_samples=n_c,
        active_value=active_value,
        canary_value=canary_value,
        observed_ratio=ratio,
        active_upper=upper,
        canary_lower=lower,
        alpha=alpha,
        checked=checked,
        alarm=upper is not None
        and lower is not None
        and lower > tolerance * upper
        and lower > floor_ms,
    )


class LatencyGate(BaseModel):
    """The promotion gate for one quantile: is the canary shown not materially worse?"""

    model_config = ConfigDict(frozen=True)

    quantile: float
    worse_ratio: float
    floor_ms: float
    canary_upper: float | None
    active_lower: float | None
    beta: float
    passed: bool


def latency_gate(
    active: LatencyHistogram,
    canary: LatencyHistogram,
    *,
    quantile: float,
    worse_ratio: float,
    floor_ms: float,
    beta: float,
) -> LatencyGate:
    """Show ``canary quantile < worse_ratio * active quantile`` (or below ``floor_ms``).

    The mirror of :func:`latency_test`: an always-valid *upper* bound for the canary's
    quantile and a *lower* bound for active's, each at ``beta / 2``. If the canary's true
    quantile is at least ``worse_ratio`` times active's (and above the floor), passing needs
    one of the two bounds to be wrong at some look, which has probability at most ``beta``.
    """
    upper = quantile_upper_bound(canary, quantile, beta / 2)
    lower = quantile_lower_bound(active, quantile, beta / 2)
    passed = upper is not None and (
        (floor_ms > 0.0 and upper <= floor_ms)
        or (lower is not None and upper < worse_ratio * lower)
    )
    return LatencyGate(
        quantile=quantile,
        worse_ratio=worse_ratio,
        floor_ms=floor_ms,
        canary_upper=upper,
        active_lower=lower,
        beta=beta,
        passed=passed,
    )
