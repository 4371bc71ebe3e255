"""Each server's share of the evidence is bounded: requests per window against the fleet.

A serving principal can write any number it likes into its own metric objects. One object
claiming 10^9 requests and no errors would outweigh the whole fleet and buy a canary its
promotion, whatever the other servers saw. So before anything is merged, every server's
requests in a window (both arms, all its objects of that window, read in this run or
earlier) are compared with the fleet:

* the **reference** is the median rate (requests per second) of the *other* servers in the
  same window when at least :data:`MIN_SERVERS` of them reported, else the typical
  per-server rate of the most recent closed window that had that many, else none;
* a server is an **outlier** in that window when its rate exceeds ``factor`` times
  ``max(reference, MIN_REFERENCE_RPS)``, or the policy's absolute ceiling
  (``max_server_requests_per_second``) when one is set;
* an outlier's objects of that window are not merged, counted nor remembered as the
  fleet's; each is reported (``ReadReport.volume_outliers``) with its numbers;
* a server above ``factor * MIN_REFERENCE_RPS`` with no reference yet, in a window that
  ended less than :data:`DEFER_WINDOWS` window lengths ago, is **deferred**: its objects
  are not merged and not remembered as read, so the next run reads them again, by when the
  rest of the fleet has flushed that window (a forger writing first gains nothing). Below
  that rate, or once the window is older, an object without reference (a fleet of fewer
  server alone) is judged by the ceiling alone.

The check is about volume only, never about errors or latency, so leaving a server out
does not select the data by its verdict. What it cannot catch is documented in
infra/README.md ("Serving identities"): a server lying below the bound, and, without bound
identities, many invented server ids.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from modelshelf.metrics import WINDOW_FORMAT, MetricsSummary

__all__ = [
    "DEFER_WINDOWS",
    "MIN_REFERENCE_RPS",
    "MIN_SERVERS",
    "VolumeState",
    "bound_volume",
    "close_windows",
]

_Role = TypeVar("_Role")

MIN_SERVERS = 1
"""Other servers a window needs before its median is a reference."""
DEFER_WINDOWS = 1
"""How many window lengths after its end a window's objects wait for a fleet reference: the
reader already allows one window of flush lag (``canary_seen_recently``), so waiting longer
would hide a canary that is serving."""
MIN_REFERENCE_RPS = 1.0
"""The reference never drops below this rate, so a quiet fleet does not flag a busy server."""


class VolumeState(BaseModel):
    """Per open window, each server's accepted rate; and the last typical rate."""

    model_config = ConfigDict(extra="forbid")

    open: dict[str, dict[str, float]] = Field(default_factory=dict)
    typical_rate: float | None = None


def _reference(rates: dict[str, float], server: str, typical: float | None) -> float | None:
    others = [rate for other, rate in rates.items() if other != server]
    if len(others) >= MIN_SERVERS:
        return statistics.median(others)
    return typical


def bound_volume(
    items: list[tuple[_Role, MetricsSummary]],
    state: VolumeState,
    *,
    factor: float,
    ceiling_rps: float | None,
    now: datetime,
) -> tuple[
    list[tuple[_Role, MetricsSummary]],
    list[tuple[MetricsSummary, str]],
    list[tuple[_Role, MetricsSummary]],
]:
    """Split newly read ``(role, summary)`` pairs into accepted, outliers and deferred.

    ``state`` is updated with the accepted rates. Returns the accepted pairs (in their
    order), each outlier summary with the reason it was left out, and the deferred pairs
    (to be read again by the next run).
    """
    batch: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (_, summary) in enumerate(items):
        batch[(summary.window_start.strftime(WINDOW_FORMAT), summary.server_id)].append(i)
    # Every server's rate per window with this run's objects, to judge each against the rest.
    candidate: dict[str, dict[str, float]] = {w: dict(r) for w, r in state.open.items()}
    for (window, server), indexes in batch.items():
        seconds = max(items[i][1].window_seconds for i in indexes)
        rate = sum(items[i][1].count for i in indexes) / seconds
        rates = candidate.setdefault(window, {})
        rates[server] = rates.get(server, 0.0) + rate
    rejected: dict[int, str] = {}
    deferred: set[int] = set()
    for (window, server), indexes in batch.items():
        rate = candidate[window][server]
        reference = _reference(candidate[window], server, state.typical_rate)
        limit = None if reference is None else factor * max(reference, MIN_REFERENCE_RPS)
        first = items[indexes[0]][1]
        young = (
            first.window_start + timedelta(seconds=first.window_seconds * (1 + DEFER_WINDOWS)) > now
        )
        why = None
        if ceiling_rps is not None and rate > ceiling_rps:
            why = f"{rate:.4g} requests/s above the policy's ceiling of {ceiling_rps:.4g}"
        elif limit is not None and rate > limit:
            why = (
                f"{rate:.4g} requests/s in window {window}, more than {factor:g} times the "
                f"fleet's {reference:.4g}"
            )
        if why is not None:
            for i in indexes:
                rejected[i] = f"volume outlier: server {server} reported {why}: left out"
        elif reference is None and young and rate > factor * MIN_REFERENCE_RPS:
            deferred.update(indexes)
    for (window, server), indexes in batch.items():
        if indexes[0] in rejected or indexes[0] in deferred:
            continue
        seconds = max(items[i][1].window_seconds for i in indexes)
        rates = state.open.setdefault(window, {})
        rates[server] = rates.get(server, 0.0) + sum(items[i][1].count for i in indexes) / seconds
    accepted = [item for i, item in enumerate(items) if i not in rejected and i not in deferred]
    outliers = [(items[i][1], why) for i, why in sorted(rejected.items())]
    return accepted, outliers, [items[i] for i in sorted(deferred)]


def close_windows(state: VolumeState, closed: list[str]) -> None:
    """Forget closed windows, keeping the newest well-populated one's median as typical."""
    for window in sorted(closed):
        rates = state.open.pop(window, None)
        if rates is not None and len(rates) > MIN_SERVERS:
            state.typical_rate = statistics.median(rates.values())
