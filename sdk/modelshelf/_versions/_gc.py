"""Retention: find and delete blobs that no kept version needs (docs/design.md, "Retention").

Manifests are never deleted: they are tiny, they keep the audit trail, and they stop a
version number from ever being reused with other content. Blobs are deleted only when no
kept version references them; a version that was ever ``active`` or ``canary`` (per the
alias history) is always kept. Unreferenced blobs younger than ``orphan_grace`` are left
alone, because a push in flight uploads its blobs before it commits its manifest.

Deleting is mark, wait, re-read, sweep (invariant 13): candidates are condemned first, the
run waits ``grace``, re-reads what was committed or aliased meanwhile, and deletes only what
is still unneeded, within a sweep window; writers look for condemnations before they commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .._card import ModelVersion, utcnow
from .._errors import InvalidInputError, KeyNotFoundError
from .._refs import check_name, version_sort_key
from .._stores import Store, SupportsStaleUploads
from ..layout import blob_prefix, blobs_root
from ._manifests import digests_in, list_versions, read_manifests
from ._retention import Clock, Sleep, read_condemnations, stale, write_condemnation

__all__ = ["GcPlan", "parse_age", "plan_gc", "run_gc"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """Parse ``365d``, ``12h``, ``30m``, ``2w`` or ``90s``.

    Raises:
        InvalidInputError: Anything else.
    """
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit():
        raise InvalidInputError(
            f"invalid age {text!r}: use a whole number with s, m, h, d or w (e.g. 365d)"
        )
    return timedelta(seconds=int(number) * _UNITS[unit])


@dataclass
class GcPlan:
    """What a garbage collection would keep and delete."""

    name: str
    kept_versions: list[str] = field(default_factory=list)
    protected_versions: list[str] = field(default_factory=list)
    expired_versions: list[str] = field(default_factory=list)
    delete_blobs: list[tuple[str, int]] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    stale_uploads: int = 0
    deleted: bool = False
    corrupt_versions: list[str] = field(default_factory=list)
    """Versions whose manifest does not validate: skipped, and every blob whose digest
    appears in their bytes kept."""
    spared_blobs: list[str] = field(default_factory=list)
    """Candidates a re-read found needed again (a version committed or aliased meanwhile)."""
    rounds: int = 0
    """Condemn-wait-sweep rounds the deletion took."""
    _manifests: dict[str, ModelVersion] = field(default_factory=dict, repr=False)

    @property
    def bytes_freed(self) -> int:
        """Bytes the deletion frees (or would free)."""
        return sum(size for _, size in self.delete_blobs)


def plan_gc(
    store: Store,
    name: str,
    *,
    protected: Iterable[str] = (),
    keep_last: int = 10,
    older_than: timedelta | None = None,
    orphan_grace: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> GcPlan:
    """Work out what :func:`run_gc` would delete, writing nothing.

    Args:
        store: The registry's store.
        name: The model.
        protected: Versions kept whatever their age (the facade passes every version that
            was ever ``active`` or ``canary``).
        keep_last: The newest versions always kept.
        older_than: Only versions older than this expire (``None``: any age).
        orphan_grace: Unreferenced blobs younger than this are left alone.
        now: The clock, for tests.
    """
    check_name(name)
    if keep_last < 0:
        raise InvalidInputError(f"--keep-last must be 0 or more, not {keep_last}")
    now = now or utcnow()
    versions = list_versions(store, name)
    manifests, corrupt = read_manifests(store, name, versions)
    ever_aliased = set(protected)

    plan = GcPlan(
        name=name, corrupt_versions=sorted(corrupt, key=version_sort_key), _manifests=manifests
    )
    recent = set(versions[-keep_last:]) if keep_last else set()
    for version in versions:
        if version in corrupt:
            continue  # what it needs is unknown: every digest in its bytes is kept below
        too_old = older_than is None or manifests[version].created_at < now - older_than
        if version in ever_aliased:
            plan.protected_versions.append(version)
        elif version in recent or not too_old:
            plan.kept_versions.append(version)
        else:
            plan.expired_versions.append(version)

    needed = {
        entry.sha256
        for version in plan.kept_versions + plan.protected_versions
        for entry in manifests[version].files
    }
    for version in corrupt:
        needed |= digests_in(store, name, version)
    referenced = {entry.sha256 for m in manifests.values() for entry in m.files} | needed
    for info in store.list(blob_prefix(name)):
        digest = info.key.rsplit("/", 1)[-1]
        if digest in needed:
            continue
        if digest not in referenced:
            young = info.last_modified is not None and info.last_modified > now - orphan_grace
            if young:
                continue  # may belong to a push that has not committed yet
            plan.orphan_blobs.append(info.key)
        plan.delete_blobs.append((info.key, info.size))

    if isinstance(store, SupportsStaleUploads):
        plan.stale_uploads = len(store.stale_uploads(blobs_root(name), orphan_grace))
    return plan


_MAX_ROUNDS = 20


def run_gc(
    store: Store,
    name: str,
    *,
    protected: Callable[[], Iterable[str]],
    keep_last: int = 10,
    older_than: timedelta | None = None,
    orphan_grace: timedelta = timedelta(hours=1),
    grace: float,
    who: str,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> GcPlan:
    """Plan, then delete by mark, wait, re-read, sweep (docs/design.md, "Retention").

    Args:
        store: The registry's store.
        name: The model.
        protected: Returns every version ever ``active`` or ``canary`` (history records,
            claimed or installed, and the current aliases); called for each plan and again
            at each re-read, so an alias change made meanwhile protects its version.
        keep_last: As for :func:`plan_gc`.
        older_than: As for :func:`plan_gc`.
        orphan_grace: As for :func:`plan_gc`.
        grace: Seconds between the condemnation and the re-read (the sweep window is as long).
        who: Recorded in the condemnation.
        clock: Monotonic seconds, for tests.
        sleep: How to wait, for tests.

    Returns:
        The first round's plan, with ``delete_blobs`` what was deleted over all rounds.
    """
    result: GcPlan | None = None
    deleted: list[tuple[str, int]] = []
    spared: list[str] = []
    for round_number in range(1, _MAX_ROUNDS + 1):
        plan = plan_gc(
            store,
            name,
            protected=protected(),
            keep_last=keep_last,
            older_than=older_than,
            orphan_grace=orphan_grace,
        )
        if result is None:
            result = plan
        result.rounds = round_number
        gone, kept, left = _one_round(store, plan, protected, grace, who, clock, sleep)
        deleted += gone
        spared += kept
        if not left:
            break
    assert result is not None
    gone_keys = {key for key, _ in deleted}
    result.delete_blobs = deleted
    result.spared_blobs = spared
    result.orphan_blobs = [key for key in result.orphan_blobs if key in gone_keys]
    if isinstance(store, SupportsStaleUploads):
        result.stale_uploads = store.abort_stale_uploads(blobs_root(name), orphan_grace)
    result.deleted = True
    return result


def _digest(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _one_round(
    store: Store,
    plan: GcPlan,
    protected: Callable[[], Iterable[str]],
    grace: float,
    who: str,
    clock: Clock,
    sleep: Sleep,
) -> tuple[list[tuple[str, int]], list[str], list[tuple[str, int]]]:
    """One condemn-wait-re-read-sweep round: (deleted, spared, left for the next round)."""
    if not plan.delete_blobs:
        return [], [], []
    name = plan.name
    t0 = clock()  # before the create: it bounds when this run's condemnation became visible
    key = write_condemnation(
        store, name, (_digest(k) for k, _ in plan.delete_blobs), who=who, grace=grace
    )
    # After the create returned: it is visible by now, and a writer that listed just before
    # it appeared gets its whole half grace however long the create took.
    t1 = clock()
    try:
        _drop_stale_condemnations(store, name, key)
        remaining = grace - (clock() - t1)
        if remaining > 0:
            sleep(remaining)
        needed = _needed_now(store, plan, protected)
        survivors = [(k, size) for k, size in plan.delete_blobs if _digest(k) not in needed]
        spared = [k for k, _ in plan.delete_blobs if _digest(k) in needed]
        deleted: list[tuple[str, int]] = []
        for index, (blob, size) in enumerate(survivors):
            if clock() >= t0 + 2 * grace:
                return deleted, spared, survivors[index:]  # the sweep window is over
            store.delete(blob)
            deleted.append((blob, size))
        return deleted, spared, []
    finally:
        # Also when interrupted: none of this run's deletes is in flight once we are here.
        store.delete(key)


def _needed_now(store: Store, plan: GcPlan, protected: Callable[[], Iterable[str]]) -> set[str]:
    """Digests some version outside the plan's expired set needs now (the re-read)."""
    name = plan.name
    known = set(plan._manifests) | set(plan.corrupt_versions)
    new = [v for v in list_versions(store, name) if v not in known]  # committed meanwhile
    fresh, corrupt = read_manifests(store, name, new)
    manifests = {**plan._manifests, **fresh}
    expired = set(plan.expired_versions) - set(protected())
    needed = {
        entry.sha256
        for version, manifest in manifests.items()
        if version not in expired
        for entry in manifest.files
    }
    for version in corrupt:
        needed |= digests_in(store, name, version)
    return needed


def _drop_stale_condemnations(store: Store, name: str, own_key: str) -> None:
    """Delete condemnations whose runs died, judged by the store's clock against our own."""
    try:
        own = store.head(own_key)
    except KeyNotFoundError:
        return
    for entry in read_condemnations(store, name):
        if entry.key != own_key and stale(entry, own):
            store.delete(entry.key)
