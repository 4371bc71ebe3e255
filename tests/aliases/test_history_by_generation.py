"""History read by generation number, served_at by search, rollback by back-pointer, gc's index.

Each hint is removed, corrupted or made stale here, and the operation must still give the
answer a full read of the history gives (docs/design.md, "Scale: indexes and hints").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._aliases import (
    Aliases,
    HistoryRecord,
    next_state,
    served_at,
    served_at_search,
)
from modelshelf._aliases._ever import ever_aliased
from modelshelf._aliases._index import (
    HistoryIndex,
    anchor_generations,
    history_anchors,
    read_chapter,
    to_ms,
)
from modelshelf._stores import OVERWRITE
from modelshelf.layout import aliases_key, ever_aliased_key, history_key, history_prefix
from tests.support.registries import VERSIONS, make_registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return make_registry(tmp_path)


def all_records(registry: Registry, name: str = "iris") -> list[HistoryRecord]:
    """Every record, read the slow way: list the prefix and read each key."""
    records = []
    for info in registry.store.list(history_prefix(name)):
        obj = registry.store.get(info.key)
        assert obj is not None
        records.append(HistoryRecord.model_validate_json(obj.data))
    return sorted(records, key=lambda r: r.generation)


def release_cycles(registry: Registry, cycles: int) -> None:
    versions = VERSIONS[:4]
    registry.set_active("iris", versions[0])
    for i in range(cycles):
        canary = versions[(i + 1) % 4]
        if canary == registry.aliases("iris").active:
            canary = versions[(i + 2) % 4]
        registry.start_canary("iris", canary, 0.1)
        registry.set_ratio("iris", 0.5)
        if i % 3 == 2:
            registry.abort_canary("iris")
        else:
            registry.promote("iris")


def as_older_writer(registry: Registry, name: str = "iris") -> None:
    """Rewrite the history and aliases as a writer without the back-pointer leaves them."""
    store = registry.store
    for record in all_records(registry, name):
        data = json.loads(record.to_json())
        for state in (data["state"], data.get("previous") or {}):
            state.pop("active_since", None)
            state.pop("active_since_at", None)
        store.put(history_key(name, record.generation), json.dumps(data).encode(), mode=OVERWRITE)
    obj = store.get(aliases_key(name))
    assert obj is not None
    data = json.loads(obj.data)
    data.pop("active_since", None)
    data.pop("active_since_at", None)
    store.put(aliases_key(name), json.dumps(data).encode(), mode=OVERWRITE)


# -- history ------------------------------------------------------------------------------


def test_history_and_its_newest_records_match_a_full_read(registry: Registry) -> None:
    release_cycles(registry, 6)
    full = all_records(registry)
    assert registry.history("iris") == full, "history must be every record, oldest first"
    assert registry.history("iris", limit=5) == full[-5:], "limit: the newest records"
    assert registry.history("iris", limit=1000) == full, "a limit above the count is all"
    assert list(registry.iter_history("iris")) == full[::-1], "newest first, every record"


def test_a_claimed_record_not_yet_installed_is_part_of_the_history(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    installed = registry.aliases("iris")
    now = datetime.now(UTC)
    state = next_state("iris", installed, {"active": "1.1.0"}, user="x", reason=None, now=now)
    claimed = HistoryRecord(
        generation=2, action="set_active", previous=installed, state=state, who="x", when=now
    )
    registry.store.put(history_key("iris", 2), claimed.to_json())  # a writer died here
    assert [r.generation for r in registry.history("iris")] == [1, 2]
    assert registry.history("iris", limit=1) == [claimed]


def test_history_without_aliases_json_still_reads_every_record(registry: Registry) -> None:
    release_cycles(registry, 2)
    full = all_records(registry)
    registry.store.delete(aliases_key("iris"))
    assert registry.history("iris") == full, "a missing aliases.json must not hide history"
    registry.store.put(aliases_key("iris"), b"{not json", mode=OVERWRITE)
    assert registry.history("iris", limit=2) == full[-2:], "nor a corrupt one"


# -- served_at ----------------------------------------------------------------------------


def synthetic_history(rng: random.Random, count: int) -> list[HistoryRecord]:
    """Records with uneven gaps (bursts and quiet hours), as next_state builds them."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    state = Aliases()
    records = []
    for _ in range(count):
        when += timedelta(seconds=rng.choice([5, 30, 90, 3600, 86400]) * rng.uniform(0.5, 1.5))
        if state.active and rng.random() < 0.5:
            canary = next(v for v in VERSIONS[:4] if v != state.active)
            updates = (
                {"canary": canary, "ratio": round(rng.uniform(0.05, 1), 2)}
                if rng.random() < 0.7
                else {"canary": None, "ratio": 0.0}
            )
        else:
            updates = {"active": rng.choice(VERSIONS[:4]), "canary": None, "ratio": 0.0}
        new = next_state("iris", state, updates, user="t", reason=None, now=when)
        records.append(
            HistoryRecord(
                generation=new.generation,
                action="set_active",
                previous=state if state.generation else None,
                state=new,
                who="t",
                when=when,
            )
        )
        state = new
    return records


def install(registry: Registry, records: list[HistoryRecord]) -> None:
    for record in records:
        registry.store.put(history_key("iris", record.generation), record.to_json())
    registry.store.put(aliases_key("iris"), records[-1].state.to_json(), mode=OVERWRITE)


def as_set(served: list) -> set[tuple[str, str, int, float]]:  # type: ignore[type-arg]
    return {(s.version, s.role, s.generation, s.ratio) for s in served}


@pytest.mark.parametrize("seed", range(4))
def test_served_at_search_agrees_with_a_full_read(tmp_path: Path, seed: int) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    rng = random.Random(seed)
    records = synthetic_history(rng, rng.choice([1, 2, 7, 150]))
    install(registry, records)
    grace = timedelta(seconds=rng.choice([0, 60, 7200]))
    instants = [r.when for r in records] + [r.when - timedelta(seconds=1) for r in records]
    instants += [records[0].when - timedelta(days=1), records[-1].when + timedelta(days=1)]
    instants += [
        records[0].when + (records[-1].when - records[0].when) * rng.random() for _ in range(20)
    ]
    for when in instants:
        expected = as_set(served_at(records, when, grace))
        got = as_set(served_at_search(registry.store, "iris", when, grace))
        assert got == expected, f"served_at at {when} (grace {grace}): {got} != {expected}"


def test_served_at_search_survives_a_deleted_record(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    records = synthetic_history(random.Random(5), 60)
    install(registry, records)
    registry.store.delete(history_key("iris", 31))
    kept = [r for r in records if r.generation != 31]
    for record in records[25:40]:
        when = record.when + timedelta(seconds=1)
        expected = as_set(served_at(kept, when, timedelta(seconds=60)))
        got = as_set(served_at_search(registry.store, "iris", when, timedelta(seconds=60)))
        assert got == expected, f"served_at at generation {record.generation} with a gap"


def instants_across(
    records: list[HistoryRecord], rng: random.Random, every: int = 3
) -> list[datetime]:
    sample = records[::every]
    instants = [r.when for r in sample] + [r.when - timedelta(seconds=1) for r in sample]
    instants += [r.when + timedelta(microseconds=300) for r in records[1::7]]
    instants += [records[0].when - timedelta(days=1), records[-1].when + timedelta(days=1)]
    return instants + [
        records[0].when + (records[-1].when - records[0].when) * rng.random() for _ in range(20)
    ]


def history_reads(registry: Registry, run: Callable[[], object]) -> int:
    """How many history records ``run`` reads from the registry's store."""
    store = registry.store
    original = store.get
    reads = 0

    def counting_get(key: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += "/history/" in key
        return original(key, *args, **kwargs)

    store.get = counting_get  # type: ignore[method-assign]
    try:
        run()
    finally:
        del store.get
    return reads


def test_served_at_starts_from_gcs_record_times(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    rng = random.Random(11)
    records = synthetic_history(rng, 400)
    install(registry, records)
    grace = timedelta(seconds=60)

    def reads_at(when: datetime) -> int:
        return history_reads(
            registry, lambda: served_at_search(registry.store, "iris", when, grace)
        )

    unhinted = [reads_at(r.when) for r in records[::40]]
    ever_aliased(registry.store, "iris")  # what gc does: writes the index with record times
    for when in instants_across(records, rng):
        expected = as_set(served_at(records, when, grace))
        got = as_set(served_at_search(registry.store, "iris", when, grace))
        assert got == expected, f"served_at at {when} with gc's times: {got} != {expected}"
    hinted = [reads_at(r.when) for r in records[::40]]
    assert max(hinted) <= 4, f"with gc's times a search reads the few records it needs: {hinted}"
    assert sum(hinted) < sum(unhinted), f"the times save reads: {hinted} vs {unhinted}"


def _rewrite_index(registry: Registry, edit: Callable[[dict[str, Any]], None]) -> None:
    key = ever_aliased_key("iris")
    obj = registry.store.get(key)
    assert obj is not None
    data = json.loads(obj.data)
    edit(data)
    data["digest"] = HistoryIndex.body_digest(
        data["through"], data["txn"], data["versions"], data["stride"], data["times"]
    )
    registry.store.put(key, json.dumps(data).encode(), mode=OVERWRITE)


def _shift(data: dict[str, Any]) -> None:
    data["times"][0] += 86_400_000  # a day later: intact, and wrong


def _reverse(data: dict[str, Any]) -> None:
    data["times"] = [data["times"][0]] + [-d for d in data["times"][1:]]


def _zeros(data: dict[str, Any]) -> None:
    data["times"] = [0] * len(data["times"])


def _damage_chapters(registry: Registry, damage: str) -> None:
    store = registry.store
    keys = [info.key for info in store.list("iris/index/times/")]
    assert len(keys) == 4, f"fixture: 200 records make 4 time chapters, found {keys}"
    for key in keys:
        obj = store.get(key)
        assert obj is not None
        data = json.loads(obj.data)
        if damage == "chapters-missing":
            store.delete(key)
            continue
        if damage == "chapters-garbage":
            body = b"\x00not json"
        elif damage == "chapters-shifted":
            data["times"][0] += 3 * 86_400_000  # three days later: parses, and wrong
            body = json.dumps(data).encode()
        else:  # chapters-swapped: each holds another chapter's number
            data["first"] += 64
            body = json.dumps(data).encode()
        store.put(key, body, mode=OVERWRITE)


def _copy_foreign_hints(registry: Registry, tmp_path: Path) -> None:
    """Replace the hints with another, longer history's (a model deleted and recreated)."""
    other = Registry(tmp_path / "other", cache_dir=tmp_path / "oc", user="t")
    install(other, synthetic_history(random.Random(99), 300))
    ever_aliased(other.store, "iris")
    for info in registry.store.list("iris/index/"):
        registry.store.delete(info.key)
    for info in other.store.list("iris/index/"):
        obj = other.store.get(info.key)
        assert obj is not None
        registry.store.put(info.key, obj.data, mode=OVERWRITE)


INDEX_DAMAGE = [
    "shifted",
    "reversed",
    "zeros",
    "stale",
    "garbage",
    "missing",
    "flipped-time",
    "foreign",
]
CHAPTER_DAMAGE = ["chapters-missing", "chapters-garbage", "chapters-shifted", "chapters-swapped"]


@pytest.mark.parametrize("damage", INDEX_DAMAGE + CHAPTER_DAMAGE)
def test_a_wrong_time_hint_costs_reads_never_a_wrong_answer(tmp_path: Path, damage: str) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    rng = random.Random(12)
    records = synthetic_history(rng, 200)
    install(registry, records[:120] if damage == "stale" else records)
    ever_aliased(registry.store, "iris")
    key = ever_aliased_key("iris")
    if damage == "stale":
        install(registry, records[120:])  # 80 records after gc's cursor
    elif damage in ("shifted", "reversed", "zeros"):
        _rewrite_index(registry, {"shifted": _shift, "reversed": _reverse, "zeros": _zeros}[damage])
    elif damage == "garbage":
        registry.store.put(key, b"\x00not json", mode=OVERWRITE)
    elif damage == "missing":
        registry.store.delete(key)
    elif damage == "foreign":
        _copy_foreign_hints(registry, tmp_path)
    elif damage == "flipped-time":
        obj = registry.store.get(key)
        assert obj is not None
        data = json.loads(obj.data)
        data["times"][2] += 3_600_000  # digest not recomputed: gc would rebuild it
        registry.store.put(key, json.dumps(data).encode(), mode=OVERWRITE)
    else:
        _damage_chapters(registry, damage)
    grace = timedelta(seconds=rng.choice([0, 60, 7200]))
    for when in instants_across(records, rng, every=5):
        expected = as_set(served_at(records, when, grace))
        got = as_set(served_at_search(registry.store, "iris", when, grace))
        assert got == expected, f"served_at at {when} with a {damage} hint: {got} != {expected}"


@pytest.mark.parametrize("damage", ["chapters-missing", "chapters-garbage", "chapters-swapped"])
def test_gc_rebuilds_damaged_time_chapters(tmp_path: Path, damage: str) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    records = synthetic_history(random.Random(13), 230)
    install(registry, records[:200])
    ever_aliased(registry.store, "iris")
    _damage_chapters(registry, damage)
    install(registry, records[200:])  # gc's next run extends the partial chapter 3
    ever_aliased(registry.store, "iris")
    chapter, _ = read_chapter(registry.store, "iris", 3)
    expected = [(r.generation, to_ms(r.when)) for r in records[192:230]]
    assert chapter == expected, f"gc rebuilds the {damage} chapter it extends from its records"


def test_gc_replaces_another_historys_hints(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    records = synthetic_history(random.Random(15), 130)
    install(registry, records)
    _copy_foreign_hints(registry, tmp_path)  # chapters 0-4 of a 300-record history
    ever_aliased(registry.store, "iris")  # the index's txn is not this history's: rebuilt
    kept = [pair for c in range(3) for pair in read_chapter(registry.store, "iris", c)[0] or []]
    assert kept == [(r.generation, to_ms(r.when)) for r in records], (
        "gc must replace the chapters another history left (they exist: create fails)"
    )


def test_gc_index_records_every_time_and_appends_new_ones(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "c", user="t")
    records = synthetic_history(random.Random(14), 150)
    install(registry, records[:100])
    ever_aliased(registry.store, "iris")
    install(registry, records[100:])
    ever_aliased(registry.store, "iris")  # folds in only the records after its cursor
    anchors = history_anchors(registry.store, "iris")
    expected = [(g, to_ms(records[g - 1].when)) for g in anchor_generations(150)]
    assert anchors == expected, "the index keeps every 64th record's time and the last's"
    kept = [pair for c in range(3) for pair in read_chapter(registry.store, "iris", c)[0] or []]
    assert kept == [(r.generation, to_ms(r.when)) for r in records], (
        "the chapters keep every record's time, the new ones appended"
    )


# -- rollback -----------------------------------------------------------------------------


def expected_rollback(registry: Registry) -> str:
    """The version a full walk of the history names (the original rule)."""
    current = registry.aliases("iris")
    for record in reversed(all_records(registry)):
        before = record.previous.active if record.previous else None
        if record.state.active == current.active and before != current.active:
            assert before is not None
            return before
    raise AssertionError("nothing to roll back to")


def test_rollback_reads_the_record_its_pointer_names(registry: Registry) -> None:
    release_cycles(registry, 5)
    current = registry.aliases("iris")
    assert current.trusted_active_since() is not None, "every change keeps the pointer"
    target = expected_rollback(registry)
    assert registry.rollback("iris").active == target


def test_rollback_without_pointers_walks_back(registry: Registry) -> None:
    release_cycles(registry, 5)
    target = expected_rollback(registry)
    as_older_writer(registry)
    assert registry.aliases("iris").trusted_active_since() is None
    assert registry.rollback("iris").active == target, "records of older writers: walk"
    back = registry.rollback("iris").active
    assert back == registry.history("iris")[-3].state.active, "twice returns to the start"


def test_a_pointer_copied_by_an_older_writer_is_not_trusted(registry: Registry) -> None:
    release_cycles(registry, 3)
    # An older writer changes active and copies the pointer fields forward unchanged.
    current = registry.aliases("iris")
    other = next(v for v in VERSIONS[:4] if v != current.active)
    data = json.loads(current.to_json())
    data.update(active=other, canary=None, ratio=0.0, generation=current.generation + 1)
    state = Aliases.model_validate(data)
    record = HistoryRecord(
        generation=state.generation,
        action="set_active",
        previous=current,
        state=state,
        who="old",
        when=datetime.now(UTC),
    )
    registry.store.put(history_key("iris", state.generation), record.to_json())
    registry.store.put(aliases_key("iris"), state.to_json(), mode=OVERWRITE)
    assert registry.aliases("iris").trusted_active_since() is None, "stamp no longer matches"
    assert registry.rollback("iris").active == current.active


def test_a_pointer_to_the_wrong_record_costs_a_walk_not_a_wrong_answer(
    registry: Registry,
) -> None:
    release_cycles(registry, 5)
    target = expected_rollback(registry)
    current = registry.aliases("iris")
    forged = current.model_copy(update={"active_since": 1, "active_since_at": current.generation})
    registry.store.put(aliases_key("iris"), forged.to_json(), mode=OVERWRITE)
    assert registry.rollback("iris").active == target


# -- gc's index of versions ever live -----------------------------------------------------


def protected(registry: Registry) -> set[str]:
    return set(registry.gc("iris", keep_last=0).protected_versions)


def test_gc_index_is_written_and_followed(registry: Registry) -> None:
    release_cycles(registry, 2)
    first = protected(registry)
    assert registry.store.get(ever_aliased_key("iris")) is not None, "the index is written"
    assert protected(registry) == first, "the same answer from the index"
    registry.start_canary("iris", "1.3.0" if "1.3.0" not in first else "1.2.0", 0.1)
    later = protected(registry)
    assert later > first, "changes after the index's cursor are folded in"


@pytest.mark.parametrize(
    "damage",
    ["missing", "garbage", "edited-versions", "other-history", "cursor-ahead"],
)
def test_gc_index_damaged_is_rebuilt(registry: Registry, damage: str) -> None:
    release_cycles(registry, 4)
    truth = protected(registry)
    key = ever_aliased_key("iris")
    obj = registry.store.get(key)
    assert obj is not None
    data = json.loads(obj.data)
    if damage == "missing":
        registry.store.delete(key)
    elif damage == "garbage":
        registry.store.put(key, b"\x00not json", mode=OVERWRITE)
    elif damage == "edited-versions":
        data["versions"] = []  # a flipped byte or a bad edit: the digest no longer matches
        registry.store.put(key, json.dumps(data).encode(), mode=OVERWRITE)
    else:
        # Intact (the digest matches) but not about this history: made before the model was
        # deleted and recreated, or a cursor beyond the newest record.
        if damage == "other-history":
            data["txn"] = "0" * 32
            data["versions"] = []
        else:
            data["through"] = 10_000
        data["digest"] = HistoryIndex.body_digest(
            data["through"], data["txn"], data["versions"], data["stride"], data["times"]
        )
        registry.store.put(key, json.dumps(data).encode(), mode=OVERWRITE)
    assert protected(registry) == truth, f"gc with a {damage} index must protect the same"
    repaired = registry.store.get(key)
    assert repaired is not None and json.loads(repaired.data)["versions"] == sorted(truth)
