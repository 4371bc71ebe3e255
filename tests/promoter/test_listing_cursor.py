"""The promoter's listing cursor: a run lists metrics from the oldest open window on (the window
is in the key), plus one closed window to find late objects; it never pages through the
closed history again, and still counts every object exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelshelf import Registry
from modelshelf._stores import ObjectInfo, Store
from modelshelf.metrics import WINDOW_FORMAT, metrics_prefix
from modelshelf_promoter import Promoter
from tests.promoter.test_promoter_run import (
    ACTIVE,
    CANARY,
    MODEL,
    Clock,
    now_after_start,
    put_summary,
    registry,
    traffic,
)

__all__ = ["registry"]  # the fixture: a canary run on a local folder and on moto


class ListingStore:
    """Forwards to a store, recording every listing and the keys it returned."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.listings: list[tuple[str, str | None, int]] = []
        self._lock = threading.Lock()

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        found = list(self.inner.list(prefix, **kwargs))
        with self._lock:
            self.listings.append((prefix, kwargs.get("start_after"), len(found)))
        return iter(found)

    def metric_listings(self) -> list[tuple[str, str | None, int]]:
        return [item for item in self.listings if "/metrics/" in item[0]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_run_lists_only_open_windows_and_one_closed_one(
    registry: Registry, tmp_path: Path
) -> None:
    listing = ListingStore(registry.store)
    reg = Registry(listing, cache_dir=tmp_path / "c2", user="tester")  # type: ignore[arg-type]
    start = now_after_start(registry, seconds=60)
    # 30 windows of history, 3 servers: 90 objects per version.
    for minute in range(30):
        traffic(registry.store, start + timedelta(minutes=minute), seq=2 * minute)
    clock = Clock(start + timedelta(minutes=31))
    promoter = Promoter(reg, clock=clock, lateness_seconds=300)

    (first,) = promoter.run([MODEL])
    assert first.read is not None and first.read.fetched == 180, f"first run: {first.read}"
    counts = (first.canary_requests, first.active_requests)

    listing.listings.clear()
    (second,) = promoter.run([MODEL])
    assert second.read is not None and second.read.fetched == 0, f"second: {second.read}"
    assert (second.canary_requests, second.active_requests) == counts, "counts moved"
    calls = listing.metric_listings()
    open_calls = [c for c in calls if c[1] is not None]
    assert len(open_calls) == 2, f"one start_after listing per version expected: {calls}"
    watermark = (clock.now - timedelta(seconds=300)).strftime(WINDOW_FORMAT)
    for prefix, after, _ in open_calls:
        assert prefix in (metrics_prefix(MODEL, ACTIVE), metrics_prefix(MODEL, CANARY))
        assert after is not None and after[len(prefix) :] >= watermark[:-3], (
            f"listed from {after!r}, before the open windows (watermark {watermark})"
        )
    # Open windows: the last 5 minutes (3 servers x 5-6 windows), plus one closed window.
    assert second.read.listed <= 2 * (3 * 6 + 3), f"listed closed history: {second.read}"


def test_a_late_object_in_a_closed_window_is_found_by_the_round_of_audits(
    registry: Registry,
) -> None:
    start = now_after_start(registry, seconds=60)
    for minute in range(6):
        traffic(registry.store, start + timedelta(minutes=minute), seq=2 * minute)
    clock = Clock(start + timedelta(minutes=20))
    promoter = Promoter(registry, clock=clock, lateness_seconds=120)
    (first,) = promoter.run([MODEL])
    merged = first.canary_requests
    put_summary(registry.store, CANARY, "web-late", 99, start + timedelta(minutes=2), 50, 50)
    late = 0
    for _ in range(7):  # 6 closed windows: each is listed again within 6 runs
        (run,) = promoter.run([MODEL])
        assert run.read is not None
        late += run.read.late_ignored
        assert run.canary_requests == merged, f"a late object was merged: {run}"
    assert late == 1, f"the late object was reported {late} times, not once"


def test_new_objects_in_open_windows_are_merged_once_with_the_cursor(
    registry: Registry,
) -> None:
    start = now_after_start(registry, seconds=60)
    clock = Clock(start + timedelta(minutes=1))
    promoter = Promoter(registry, clock=clock, lateness_seconds=300)
    total = 0
    for minute in range(12):
        traffic(registry.store, start + timedelta(minutes=minute), seq=2 * minute)
        total += 3 * 40
        clock.now = start + timedelta(minutes=minute, seconds=59)
        (run,) = promoter.run([MODEL])
        assert run.canary_requests == total, f"minute {minute}: {run.canary_requests} != {total}"
        assert run.read is not None and run.read.fetched == 6, f"minute {minute}: {run.read}"
