"""The alias timeline, canary runs, per-window canary metrics and past promoter decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._stores import CREATE, ObjectInfo, PutMode, Store, StoredObject
from modelshelf._views._canary import read_canary_series
from modelshelf._views._decisions import read_decisions
from modelshelf._views._timeline import build_timeline
from modelshelf.metrics import ArmStats
from modelshelf_promoter import Promoter
from tests.support.views import MODEL, fleet_traffic, push_versions, put_summary


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="alice@test")


def test_timeline_has_every_record_and_the_segments_they_imply(reg: Registry) -> None:
    push_versions(reg, 3)
    reg.set_active(MODEL, "1.0.0", reason="first release")
    reg.start_canary(MODEL, "1.1.0", 0.05, reason="retrained")
    reg.set_ratio(MODEL, 0.5, reason="looks fine")
    reg.promote(MODEL, reason="done")
    reg.start_canary(MODEL, "1.2.0", 0.1)
    reg.abort_canary(MODEL, reason="bad latency")
    history = reg.history(MODEL)
    timeline = build_timeline(history)
    assert [e.generation for e in timeline.events] == [r.generation for r in history]
    assert [e.reason for e in timeline.events][:2] == ["first release", "retrained"]
    active = [(s.version, s.end is None) for s in timeline.segments if s.role == "active"]
    assert active == [("1.0.0", False), ("1.1.0", True)]
    canary = [s.version for s in timeline.segments if s.role == "canary"]
    assert canary == ["1.1.0", "1.2.0"]
    runs = timeline.canaries
    assert [(r.canary, r.outcome) for r in runs] == [("1.1.0", "promoted"), ("1.2.0", "aborted")]
    assert [ratio for _, ratio, _ in runs[0].steps] == [0.05, 0.5]


def test_a_running_canary_is_open(reg: Registry) -> None:
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    reg.start_canary(MODEL, "1.1.0", 0.05)
    (run,) = build_timeline(reg.history(MODEL)).canaries
    assert run.outcome == "running" and run.ended_at is None


class CountingStore:
    """A store that counts GETs and refuses every write (a read-only credential)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gets: list[str] = []

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        self.gets.append(key)
        return self.inner.get(key, if_none_match=if_none_match)

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, **kwargs)

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        raise AssertionError(f"a view wrote {key}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_canary_series_merges_servers_per_window(reg: Registry) -> None:
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    reg.start_canary(MODEL, "1.1.0", 0.05)
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    window = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
    a = put_summary(reg, "1.1.0", window, "web-0", 0, [10.0] * 30, 3)
    b = put_summary(reg, "1.1.0", window, "web-1", 0, [20.0] * 10, 1)
    put_summary(reg, "1.0.0", window, "web-0", 0, [5.0] * 100, 1)
    put_summary(reg, "1.2.0", window, "web-0", 0, [1.0] * 100, 0)  # not in this canary
    (run,) = build_timeline(reg.history(MODEL)).canaries
    series = read_canary_series(reg.store, MODEL, run, now=started + timedelta(minutes=5))
    canary = [p for p in series.points if p.arm == "canary"]
    assert len(canary) == 1
    point = canary[0]
    merged = ArmStats.merge_all([a, b])
    assert (point.requests, point.errors, point.servers) == (40, 4, 2)
    assert point.error_rate == pytest.approx(0.1)
    assert point.p95_ms == pytest.approx(merged.quantile(0.95))
    assert series.totals("active") == (100, 1)


def test_a_corrupt_metrics_object_is_skipped_and_named(reg: Registry) -> None:
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    reg.start_canary(MODEL, "1.1.0", 0.05)
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    window = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
    put_summary(reg, "1.1.0", window, "web-0", 0, [10.0] * 5, 0)
    bad = f"{MODEL}/metrics/1.1.0/{window.strftime('%Y%m%dT%H%M%SZ')}/web-1-00000000.json"
    reg.store.put(bad, b"{not json")
    (run,) = build_timeline(reg.history(MODEL)).canaries
    series = read_canary_series(reg.store, MODEL, run, now=started + timedelta(minutes=5))
    assert series.corrupt == [bad]
    assert series.totals("canary") == (5, 0)


def test_a_refresh_reads_only_new_metric_objects(reg: Registry) -> None:
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    reg.start_canary(MODEL, "1.1.0", 0.05)
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    fleet_traffic(reg, ("1.0.0", "1.1.0"), started, 3, per_window=5)
    store = CountingStore(reg.store)
    (run,) = build_timeline(reg.history(MODEL)).canaries
    cache: dict[str, Any] = {}
    now = started + timedelta(minutes=10)
    first = read_canary_series(store, MODEL, run, now=now, cache=cache)
    assert len(store.gets) == 12
    put_summary(reg, "1.1.0", first.points[-1].window_start, "web-9", 0, [1.0], 0)
    store.gets.clear()
    second = read_canary_series(store, MODEL, run, now=now, cache=cache)
    assert len(store.gets) == 1, store.gets
    assert second.totals("canary")[0] == first.totals("canary")[0] + 1


def test_promoter_decisions_read_back_readably(reg: Registry) -> None:
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    reg.start_canary(MODEL, "1.1.0", 0.05)
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    fleet_traffic(reg, ("1.0.0", "1.1.0"), started, 10, per_window=60, error_rates=(0.01, 0.3))
    (run,) = Promoter(reg, clock=lambda: started + timedelta(minutes=12)).run([MODEL])
    assert run.action == "rollback" and run.applied
    views, problems = read_decisions(reg.store, MODEL)
    assert problems == []
    (view,) = views
    assert view.key == run.decision_key
    assert view.action == "rollback" and view.outcome == "applied"
    assert view.decision.canary.requests == run.canary_requests
    assert view.decision.errors.alarm
    timeline = build_timeline(reg.history(MODEL))
    assert timeline.canaries[0].outcome == "rolled back"
    last = timeline.events[-1]
    assert last.promoter_action == "rollback" and last.decision_key == run.decision_key


def test_an_unreadable_decision_record_is_reported_not_fatal(reg: Registry) -> None:
    push_versions(reg, 1)
    key = f"{MODEL}/promoter/decisions/20260101T000000000000Z-000000000001.json"
    reg.store.put(key, b'{"model": "iris"}')
    views, problems = read_decisions(reg.store, MODEL)
    assert views == []
    assert len(problems) == 1 and problems[0].startswith(key)
