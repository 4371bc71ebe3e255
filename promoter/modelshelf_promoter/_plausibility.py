"""Plausibility of what each serving process reports: named, and left out when implausible.

Metrics objects are written by every server of the fleet, and a valid-looking object can
still be wrong: a server with a bug that multiplies its counts, or one routing with a stale
ratio. One such server among four was enough to hide a 1% -> 3% canary (the others'
evidence drowned in its numbers). Two checks, both about routing and bookkeeping, never
about the error or latency outcomes the tests judge (so leaving a server out does not
select data by its verdict):

* **per object**: the latency sketches (successful and failed requests) must hold exactly
  one value per request, as the recorder writes them; an object that does not is
  *implausible*, skipped and named, like a corrupt one;
* **per server**: its canary share since the canary started must match the ratio it
  routed with (the ``served_ratio`` it records; the median share of the fleet for objects
  from servers that do not record it). A server whose canary odds are off by more than
  :data:`SHARE_ODDS_FACTOR` *and* significantly so (:data:`SHARE_Z`, on at least
  :data:`SHARE_MIN_REQUESTS` requests) is flagged and its
  data left out of the judgement from then on.
"""

from __future__ import annotations

import math
import statistics

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SHARE_MIN_REQUESTS",
    "SHARE_ODDS_FACTOR",
    "SHARE_Z",
    "ServerReport",
    "ServerTotals",
    "check_servers",
    "share_outlier",
]

SHARE_ODDS_FACTOR = 3.0
"""A server's canary odds must be this far from the expected odds to be flagged..."""
SHARE_Z = 5.0
"""...and this many standard errors away (a busy server is not flagged for a hair)..."""
SHARE_MIN_REQUESTS = 200
"""...with at least this many requests (one late object of a server is not its share)."""


class ServerTotals(BaseModel):
    """What one server reported since the canary started (kept in the promoter state)."""

    model_config = ConfigDict(extra="forbid")

    active_requests: int = 0
    active_errors: int = 0
    canary_requests: int = 0
    canary_errors: int = 0
    expected_canary: float = 0.0
    ratio_known_requests: int = 0
    implausible_objects: int = 0
    flagged: str | None = None


class ServerReport(BaseModel):
    """One server's line of the decision record."""

    model_config = ConfigDict(frozen=True)

    server_id: str
    active_requests: int
    active_errors: int
    canary_requests: int
    canary_errors: int
    canary_share: float | None
    expected_share: float | None
    implausible_objects: int = 0
    excluded: bool = False
    reasons: list[str] = Field(default_factory=list)


def share_outlier(canary: float, total: float, expected: float) -> bool:
    """Whether ``canary`` of ``total`` requests is implausible at an expected share."""
    if total < SHARE_MIN_REQUESTS or not 0.0 < expected < 1.0:
        return False  # too little to tell, or no control (or no canary) expected
    share = canary / total
    se = math.sqrt(expected * (1.0 - expected) / total)
    if abs(share - expected) < SHARE_Z * se:
        return False
    clipped = min(max(share, 0.5 / total), 1.0 - 0.5 / total)
    odds = clipped / (1.0 - clipped)
    expected_odds = expected / (1.0 - expected)
    return odds > SHARE_ODDS_FACTOR * expected_odds or odds * SHARE_ODDS_FACTOR < expected_odds


def check_servers(totals: dict[str, ServerTotals]) -> list[ServerReport]:
    """Flag servers whose canary share does not match their routing; report every server.

    Flags are sticky: ``ServerTotals.flagged`` is set on the totals passed in, so a server
    once left out stays out for the rest of the canary.
    """
    shares = [
        t.canary_requests / (t.active_requests + t.canary_requests)
        for t in totals.values()
        if t.active_requests + t.canary_requests > 0 and t.flagged is None
    ]
    fleet = statistics.median(shares) if len(shares) >= 3 else None
    reports = []
    for server, t in sorted(totals.items()):
        total = t.active_requests + t.canary_requests
        expected: float | None = None
        if t.ratio_known_requests > 0 and t.ratio_known_requests >= total:
            expected = t.expected_canary / total if total else None
        elif fleet is not None:
            expected = fleet
        reasons = []
        if t.implausible_objects and t.flagged is None:
            # A server that writes impossible objects is not trusted with the rest either.
            t.flagged = (
                f"{t.implausible_objects} object(s) whose latency count differs from the "
                "request count: left out of the judgement"
            )
        if (
            t.flagged is None
            and expected is not None
            and share_outlier(t.canary_requests, total, expected)
        ):
            t.flagged = (
                f"canary share {t.canary_requests / total:.3g} where routing gives "
                f"{expected:.3g}: left out of the judgement"
            )
        if t.flagged is not None:
            reasons.append(t.flagged)
        reports.append(
            ServerReport(
                server_id=server,
                active_requests=t.active_requests,
                active_errors=t.active_errors,
                canary_requests=t.canary_requests,
                canary_errors=t.canary_errors,
                canary_share=t.canary_requests / total if total else None,
                expected_share=expected,
                implausible_objects=t.implausible_objects,
                excluded=t.flagged is not None,
                reasons=reasons,
            )
        )
    return reports
