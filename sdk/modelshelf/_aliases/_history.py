"""Reading the alias history by generation number, never by listing it all.

History keys are ``history/{generation:012d}.json`` and the log has no gaps (invariant 3),
so a record is addressed by its number. The newest number is ``aliases.json``'s generation,
or one more when a claimed record was not installed yet; one listing that starts after the
installed record finds that. From there:

- the newest N records are N parallel GETs (:func:`read_history` with ``limit``);
- ``served_at`` searches generations by time (records are claimed in time order), starting
  from gc's record times (``_index``) when there are some;
- ``rollback`` follows the back-pointer each state carries (``Aliases.active_since``) and
  walks back in parallel batches only where a writer did not maintain it.

See docs/design.md, "Scale: indexes and hints".
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from .._card import utcnow
from .._errors import CorruptObjectError, InvalidAliasesError, InvalidInputError, KeyNotFoundError
from .._refs import check_name
from .._stores import Store
from ..layout import aliases_key, history_key, history_prefix
from ._index import chapter_of, history_anchors, read_chapter, to_ms
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


def _installed_generation(store: Store, name: str) -> int:
    """``aliases.json``'s generation (0: missing or unreadable)."""
    try:
        obj = store.get(aliases_key(name))
        assert obj is not None
        return parse_aliases(obj.data).generation
    except (KeyNotFoundError, InvalidAliasesError):
        return 0  # no usable pointer: a listing from it starts at the beginning


def newest_generation(store: Store, name: str, installed: int | None = None) -> int:
    """The newest history generation of ``name`` (0 when there is none).

    Args:
        store: The registry's store.
        name: The model.
        installed: ``aliases.json``'s generation when the caller has just read it.
    """
    if installed is None:
        installed = _installed_generation(store, name)
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


# The served_at search reads up to this many records per round, in parallel. Round trips
# are what a remote store makes expensive, but each request costs CPU too: on SeaweedFS
# with client and server sharing 2 cores, 8 parallel GETs took as long as 8 sequential
# ones. With 4, a search over 10,000 records makes about 15 requests in 6 round trips;
# with 8, about 21 in 5 to 6 (docs/design.md, "Scale: indexes and hints").
_PROBES = 4
# An interpolating round that narrows its bracket less than this-fold guessed badly: the
# next one splits evenly, so a history of any shape still narrows about _PROBES-fold at
# least every second round.
_NARROWED = 4
# With kept times further apart than one record, a time interpolated between two of them
# is off by a record or so: the first read takes one before and two after it.
_BEFORE, _AFTER = 1, 2


@dataclass
class _Aim:
    """One instant being searched for, and what the last round guessed about it."""

    when: datetime
    unread: int = 0  # of its bracket, before the last round
    width: int = 0  # of that bracket, hi - lo
    guess: float | None = None  # the generation the last round interpolated, if it did


class _Search:
    """Records read so far during one search, by generation."""

    def __init__(self, store: Store, name: str, newest: int) -> None:
        self.store, self.name, self.newest = store, name, newest
        self.known: dict[int, HistoryRecord] = {}
        self.missing: set[int] = set()
        # How far interpolated guesses have landed from the answer, in units of the
        # square root of their bracket's width (None: no guess checked yet).
        self.roughness: float | None = None

    def fetch(self, generations: Iterable[int]) -> None:
        """Read those of ``generations`` not read yet, in one parallel round."""
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

    def bracket(self, target: datetime) -> tuple[int, int]:
        """The newest read record at or before ``target`` (0: none) and the next read
        record after it (``newest + 1``: none); every generation between is unread or
        missing.

        Taken from the records read rather than narrowed round by round, so records whose
        times are out of order (writers' clocks disagree) still give an ordered bracket.
        """
        lo = max((g for g, r in self.known.items() if r.when <= target), default=0)
        hi = min((g for g in self.known if g > lo), default=self.newest + 1)
        return lo, hi

    def unread(self, lo: int, hi: int) -> int:
        """How many generations strictly between ``lo`` and ``hi`` are still unread."""
        return hi - lo - 1 - sum(1 for g in self.missing if lo < g < hi)

    def nearest_unread(self, generation: int, lo: int, hi: int) -> int:
        """``generation`` or, when it is missing, the closest unread one inside the bracket."""
        for distance in range(hi - lo):
            for g in (generation - distance, generation + distance):
                if lo < g < hi and g not in self.missing:
                    return g
        raise AssertionError("a bracket without unread generations has no probes")


def _spread(first: int, last: int, count: int) -> list[int]:
    """``count`` generations spread evenly over ``first..last``, or all of them if fewer."""
    if last - first + 1 <= count:
        return list(range(first, last + 1))
    return sorted({first + round(i * (last - first) / (count - 1)) for i in range(count)})


def _probes(search: _Search, lo: int, hi: int, aims: list[_Aim]) -> set[int]:
    """The records one round reads to narrow the bracket ``(lo, hi)`` around ``aims``;
    notes in each aim where it guessed."""
    unread = search.unread(lo, hi)
    missed = [a.guess for a in aims if a.guess is not None and unread * _NARROWED > a.unread]
    for aim in aims:
        aim.unread, aim.width, aim.guess = unread, hi - lo, None
    if unread <= _PROBES:
        return {g for g in range(lo + 1, hi) if g not in search.missing}
    t_lo, t_hi = search.when(lo), search.when(hi)
    if missed or t_lo is None or t_hi is None or t_hi <= t_lo:
        # Nothing to interpolate between (a virtual end, equal times), or the last guess
        # missed: split evenly, whatever the times. A guess misses most when the bracket
        # holds one quiet spell far longer than the rest, next to the end the instant
        # fell towards; the record beside that end settles it.
        guards = []
        if missed and missed[0] >= hi:
            guards = [lo + 1]
        elif missed and missed[0] <= lo:
            guards = [hi - 1]
        step = (hi - lo) / (_PROBES - len(guards) + 1)
        planned = guards + [lo + round(step * (i + 1)) for i in range(_PROBES - len(guards))]
    else:
        # Records are claimed in time order, so a time maps to a generation by
        # interpolation. A history's pace drifts like a random walk, so over n records a
        # guess is typically off by about sqrt(n) / 2 and rarely by more than sqrt(n):
        # the probes cover that much on either side (at least two records), or twice what
        # the guesses so far missed by when they did better.
        for aim in aims:
            aim.guess = lo + (aim.when - t_lo) / (t_hi - t_lo) * (hi - lo)
        rough = 0.5 if search.roughness is None else search.roughness
        reach = math.sqrt(hi - lo) * min(1.0, 2 * rough)
        guesses = [a.guess for a in aims if a.guess is not None]
        first = max(lo + 1, math.floor(min(guesses) - max(reach, 2)))
        last = min(hi - 1, math.ceil(max(guesses) + max(reach, 2)))
        planned = _spread(first, last, _PROBES)
    return {search.nearest_unread(g, lo, hi) for g in planned}


def _last_at_or_before(
    search: _Search, targets: list[datetime], seeds: Iterable[int] = ()
) -> list[int]:
    """For each target, the newest generation whose record's time is at or before it (0:
    none), searched for together in parallel rounds.

    Records are claimed in generation order, each stamped with its writer's clock, so
    their times ascend (clocks that disagree make the answer approximate by that much, as
    for any reader of the log). After reading both ends, each round reads up to _PROBES
    records of each target's bracket at once: around the time-interpolated guess, or
    evenly when the last guess did not narrow the bracket _NARROWED-fold. So n records
    cost at most about 2 * log(n) / log(_PROBES + 1) rounds, and a history of bursts
    between quiet spells about four at 1,000 or 10,000 records. A missing record (only a
    hostile delete makes one) is stepped over.

    ``seeds`` (the generations a hint names as holding the answers) are read first; when
    they do not bracket every target, the search goes on from the records read.
    """
    near = sorted(set(seeds))
    if near:
        search.fetch(near)
    if not near or any(search.unread(*search.bracket(t)) > 0 for t in targets):
        search.fetch(sorted({1, search.newest}))
    aims = [_Aim(t) for t in targets]
    while True:
        groups: dict[tuple[int, int], list[_Aim]] = {}
        for aim in aims:
            lo, hi = search.bracket(aim.when)
            if search.unread(lo, hi) > 0:
                groups.setdefault((lo, hi), []).append(aim)
        if not groups:
            return [search.bracket(t)[0] for t in targets]
        probes: set[int] = set()
        for (lo, hi), members in groups.items():
            probes |= _probes(search, lo, hi, members)
        search.fetch(sorted(probes))
        for aim in aims:
            if aim.guess is not None:
                lo, hi = search.bracket(aim.when)
                missed_by = max(0.0, lo - aim.guess, aim.guess - hi)
                rough = missed_by / math.sqrt(aim.width)
                search.roughness = max(rough, search.roughness or 0.0)


def _kept_at_or_before(search: _Search, generation: int) -> int:
    """The newest record at or before ``generation`` that no read record supersedes (0:
    none), reading back in growing batches past superseded or missing ones."""
    batch = 4
    while generation >= 1:
        if generation not in search.known and generation not in search.missing:
            search.fetch(range(max(1, generation - batch + 1), generation + 1))
            batch = min(batch * 4, 256)
            continue
        superseded = {s.generation for r in search.known.values() for s in r.supersedes}
        if generation in search.known and generation not in superseded:
            return generation
        generation -= 1
    return 0


def _chapters(anchors: list[tuple[int, int]], targets: list[datetime]) -> list[int]:
    """The time chapters around ``targets``, by the index's kept times."""
    times = [t for _, t in anchors]
    found = set()
    for target in targets:
        i = bisect.bisect_right(times, to_ms(target)) - 1
        found.add(chapter_of(anchors[i][0]) if i >= 0 else 0)
    return sorted(found)


def _hinted_generations(
    anchors: list[tuple[int, int]], targets: list[datetime], newest: int
) -> list[int]:
    """Where gc's kept times say the answer is: the last record at or before each target
    and the one after it (interpolated where the kept times are further apart than one
    record, a chapter missing), and those between."""
    generations = [g for g, _ in anchors]
    times = [t for _, t in anchors]
    near: set[int] = set()
    for target in targets:
        ms = to_ms(target)
        i = bisect.bisect_right(times, ms) - 1
        if i < 0:
            near.add(1)  # before the first record
            continue
        if i + 1 == len(anchors):
            near.update((generations[i], generations[i] + 1))  # at or after gc's cursor
            continue
        g0, g1, t0, t1 = generations[i], generations[i + 1], times[i], times[i + 1]
        guess = math.floor(g0 + (ms - t0) / (t1 - t0) * (g1 - g0)) if t1 > t0 else g0
        near.update(range(max(g0, guess - _BEFORE), min(g1, guess + _AFTER) + 1))
    if near and max(near) - min(near) < 64:
        near.update(range(min(near), max(near)))  # the records between: read anyway
    keep = range(1, newest + 1)
    return sorted(g for g in near if g in keep)


def served_at_search(
    store: Store, name: str, when: datetime | str, grace: timedelta
) -> list[ServedVersion]:
    """:func:`served_at` over only the records around ``when``, found by searching.

    Reads the newest generation and gc's record times beside it, then the records those
    times name, then, only where that did not settle it, a few records per round in
    parallel until it holds every state live at ``when`` (docs/design.md, "Scale: indexes
    and hints"). The times are a hint: the answer rests on the records read. Superseded
    records are left out, missing and corrupt ones stepped over, as a full read of the
    history does.

    Args:
        store: The registry's store.
        name: The model.
        when: The instant: a datetime, an ISO 8601 string or ``"now"``.
        grace: How long a server may keep serving a replaced state.

    Returns:
        The versions that could have served at ``when``, as :func:`served_at` gives them.

    Raises:
        InvalidNameError: ``name`` is not a model name.
        InvalidInputError: ``when`` is not a time.
    """
    check_name(name)
    when = parse_instant(when)
    # A state is live at `when` if its record is at or before it and the next one after
    # `when - grace`: the states from the one in force at `when - grace` to the one at
    # `when`, both searched for in the same rounds.
    targets = [when, when - grace]
    # gc's record times, only a hint: its index beside aliases.json, then the chapters
    # around the targets beside the listing that finds the newest generation.
    with ThreadPoolExecutor(2) as pool:
        hinted = pool.submit(history_anchors, store, name)
        installed = _installed_generation(store, name)
        anchors = hinted.result() or []
        pages = [pool.submit(read_chapter, store, name, c) for c in _chapters(anchors, targets)]
        newest = newest_generation(store, name, installed=installed)
        times = dict(anchors)
        for page in pages:
            times.update(page.result()[0] or [])
    if newest == 0:
        return []
    search = _Search(store, name, newest)
    seeds = _hinted_generations(sorted(times.items()), targets, newest) if times else []
    last, settled = _last_at_or_before(search, targets, seeds)
    if last == 0:
        return []
    settled = min(settled, last)  # clocks out of order, or a negative grace
    search.fetch(range(max(1, settled), last + 1))  # usually read already
    # The state in force at `when - grace` is the newest one installed by then: a
    # superseded record there was never served.
    first = _kept_at_or_before(search, settled)
    # The record after `last` ends its state (records between are missing).
    after = search.bracket(when)[1]
    known = _without_superseded(search.known)
    window = [known[g] for g in range(first, after + 1) if g in known]
    return served_at(window, when, grace)
