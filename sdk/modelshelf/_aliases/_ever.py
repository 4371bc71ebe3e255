"""gc's record of every version ever ``active`` or ``canary``, kept up to date incrementally.

``{model}/index/ever-aliased.json`` holds the versions seen in history records 1..``through``,
the time of every 64th of those records, the ``txn`` of record ``through`` and the sha256 of its own
content. It is a hint
(docs/design.md, "Scale: indexes and hints"): trusted only when its digest matches, record
``through`` exists with that ``txn`` and ``through`` is not above the newest generation; then
only the records after ``through`` are read. Anything else rebuilds it from every record.
Writing it back is best effort: a lost race or a refused write leaves the next run to do it.
The same goes for ``{model}/index/times/{chapter:08d}.json``, each record's time by chapters
of 64, which gc extends with the records it folds in.
``served_at`` reads the times (``_index.history_anchors``) to know where to start its search,
and checks them against the records it reads (``_history.served_at_search``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .._card import canonical_json
from .._errors import KeyNotFoundError, PreconditionFailedError, StoreError
from .._refs import check_name
from .._stores import CREATE, IfMatch, Store
from ..layout import ever_aliased_key, times_chapter_key
from ._history import newest_generation, read_record, read_records
from ._index import (
    CHAPTER,
    STRIDE,
    HistoryIndex,
    anchor_generations,
    chapter_body,
    chapter_of,
    deltas_of,
    read_chapter,
    read_index,
    to_ms,
)
from ._log import read_aliases
from ._state import Aliases, HistoryRecord

__all__ = ["ever_aliased"]


def _roles(state: Aliases) -> set[str]:
    return {v for v in (state.active, state.canary) if v}


def _anchor_times(times: dict[int, int], through: int) -> list[int]:
    """The index's times for records 1..``through``; an unreadable record takes the time
    before it (only a hint for the search)."""
    out: list[int] = []
    for generation in anchor_generations(through):
        out.append(times.get(generation, out[-1] if out else 0))
    return out


def ever_aliased(store: Store, name: str) -> set[str]:
    """Every version that was ever ``active`` or ``canary`` of ``name``.

    Raises:
        InvalidAliasesError: ``aliases.json`` or a history record is corrupt.
    """
    check_name(name)
    current, _ = read_aliases(store, name)
    newest = newest_generation(store, name, installed=current.generation)
    index, etag = read_index(store, name)
    found: set[str] = set()
    times: dict[int, int] = {}
    start = 1
    trusted = False
    if index is not None and index.stride == STRIDE and 1 <= index.through <= newest:
        anchor = read_record(store, name, index.through)
        if anchor is not None and anchor.txn == index.txn:
            found = set(index.versions)
            times = dict(index.anchors())
            start = index.through + 1
            trusted = True
    records = read_records(store, name, range(start, newest + 1))
    times.update((g, to_ms(r.when)) for g, r in records.items())
    for record in records.values():
        # previous too: a record that cannot be read still has its state in the next
        # record's previous (docs/design.md, invariant 3).
        found |= _roles(record.state)
        if record.previous is not None:
            found |= _roles(record.previous)
    stale = not trusted or index is None or newest != index.through
    if stale and newest in records:
        versions = sorted(found)
        txn = records[newest].txn
        deltas = deltas_of(_anchor_times(times, newest))
        fresh = HistoryIndex(
            through=newest,
            txn=txn,
            versions=versions,
            stride=STRIDE,
            times=deltas,
            digest=HistoryIndex.body_digest(newest, txn, versions, STRIDE, deltas),
        )
        try:
            store.put(
                ever_aliased_key(name),
                canonical_json(fresh.model_dump(mode="json")),
                mode=CREATE if etag is None else IfMatch(etag),
            )
        except (PreconditionFailedError, StoreError):
            pass  # only a hint: another run wrote one, or this role may not write index/
        _write_chapters(store, name, records, start, newest)
    return found | _roles(current)


def _write_chapters(
    store: Store, name: str, records: dict[int, HistoryRecord], start: int, newest: int
) -> None:
    """Write the time chapters that records ``start``..``newest`` fall in (best effort)."""
    chapters = range(chapter_of(start), chapter_of(newest) + 1)

    def write(chapter: int) -> None:
        first = chapter * CHAPTER + 1
        last = min(newest, first + CHAPTER - 1)
        new = (records.get(g) for g in range(max(first, start), last + 1))
        known = {r.generation: to_ms(r.when) for r in new if r is not None}
        etag = None
        if first < start:  # records from before this run: extend what is stored
            stored, etag = read_chapter(store, name, chapter)
            if stored is not None and len(stored) == start - first:
                known.update(stored)
            else:  # missing or damaged: rebuilt from its records
                older = read_records(store, name, range(first, start))
                known.update((g, to_ms(r.when)) for g, r in older.items())
        # An unreadable record takes the time before it: only a hint for the search.
        times: list[int] = []
        for g in range(first, last + 1):
            times.append(known.get(g, times[-1] if times else min(known.values(), default=0)))
        _put_hint(store, times_chapter_key(name, chapter), chapter_body(chapter, times), etag)

    if len(chapters) == 1:
        write(chapters[0])
    else:
        with ThreadPoolExecutor(min(16, len(chapters))) as pool:
            list(pool.map(write, chapters))


def _put_hint(store: Store, key: str, body: bytes, etag: str | None) -> None:
    """Create ``key``, or replace it at ``etag``; a hint found there already (left by an
    index since rebuilt) is replaced at its own etag. Failures are ignored: a hint."""
    try:
        store.put(key, body, mode=CREATE if etag is None else IfMatch(etag))
    except PreconditionFailedError:
        if etag is not None:
            return  # another run replaced it first
        try:
            obj = store.get(key)
            assert obj is not None
            if obj.data != body:
                store.put(key, body, mode=IfMatch(obj.etag))
        except (KeyNotFoundError, PreconditionFailedError, StoreError):
            pass
    except StoreError:
        pass  # this role may not write index/
