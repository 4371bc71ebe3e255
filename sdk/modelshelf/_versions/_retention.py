"""Condemnations: how gc announces the blobs it is about to delete, and how writers look.

The protocol is docs/design.md, "Retention" (mark, wait, re-read, sweep) and invariant 13:
a gc run creates ``{model}/gc/{time}-{random}.json`` naming its candidate blobs, waits a grace
period, re-reads, and deletes. A writer that is about to commit something needing blobs
(a push's manifest, an alias change's history record) first lists the condemnations
(:class:`CondemnationGuard`): none naming its blobs means it checks that they are there
(after the listing: a run may have ended just before it) and has half a grace from the
listing to commit; one naming them means it waits until that run is over first.
Durations are only ever measured on one process's monotonic clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._card import canonical_json, utcnow
from .._errors import CommitStateUnknownError, KeyNotFoundError
from .._stores import CREATE, ObjectInfo, Store
from ..layout import condemnation_key, gc_prefix

__all__ = [
    "Condemnation",
    "CondemnationGuard",
    "LiveCondemnation",
    "read_condemnations",
    "stale",
    "write_condemnation",
]

Clock = Callable[[], float]
Sleep = Callable[[float], None]
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
_MAX_CHECKS = 5
_STALE_GRACES = 3  # a run's sweep window ends 2 graces after t0; one more for deletes in flight


class Condemnation(BaseModel):
    """What a gc run in progress will delete (unless a re-read spares it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    run: str
    who: str
    created_at: datetime
    grace: float = Field(gt=0)
    blobs: list[str]

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys)."""
        return canonical_json(self.model_dump(mode="json"))


@dataclass(frozen=True)
class LiveCondemnation:
    """A condemnation as listed: its key, when the store wrote it, and what it names."""

    key: str
    info: ObjectInfo
    record: Condemnation


def write_condemnation(
    store: Store, name: str, digests: Iterable[str], *, who: str, grace: float
) -> str:
    """Create a condemnation naming ``digests``; returns its key."""
    now = utcnow()
    record = Condemnation(
        run=secrets.token_hex(8), who=who, created_at=now, grace=grace, blobs=sorted(digests)
    )
    key = condemnation_key(name, now.strftime(_TIME_FORMAT), record.run)
    store.put(key, record.to_json(), mode=CREATE)
    return key


def read_condemnations(store: Store, name: str) -> list[LiveCondemnation]:
    """Every condemnation of ``name`` now in the store (normally none).

    One that cannot be parsed still counts, naming every blob: a writer must not take a
    damaged announcement for no announcement (it waits out a default grace instead).
    """
    found = []
    for info in store.list(gc_prefix(name)):
        try:
            obj = store.get(info.key)
        except KeyNotFoundError:
            continue  # the run ended while we listed
        assert obj is not None
        try:
            record = Condemnation.model_validate_json(obj.data)
        except ValidationError:
            record = Condemnation(run="?", who="?", created_at=utcnow(), grace=60.0, blobs=["*"])
        found.append(LiveCondemnation(info.key, info, record))
    return found


def _names(entry: LiveCondemnation, digests: Collection[str]) -> bool:
    return "*" in entry.record.blobs or not set(entry.record.blobs).isdisjoint(digests)


class CondemnationGuard:
    """The writer's half of the protocol, for one commit that needs ``digests``.

    Args:
        store: The registry's store.
        name: The model.
        grace: The grace this writer assumes gc uses (it commits within half of it).
        clock: Monotonic seconds (tests pass a fake).
        sleep: How to wait.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        grace: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.store = store
        self.name = name
        self.grace = grace
        self.clock = clock
        self.sleep = sleep
        self.checked_at: float | None = None
        self.waited = 0
        """How many condemnations this guard waited out."""
        self._dead: set[str] = set()  # outwaited: their runs can no longer delete

    def before_commit(
        self, digests: Collection[str], repair: Callable[[Collection[str]], None]
    ) -> None:
        """Return once no gc run in progress names ``digests`` and they are all there; the
        commit must follow within half a grace of :attr:`checked_at`.

        ``repair`` gets ``digests`` after the listing that found no run naming them: it
        HEADs them and puts back (or refuses on) the missing ones. A check made before that
        listing does not count, because a whole run may have ended between the two.

        Raises:
            CommitStateUnknownError: gc runs kept condemning these blobs.
        """
        for _ in range(_MAX_CHECKS):
            self.checked_at = self.clock()
            named = self._naming(digests)
            if not named:
                repair(digests)
                return
            self._wait_out(named)  # then look again: another run may have condemned since
        raise CommitStateUnknownError(
            f"gc runs on {self.name!r} kept condemning blobs this change needs "
            f"({_MAX_CHECKS} checks); nothing was committed, try again after gc"
        )

    def after_commit(
        self, digests: Collection[str], repair: Callable[[Collection[str]], None]
    ) -> bool:
        """After a commit that took longer than half the grace: wait out and repair.

        Returns:
            Whether the commit was slow enough to need the check.
        """
        assert self.checked_at is not None, "before_commit first"
        if self.clock() - self.checked_at <= self.grace / 2:
            return False
        named = self._naming(digests)
        if named:
            self._wait_out(named)
        repair(digests)
        return True

    def _naming(self, digests: Collection[str]) -> list[LiveCondemnation]:
        return [
            c
            for c in read_condemnations(self.store, self.name)
            if c.key not in self._dead and _names(c, digests)
        ]

    def _wait_out(self, named: list[LiveCondemnation]) -> None:
        """Until each condemnation is gone, or seen for three of its graces (its run died)."""
        seen_at = self.clock()
        pending = {c.key: c for c in named}
        self.waited += len(pending)
        while pending:
            now = self.clock()
            for key, entry in list(pending.items()):
                if now - seen_at >= _STALE_GRACES * entry.record.grace:
                    self._dead.add(key)
                    del pending[key]
            if not pending:
                return
            present = {info.key for info in self.store.list(gc_prefix(self.name))}
            for key in list(pending):
                if key not in present:
                    del pending[key]
            if pending:
                step = min(c.record.grace for c in pending.values()) / 4
                self.sleep(max(0.005, min(step, 1.0)))


def stale(entry: LiveCondemnation, newest: ObjectInfo) -> bool:
    """Whether ``entry``'s run is certainly over, by the store's own clock (``newest`` is a
    condemnation just written)."""
    if entry.info.last_modified is None or newest.last_modified is None:
        return False
    age = (newest.last_modified - entry.info.last_modified).total_seconds()
    return age > _STALE_GRACES * entry.record.grace
