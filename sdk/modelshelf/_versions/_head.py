"""The version head: a verified hint of a model's highest version, so a push does not list.

``{model}/index/latest.json`` names the highest version a pusher has claimed; pushers raise
it before committing a manifest above it, so every committed version is at or below it. A
reader trusts it only when the manifest it names exists, none of that version's three
successors (the next patch, minor and major: what any bump creates) does, and no manifest
has a higher MAJOR (a skip scan, one tiny listing per MAJOR), all read in one parallel
round; otherwise it lists the versions. A stale or broken head costs a listing,
never a wrong answer (docs/design.md, "Scale: indexes and hints").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .._card import ModelVersion, canonical_json
from .._errors import (
    AccessDeniedError,
    CorruptObjectError,
    InvalidInputError,
    InvalidVersionError,
    KeyNotFoundError,
    PreconditionFailedError,
)
from .._refs import bump_version, parse_version, version_sort_key
from .._stores import CREATE, IfMatch, Store
from ..layout import manifest_key, version_head_key, versions_prefix
from ._manifests import SKIPPED, list_versions, parse_manifest

__all__ = ["Head", "claim_head", "manifest_exists", "newest_versions", "read_head"]


@dataclass(frozen=True)
class Head:
    """What a pusher or a reader knows about a model's newest version."""

    latest: str | None
    """The highest committed version (verified), ``None`` when there is none."""
    manifest: ModelVersion | None
    """Its manifest, read while verifying (``None`` when it is corrupt)."""
    claimed: str | None
    """What the head object says (above ``latest`` while a push is in flight)."""
    etag: str | None
    """The head object's etag; ``None`` when it does not exist."""
    recent: tuple[str, ...] = ()
    """The newest versions known (up to 50, newest first): claimed ones when trusted."""
    stored: tuple[str, ...] = ()
    """The recent versions the head object holds."""
    trusted: bool = False
    """Whether the head checked out (else ``latest`` and ``recent`` come from a listing)."""


def _load(store: Store, name: str, version: str) -> tuple[bool, ModelVersion | None]:
    """Whether ``name:version`` is committed, and its manifest (``None`` when corrupt)."""
    key = manifest_key(name, version)
    try:
        obj = store.get(key)
    except KeyNotFoundError:
        return False, None
    assert obj is not None
    try:
        return True, parse_manifest(obj.data, name, version, f"{store.uri}/{key}")
    except CorruptObjectError as exc:
        SKIPPED.warning("skipped %s", exc)
        return True, None


def manifest_exists(store: Store, name: str, version: str) -> bool:
    """Whether ``name:version`` is committed (its manifest key exists)."""
    try:
        store.head(manifest_key(name, version))
    except KeyNotFoundError:
        return False
    return True


_MAX_MAJORS = 32


def _majors(store: Store, name: str) -> int | None:
    """The highest MAJOR any manifest key has (``None``: too many to tell cheaply).

    A skip scan: one one-key listing per distinct MAJOR, each starting after every key of
    the MAJOR found before (``versions/{M}.~~`` sorts after all of them), so a registry with
    a few MAJORs answers in a few tiny requests whatever its number of versions.
    """
    prefix = versions_prefix(name)
    after: str | None = None
    highest = -1
    for _ in range(_MAX_MAJORS):
        found = list(store.list(prefix, start_after=after, limit=1))
        if not found:
            return highest if highest >= 0 else None
        key = found[0].key
        major = key[len(prefix) :].split(".", 1)[0]
        if not major.isdigit():
            after = key  # a stray object: step over it
            continue
        highest = max(highest, int(major))
        # '~' sorts after every character of a version key; doubled so that a store that
        # asks its backend from one character earlier (S3Store, for SeaweedFS) still seeks
        # past the whole MAJOR instead of filtering its keys page by page.
        after = f"{prefix}{major}.~~"
    return None


def _successors(version: str) -> list[str]:
    found = []
    for step in ("patch", "minor", "major"):
        try:
            found.append(bump_version(version, step))
        except InvalidVersionError:
            continue  # that part is at the grammar's end: nothing can follow there
    return found


_RECENT = 50


def _parse(data: bytes) -> tuple[str | None, tuple[str, ...]]:
    """The head's version and its recent versions (newest first); nothing when unreadable."""
    try:
        value = json.loads(data)
        version = value["version"] if isinstance(value, dict) else None
        parse_version(version)
        recent = value.get("recent", [])
        if not isinstance(recent, list):
            raise TypeError("recent is not a list")
        for item in recent:
            parse_version(item)
    except (ValueError, KeyError, TypeError, InvalidInputError):
        return None, ()
    return str(version), tuple(str(v) for v in recent)


def _top(versions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(versions), key=version_sort_key, reverse=True)[:_RECENT])


def read_head(store: Store, name: str) -> Head:
    """The newest committed version of ``name``, from the head when it checks out."""
    try:
        obj = store.get(version_head_key(name))
    except KeyNotFoundError:
        obj = None
    claimed, stored = _parse(obj.data) if obj is not None else (None, ())
    etag = obj.etag if obj is not None else None
    if claimed is not None:
        with ThreadPoolExecutor(5) as pool:
            loaded = pool.submit(_load, store, name, claimed)
            majors = pool.submit(_majors, store, name)
            later = list(pool.map(lambda v: manifest_exists(store, name, v), _successors(claimed)))
            exists, manifest = loaded.result()
            top = majors.result()
        above = top is None or top > version_sort_key(claimed)[0]
        if exists and not any(later) and not above:
            # A head written before it kept recent versions: list once to complete it.
            recent = _top([*stored, claimed]) if stored else _top(list_versions(store, name))
            return Head(claimed, manifest, claimed, etag, recent, stored, trusted=True)
    # Missing, unreadable, ahead of the commits, or behind them: the listing decides.
    versions = list_versions(store, name)
    latest = versions[-1] if versions else None
    manifest = _load(store, name, latest)[1] if latest else None
    return Head(latest, manifest, claimed, etag, _top(versions), stored, trusted=False)


def newest_versions(store: Store, name: str, last: int) -> list[str] | None:
    """The newest ``last`` committed versions, oldest first, from the head's recent list.

    ``None`` when the head cannot answer (not trusted, too few recent versions, ``last``
    above what it keeps): the caller lists the versions instead.
    """
    head = read_head(store, name)
    if not head.trusted or not head.recent or last > _RECENT:
        return None
    candidates = list(head.recent)
    with ThreadPoolExecutor(16) as pool:
        committed = list(pool.map(lambda v: manifest_exists(store, name, v), candidates))
    found = [v for v, ok in zip(candidates, committed, strict=True) if ok]
    if len(found) < last and len(candidates) >= _RECENT:
        return None  # claimed versions that never landed crowd out older ones: list
    return found[:last][::-1]


def claim_head(store: Store, name: str, head: Head, target: str) -> bool:
    """Raise the head to ``target`` before ``target`` is committed.

    Returns:
        ``True`` when the head is at or above ``target`` (or the store refuses the write:
        the push still commits, see the design); ``False`` when another pusher moved the
        head first, so the caller reads it again.
    """
    key = version_head_key(name)
    known = [v for v in (target, head.latest, head.claimed) if v is not None]
    wanted = max(known, key=version_sort_key)  # never lowered; repaired when found behind
    recent = _top([*head.recent, target])
    if wanted == head.claimed and recent == head.stored:
        return True
    body = canonical_json({"version": wanted, "recent": list(recent)})
    try:
        store.put(key, body, mode=CREATE if head.etag is None else IfMatch(head.etag))
    except PreconditionFailedError:
        return False
    except AccessDeniedError:
        return True  # a role without index/ access: the successor check still guards bumps
    return True
