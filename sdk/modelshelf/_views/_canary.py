"""A canary's metrics per window: requests, errors, error rate and latency quantiles per arm.

Reads the serving fleet's metric objects (``{model}/metrics/{version}/{window}/...``) of the
two versions of one canary run, for the windows that overlap the run, and merges them per
window and arm. Read-only; a corrupt object is skipped and counted, never fatal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .._errors import InvalidInputError, KeyNotFoundError
from .._stores import Store
from ..metrics import (
    ArmStats,
    MetricsSummary,
    metrics_prefix,
    parse_metrics_key,
    summary_from_json,
)
from ._timeline import CanaryRun

__all__ = ["CanarySeries", "SummaryCache", "WindowPoint", "read_canary_series"]

Arm = Literal["active", "canary"]
# Metrics windows are short (the serving client flushes 60-second windows); an object whose
# window started this long before the canary cannot hold any of its requests.
_LOOKBACK = timedelta(hours=1)
_CACHE_LIMIT = 500_000

SummaryCache = dict[str, "MetricsSummary | WindowPoint | str"]
"""Metric objects read so far, by key (a corrupt one as its error), and merged windows."""
_POINT = "\x00point:"  # no store key starts with NUL


class WindowPoint(BaseModel):
    """One arm in one metrics window, merged over every server."""

    model_config = ConfigDict(frozen=True)

    window_start: datetime
    window_seconds: int
    arm: Arm
    version: str
    servers: int
    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class CanarySeries(BaseModel):
    """The per-window metrics of one canary run."""

    model_config = ConfigDict(frozen=True)

    run: CanaryRun
    points: list[WindowPoint]
    objects_read: int
    corrupt: list[str]

    def totals(self, arm: Arm) -> tuple[int, int]:
        """Requests and errors of one arm over the whole run."""
        mine = [p for p in self.points if p.arm == arm]
        return sum(p.requests for p in mine), sum(p.errors for p in mine)


def _read(store: Store, key: str) -> MetricsSummary | str | None:
    try:
        obj = store.get(key)
    except KeyNotFoundError:
        return None  # deleted between list and get
    assert obj is not None
    try:
        return summary_from_json(obj.data, key)
    except InvalidInputError as exc:
        return str(exc)


def read_canary_series(
    store: Store,
    model: str,
    run: CanaryRun,
    *,
    now: datetime,
    max_workers: int = 16,
    cache: SummaryCache | None = None,
) -> CanarySeries:
    """Merge the metric objects of a canary run's two versions per window.

    Args:
        store: The registry's store.
        model: The model.
        run: The canary run (from :func:`~modelshelf._views._timeline.canary_runs`).
        now: The end of a run still going on.
        max_workers: Parallel GETs.
        cache: Objects already read, by key (metric objects are immutable, so a page that
            refreshes lists the prefixes again but reads only the new objects).
    """
    start = run.started_at
    end = run.ended_at or now
    todo: list[tuple[Arm, str, str]] = []
    known = cache if cache is not None else {}
    for arm, version in (("active", run.active), ("canary", run.canary)):
        for info in store.list(metrics_prefix(model, version)):
            seen = known.get(info.key)
            if isinstance(seen, MetricsSummary):
                window_start = seen.window_start  # parsing the key costs more than this
            else:
                try:
                    window_start = parse_metrics_key(info.key).window_start
                except InvalidInputError:
                    continue
            if start - _LOOKBACK < window_start < end:
                todo.append((arm, version, info.key))  # type: ignore[arg-type]
    keys = [key for _, _, key in todo if key not in known]
    workers = max(1, min(max_workers, len(keys)))
    if workers == 1:
        fresh = [_read(store, key) for key in keys]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="views-get") as pool:
            fresh = list(pool.map(lambda key: _read(store, key), keys))
    if cache is not None:
        if len(cache) + len(keys) > _CACHE_LIMIT:
            cache.clear()
        cache.update((k, r) for k, r in zip(keys, fresh, strict=True) if r is not None)
    found = dict(zip(keys, fresh, strict=True))
    # .get: another thread may clear a shared cache meanwhile (then the object is skipped
    # this time, as if deleted, and read again next time).
    results = [found[key] if key in found else known.get(key) for _, _, key in todo]
    groups: dict[tuple[datetime, Arm], list[MetricsSummary]] = defaultdict(list)
    corrupt: list[str] = []
    read = 0
    for (arm, version, key), result in zip(todo, results, strict=True):
        if result is None:
            continue
        read += 1
        if not isinstance(result, MetricsSummary):
            corrupt.append(key)
            continue
        if result.model != model or result.version != version:
            corrupt.append(key)
            continue
        window_end = result.window_start + timedelta(seconds=result.window_seconds)
        if window_end <= start or result.window_start >= end:
            continue
        groups[(result.window_start, arm)].append(result)
    points = []
    for (window, arm), parts in sorted(groups.items()):
        # The same immutable objects merge to the same point: a refresh merges only the
        # windows that received an object.
        memo_key = (
            f"{_POINT}{run.canary}/{run.active}/{arm}/"
            + ",".join(sorted(f"{p.server_id}-{p.seq}@{p.version}" for p in parts))
            + f"/{window.isoformat()}"
        )
        memo = known.get(memo_key)
        if isinstance(memo, WindowPoint):
            points.append(memo)
            continue
        stats = ArmStats.merge_all(parts)
        point = WindowPoint(
            window_start=window,
            window_seconds=max(p.window_seconds for p in parts),
            arm=arm,
            version=run.active if arm == "active" else run.canary,
            servers=len({p.server_id for p in parts}),
            requests=stats.count,
            errors=stats.errors,
            error_rate=stats.error_rate,
            p50_ms=stats.quantile(0.5),
            p95_ms=stats.quantile(0.95),
            p99_ms=stats.quantile(0.99),
        )
        if cache is not None:
            cache[memo_key] = point
        points.append(point)
    return CanarySeries(run=run, points=points, objects_read=read, corrupt=sorted(corrupt))


def series_for_runs(
    store: Store, model: str, runs: Sequence[CanaryRun], *, now: datetime
) -> list[CanarySeries]:
    """:func:`read_canary_series` for several runs, newest first."""
    return [read_canary_series(store, model, run, now=now) for run in reversed(runs)]
