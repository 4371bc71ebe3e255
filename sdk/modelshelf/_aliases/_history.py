"""Reading the alias history by generation number, never by listing it all.

History keys are ``history/{generation:012d}.json`` and the log has no gaps (invariant 3),
so a record is addressed by its number. The newest number is ``aliases.json``'s generation,
or one more when a claimed record was not installed yet; one listing that starts after the
installed record finds that. From there:

- the newest N records are N parallel GETs (:func:`read_history` with ``limit``);
- ``served_at`` searches generations by time (records are claimed in time order);
- ``rollback`` follows the back-pointer each state carries (``Aliases.active_since``) and
  walks back in parallel batches only where a writer did not maintain it.

See docs/design.md, "Scale: indexes and hints".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from .._card import utcnow
from .._errors import CorruptObjectError, InvalidAliasesError, InvalidInputError, KeyNotFoundError
from .._refs import check_name
from .._stores import Store
from ..layout import aliases_key, history_key, history_prefix
from ._state import Aliases, HistoryRecord, ServedVersion, parse_aliases

__all__ = [
    "find_active_change",
    "iter_history_newest_first",
    "newest_generation",
    "parse_instant",
    "read_history",
    "read_records",
    "served_at",
    "read_record",
    "served_at_search",
]

_WORKERS = 16
# Readers say here which corrupt record they skipped (the CLI prints it).
_SKIPPED = logging.getLogger("modelshelf.skipped")


def read_record(store: Store, name: str, generation: int) -> HistoryRecord | None:
    """One history record, checked against its key; ``None`` when absent.

    Raises:
        CorruptObjectError: The record does not parse, or carries another generation
            than its key (docs/design.md, "Reading stored objects").
    """
    key = history_key(name, generation)
    try:
        obj = store.get(key)
    except KeyNotFoundError:
        return None
    assert obj is not None
    source = f"{store.uri}/{key}"
    try:
        record = HistoryRecord.model_validate_json(obj.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise CorruptObjectError(
            f"the history record {source} is corrupt ({where}: {first['msg']})"
        ) from None
    if record.generation != generation or record.state.generation != generation:
        raise CorruptObjectError(
            f"the history record {source} is corrupt: it says generation "
            f"{record.generation} (state {record.state.generation}), its key {generation}"
        )
    return record


def _readable(store: Store, name: str, generation: int) -> HistoryRecord | None:
    try:
        return read_record(store, name, generation)
    except CorruptObjectError as exc:
        _SKIPPED.warning("skipped %s", exc)
        return None


def read_records(store: Store, name: str, generations: Iterable[int]) -> dict[int, HistoryRecord]:
    """The records of ``generations`` that exist and parse, read in parallel.

    A corrupt record is left out and logged to ``modelshelf.skipped``.
    """
    wanted = sorted(set(generations))
    if len(wanted) <= 1:
        found = [(g, _readable(store, name, g)) for g in wanted]
    else:
        with ThreadPoolExecutor(min(_WORKERS, len(wanted))) as pool:
            found = list(
                zip(wanted, pool.map(lambda g: _readable(store, name, g), wanted), strict=True)
            )
    return {g: r for g, r in found if r is not None}


def _without_superseded(records: dict[int, HistoryRecord]) -> dict[int, HistoryRecord]:
    """Drop the records a later record superseded (invariant 3): never installed."""
    superseded = {s.generation for r in records.values() for s in r.supersedes}
    return {g: r for g, r in records.items() if g not in superseded}


def _generation_of(name: str, key: str) -> int | None:
    stem = key[len(history_prefix(name)) :].removesuffix(".json")
    return int(stem) if stem.isdigit() else None


def newest_generation(store: Store, name: str, installed: int | None = None) -> int:
    """The newest history generation of ``name`` (0 when there is none).

    Args:
        store: The registry's store.
        name: The model.
        installed: ``aliases.json``'s generation when the caller has just read it.
    """
    if installed is None:
        try:
            obj = store.get(aliases_key(name))
            assert obj is not None
            installed = parse_aliases(obj.data).generation
        except (KeyNotFoundError, InvalidAliasesError):
            installed = 0  # no usable pointer: the listing below starts at the beginning
    # A claimed record not installed yet (invariant 3) sorts after the installed one; so
    # does everything, should aliases.json be missing.
    after = history_key(name, installed) if installed else None
    newest = installed
    for info in store.list(history_prefix(name), start_after=after):
        generation = _generation_of(name, info.key)
        if generation is not None and generation > newest:
            newest = generation
    return newest


def read_history(store: Store, name: str, *, limit: int | None = None) -> list[HistoryRecord]:
    """Alias changes of ``name``, oldest first: all, or the newest ``limit``."""
    check_name(name)
    newest = newest_generation(store, name)
    first = 1 if limit is None else max(1, newest - limit + 1)
    records = _without_superseded(read_records(store, name, range(first, newest + 1)))
    # A record is superseded only by a later one (invariant 3), so the window down to the
    # newest holds every record that could drop one of its own; when some were dropped (or
    # are missing), read further back until the window holds `limit` records again.
    while limit is not None and len(records) < limit and first > 1:
        low = max(1, first - (limit - len(records)))
        older = read_records(store, name, range(low, first))
        records = _without_superseded({**older, **records})
        first = low
    kept = sorted(records.items())
    return [r for _, r in (kept if limit is None else kept[-limit:])]


def iter_history_newest_first(
    store: Store, name: str, *, start: int | None = None
) -> Iterator[HistoryRecord]:
    """History records newest first (or from ``start`` down), read lazily in growing
    parallel batches."""
    check_name(name)
    generation = newest_generation(store, name) if start is None else start
    batch = 4
    superseded: set[int] = set()
    while generation >= 1:
        low = max(1, generation - batch + 1)
        records = read_records(store, name, range(low, generation + 1))
        for g in range(generation, low - 1, -1):
            if g in records and g not in superseded:
                superseded.update(s.generation for s in records[g].supersedes)
                if g not in superseded:
                    yield records[g]
        generation = low - 1
        batch = min(batch * 4, 256)


def _is_change_to(record: HistoryRecord, active: str | None) -> bool:
    before = record.previous.active if record.previous else None
    return record.state.active == active and before != active


def find_active_change(store: Store, name: str, current: Aliases) -> HistoryRecord | None:
    """The record whose change made ``current.active`` active (``None``: not found).

    Follows the back-pointer when ``current`` carries a trusted one and the record it names
    confirms it; otherwise walks back from the newest record, jumping as soon as a record
    carries a trusted pointer. A pointer that does not check out costs a walk, never a
    wrong answer.
    """
    confirmed = _follow(store, name, current.trusted_active_since(), current.active)
    if confirmed is not None:
        return confirmed
    for record in iter_history_newest_first(store, name, start=current.generation):
        if _is_change_to(record, current.active):
            return record
        if record.state.active == current.active:
            jump = record.state.trusted_active_since()
            if jump is not None and jump < record.generation:
                confirmed = _follow(store, name, jump, current.active)
                if confirmed is not None:
                    return confirmed
    return None


def _follow(
    store: Store, name: str, pointer: int | None, active: str | None
) -> HistoryRecord | None:
    """The record ``pointer`` names when it really is the change that made ``active``."""
    if pointer is None:
        return None
    record = _readable(store, name, pointer)
    if record is None or record.generation != pointer or not _is_change_to(record, active):
        return None
    return record


def parse_instant(when: datetime | str) -> datetime:
    """An aware UTC instant from a datetime, an ISO 8601 string or ``"now"``.

    Naive datetimes and strings without an offset are taken as UTC.

    Raises:
        InvalidInputError: A string that is neither ``now`` nor ISO 8601, or another type.
    """
    if isinstance(when, str):
        text = when.strip()
        if text.lower() == "now":
            return utcnow()
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInputError(
                f"{when!r} is not a time: give ISO 8601 such as 2026-05-04T10:15:00Z "
                "(no offset means UTC), or 'now'"
            ) from None
    if not isinstance(when, datetime):
        raise InvalidInputError(
            f"a time must be a datetime, an ISO 8601 string or 'now', not {type(when).__name__}"
        )
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def served_at(
    records: list[HistoryRecord], when: datetime | str, grace: timedelta
) -> list[ServedVersion]:
    """Versions that could have served at ``when``, given consecutive records.

    A state is live from its record's time until the next record's time plus ``grace``
    (the fleet's poll interval plus load time: a server keeps the old state that long). The
    last record of ``records`` is taken as the newest (live until now).
    """
    when = parse_instant(when)
    found: dict[tuple[str, str], ServedVersion] = {}
    for i, record in enumerate(records):
        start = record.when
        end = records[i + 1].when + grace if i + 1 < len(records) else None
        if start <= when and (end is None or when < end):
            state = record.state
            if state.active:
                found.setdefault(
                    (state.active, "active"),
                    ServedVersion(
                        version=state.active,
                        role="active",
                        generation=state.generation,
                        ratio=1.0 - state.ratio,
                    ),
                )
            if state.canary and state.ratio > 0:
                found.setdefault(
                    (state.canary, "canary"),
                    ServedVersion(
                        version=state.canary,
                        role="canary",
                        generation=state.generation,
                        ratio=state.ratio,
                    ),
                )
    return list(found.values())


class _Search:
    """Records read so far during one search, by generation."""

    def __init__(self, store: Store, name: str, newest: int) -> None:
        self.store, self.name, self.newest = store, name, newest
        self.known: dict[int, HistoryRecord] = {}
        self.missing: set[int] = set()

    def fetch(self, generations: Iterable[int]) -> None:
        wanted = [
            g
            for g in generations
            if 1 <= g <= self.newest and g not in self.known and g not in self.missing
        ]
        found = read_records(self.store, self.name, wanted)
        self.known.update(found)
        self.missing.update(g for g in wanted if g not in found)

    def when(self, generation: int) -> datetime | None:
        record = self.known.get(generation)
        return record.when if record else None


def _last_at_or_before(search: _Search, when: datetime) -> int:
    """The newest generation whose record's time is at or before ``when`` (0: none).

    Records are claimed in generation order, each stamped with its writer's clock, so
    their times ascend (clocks that disagree make the answer approximate by that much, as
    for any reader of the log). After reading both ends, each round reads a few records
    around the time-interpolated guess in parallel; when an interpolation round does not
    halve the interval, the next round bisects, so a skewed history costs at most about
    twice log2(n) rounds, and a history written at a steady pace about two.
    """
    lo, hi = 0, search.newest + 1  # invariant: time(lo) <= when < time(hi); 0 and n+1 virtual
    probes = sorted({1, search.newest})
    interpolated = False
    while True:
        span = hi - lo
        search.fetch(probes)
        if any(g in search.missing for g in probes):
            # A gap (a deleted record; the protocol leaves none): read the rest of the interval.
            probes = list(range(lo + 1, hi))
            search.fetch(probes)
            for g in probes:
                t = search.when(g)
                if t is not None and t <= when:
                    lo = g
            return lo
        for g in probes:
            t = search.when(g)
            assert t is not None
            if t > when:
                hi = min(hi, g)
            else:
                lo = max(lo, g)
        if hi - lo <= 1:
            return lo
        t_lo = search.when(lo) if lo >= 1 else None
        t_hi = search.when(hi) if hi <= search.newest else None
        halved = (hi - lo) * 2 <= span
        if (halved or not interpolated) and t_lo is not None and t_hi is not None and t_hi > t_lo:
            guess = lo + int((when - t_lo) / (t_hi - t_lo) * (hi - lo))
            probes = sorted({min(max(g, lo + 1), hi - 1) for g in range(guess - 1, guess + 3)})
            interpolated = True
        else:
            probes = [(lo + hi) // 2]
            interpolated = False


def served_at_search(
    store: Store, name: str, when: datetime | str, grace: timedelta
) -> list[ServedVersion]:
    """:func:`served_at` over only the records around ``when``, found by searching."""
    check_name(name)
    when = parse_instant(when)
    newest = newest_generation(store, name)
    if newest == 0:
        return []
    search = _Search(store, name, newest)
    last = _last_at_or_before(search, when)
    if last == 0:
        return []
    # States before `last` are still live when the record after them is within grace.
    first = last
    search.fetch([last, last + 1])
    next_when = search.when(last)  # the time of the record after the candidate below
    candidate = last - 1
    while candidate >= 1 and next_when is not None and next_when + grace > when:
        if candidate not in search.known and candidate not in search.missing:
            search.fetch(range(max(1, candidate - 3), candidate + 1))
        superseded = {s.generation for r in search.known.values() for s in r.supersedes}
        if candidate in search.known and candidate not in superseded:
            first = candidate  # a missing or superseded record is stepped over
            next_when = search.when(candidate)
        candidate -= 1
    known = _without_superseded(search.known)
    window = [known[g] for g in range(first, last + 2) if g in known]
    return served_at(window, when, grace)
