"""Retention: find and delete blobs that no kept version needs (docs/design.md, "Retention").

Manifests are never deleted: they are tiny, they keep the audit trail, and they stop a
version number from ever being reused with other content. Blobs are deleted only when no
kept version references them; a version that was ever ``active`` or ``canary`` (per the
alias history) is always kept. Unreferenced blobs younger than ``orphan_grace`` are left
alone, because a push in flight uploads its blobs before it commits its manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .._card import utcnow
from .._errors import InvalidInputError
from .._refs import check_name, version_sort_key
from .._stores import Store, SupportsStaleUploads
from ..layout import blob_prefix, blobs_root
from ._manifests import digests_in, list_versions, read_manifests

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

    plan = GcPlan(name=name, corrupt_versions=sorted(corrupt, key=version_sort_key))
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


def run_gc(store: Store, plan: GcPlan, *, orphan_grace: timedelta) -> GcPlan:
    """Delete what ``plan`` lists and abort stale multipart uploads."""
    for key, _ in plan.delete_blobs:
        store.delete(key)
    if isinstance(store, SupportsStaleUploads):
        plan.stale_uploads = store.abort_stale_uploads(blobs_root(plan.name), orphan_grace)
    plan.deleted = True
    return plan
