"""served_at's search: the same answer as a scan of the whole history, at a bounded cost.

The search reads only the records around an instant, a few at a time in parallel rounds
(docs/design.md, "Scale: indexes and hints"). Here it is checked against a scan of every
stored record on histories with uneven paces, equal times, deleted, corrupt and superseded
records and a claimed record not installed yet; and its requests and rounds are counted.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelshelf import Registry
from modelshelf._aliases import (
    Aliases,
    HistoryRecord,
    _history,
    next_state,
    served_at,
    served_at_search,
)
from modelshelf._aliases._state import SupersededRecord
from modelshelf._errors import KeyNotFoundError
from modelshelf._stores import OVERWRITE, ObjectInfo, Store, StoredObject
from modelshelf.layout import aliases_key, history_key, history_prefix
from tests.support.registries import VERSIONS

START = datetime(2026, 1, 1, tzinfo=UTC)


class DictStore:
    """The reads served_at needs, from a dict; counts GETs and listings."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.requests = 0

    @property
    def uri(self) -> str:
        return "memory://test"

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        self.requests += 1
        if key not in self.objects:
            raise KeyNotFoundError(f"no object {key}")
        return StoredObject(key=key, data=self.objects[key], etag="e")

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        self.requests += 1
        keys = sorted(k for k in self.objects if k.startswith(prefix) and (start_after or "") < k)
        return iter([ObjectInfo(k, len(self.objects[k]), "e") for k in keys[:limit]])


class CountingStore:
    """A store that counts the requests served_at makes (GETs and listings)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.requests = 0

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        self.requests += 1
        return self.inner.get(key, if_none_match=if_none_match)

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        self.requests += 1
        return self.inner.list(prefix, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class History:
    """Records as stored (some deleted or corrupt), and the ones a scan keeps."""

    objects: dict[str, bytes] = field(default_factory=dict)
    records: list[HistoryRecord] = field(default_factory=list)

    def scanned(self) -> list[HistoryRecord]:
        """Every stored record that parses and that no stored record supersedes."""
        readable = []
        for key, data in sorted(self.objects.items()):
            if key.startswith(history_prefix("iris")):
                try:
                    readable.append(HistoryRecord.model_validate_json(data))
                except ValueError:
                    continue
        superseded = {s.generation for r in readable for s in r.supersedes}
        return [r for r in readable if r.generation not in superseded]


def build(
    gaps: list[int], unsound: set[int], deleted: set[int], corrupt: set[int], installed: bool
) -> History:
    """A history with one record per gap (seconds after the previous one).

    Generations in ``unsound`` are claims no writer installed: the next sound record
    supersedes them, as apply_change does. ``installed`` False leaves the newest sound
    record claimed but not installed (aliases.json one behind).
    """
    history = History()
    when, kept, pending = START, Aliases(), []
    sound: list[Aliases] = []
    for generation, gap in enumerate(gaps, start=1):
        when += timedelta(seconds=gap)
        active = VERSIONS[generation % 4]
        updates: dict[str, Any] = {"active": active, "canary": None, "ratio": 0.0}
        if kept.active and kept.active != active and generation % 3 == 0:
            updates = {"canary": active, "ratio": 0.25}
        state = next_state(
            "iris", kept, updates, user="t", reason=None, now=when, generation=generation
        )
        record = HistoryRecord(
            generation=generation,
            action="set_active",
            previous=kept if kept.generation else None,
            state=state,
            who="t",
            when=when,
            supersedes=[] if generation in unsound else pending,
        )
        history.records.append(record)
        if generation in unsound:
            pending = [*pending, SupersededRecord(generation=generation, problem="forged")]
        else:
            kept, pending = state, []
            sound.append(state)
    for record in history.records:
        key = history_key("iris", record.generation)
        if record.generation in corrupt:
            history.objects[key] = b'{"generation": '
        elif record.generation not in deleted:
            history.objects[key] = record.to_json()
    pointer = sound[-1] if installed or len(sound) < 2 else sound[-2]
    if sound:
        history.objects[aliases_key("iris")] = pointer.to_json()
    return history


def instants(records: list[HistoryRecord], grace: timedelta) -> list[datetime]:
    """Every instant where the answer can change, and either side of it."""
    tiny = timedelta(microseconds=1)
    edges = [r.when for r in records] + [r.when + grace for r in records]
    found = {e + d for e in edges for d in (-tiny, timedelta(0), tiny)}
    found |= {START - timedelta(days=1), records[-1].when + grace + timedelta(days=1)}
    return sorted(found)


def as_set(served: list[Any]) -> set[tuple[str, str, int, float]]:
    return {(s.version, s.role, s.generation, s.ratio) for s in served}


GAPS = st.sampled_from([0, 1, 30, 600, 3600, 86400, 30 * 86400])


@st.composite
def histories(draw: st.DrawFn) -> History:
    gaps = draw(st.lists(GAPS, min_size=1, max_size=60))
    n = len(gaps)
    generations = st.integers(1, n)
    # Unsound claims one at a time: the next record, the one that supersedes it, is what
    # tells a reader (of several in a row, the search sees only those it reads).
    claims = draw(st.sets(generations, max_size=max(0, n // 8)))
    unsound = {g for g in claims if g - 1 not in claims}
    deleted = draw(st.sets(generations, max_size=max(0, n // 10)))
    corrupt = draw(st.sets(generations, max_size=max(0, n // 10)))
    return build(gaps, unsound, deleted, corrupt, draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    grace=st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(seconds=60)])
    | st.sampled_from([timedelta(hours=2), timedelta(days=2)]),
)
def test_the_search_answers_as_a_scan_of_the_whole_history(
    history: History, grace: timedelta
) -> None:
    store = DictStore(history.objects)
    scanned = history.scanned()
    for when in instants(history.records, grace):
        expected = as_set(served_at(scanned, when, grace)) if scanned else set()
        got = as_set(served_at_search(store, "iris", when, grace))  # type: ignore[arg-type]
        assert got == expected, f"at {when.isoformat()} (grace {grace}): {got} != {expected}"


def test_a_superseded_record_before_the_instant_was_never_served() -> None:
    # Generation 3 was claimed but never installed; 4 supersedes it. Between 3's time and
    # 4's, 2's state was the one served, whatever the grace.
    history = build([60, 600, 600, 600], unsound={3}, deleted=set(), corrupt=set(), installed=True)
    store = DictStore(history.objects)
    between = history.records[2].when + timedelta(seconds=300)
    served = served_at_search(store, "iris", between, timedelta(seconds=60))  # type: ignore[arg-type]
    assert {s.generation for s in served} == {2}, served


def records_per_round(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each round of reads asks for (one entry per round)."""
    rounds: list[int] = []
    read_records = _history.read_records

    def counted(store: Store, name: str, generations: Any) -> dict[int, HistoryRecord]:
        wanted = list(generations)
        if wanted:
            rounds.append(len(wanted))
        return read_records(store, name, wanted)

    monkeypatch.setattr(_history, "read_records", counted)
    return rounds


def test_at_1000_records_the_search_costs_a_few_rounds_and_under_30_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    # Uneven: bursts seconds apart between quiet days, as canary steps and releases are.
    gaps = [rng.choice([5, 30, 90, 3600, 86400]) for _ in range(1000)]
    history = build(gaps, unsound=set(), deleted=set(), corrupt=set(), installed=True)
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    for key, data in history.objects.items():
        registry.store.put(key, data, mode=OVERWRITE)
    store = CountingStore(registry.store)
    rounds = records_per_round(monkeypatch)
    span = history.records[-1].when - START
    grace = timedelta(seconds=60)
    requests, counts = [], []
    for _ in range(60):
        when = START + span * rng.random()
        store.requests, rounds[:] = 0, []
        got = as_set(served_at_search(store, "iris", when, grace))  # type: ignore[arg-type]
        assert got == as_set(served_at(history.records, when, grace)), f"at {when}"
        requests.append(store.requests)
        counts.append(len(rounds))
    # After the newest generation (a GET and a listing), a binary search would take about
    # log2(1000) = 10 reads one after another; here a round reads its few in parallel.
    assert max(requests) <= 30, f"requests per search: {sorted(requests)}"
    assert max(counts) <= 7 and statistics.mean(counts) <= 4.5, f"rounds: {sorted(counts)}"
