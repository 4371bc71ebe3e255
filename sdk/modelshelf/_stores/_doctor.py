"""Probe a store for the conditional-write semantics modelshelf relies on.

Users point modelshelf at MinIO, R2, Ceph, SeaweedFS or GCS's S3 API; not all of them honour
every precondition. Each check runs under a scratch prefix (``_doctor/{random}/``, which can
never be a model name) and removes what it wrote.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._errors import (
    AccessDeniedError,
    ConfigurationError,
    KeyNotFoundError,
    ModelshelfError,
    PreconditionFailedError,
)
from ..layout import DOCTOR_PREFIX
from ._protocol import CREATE, IfMatch, Store

__all__ = ["Check", "run_doctor"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Check:
    """One probe and its verdict."""

    name: str
    ok: bool
    detail: str


def _expect_conflict(action: Callable[[], object]) -> tuple[bool, str]:
    try:
        action()
    except PreconditionFailedError:
        return True, "refused with 412 as required"
    except ModelshelfError as exc:
        return False, f"failed with {type(exc).__name__} instead of a precondition answer: {exc}"
    return False, "the write was ACCEPTED: this store would let writers overwrite each other"


def _multipart_store(store: Store) -> Store | None:
    from ._s3 import S3Store

    if isinstance(store, S3Store):
        # The smallest legal parts, so two parts exercise CompleteMultipartUpload cheaply.
        return S3Store(store.uri, client=store.client, part_size=5 * _MIB, max_attempts=2)
    return store


def run_doctor(store: Store) -> list[Check]:
    """Run every probe against ``store`` and return the verdicts, in order.

    Raises:
        ConfigurationError: The store cannot be used at all (the bucket does not exist, no
            credentials); raised once instead of failing every check.
        AccessDeniedError: The credentials may not write to the store.
    """
    base = f"{DOCTOR_PREFIX}{uuid.uuid4().hex}"
    checks: list[Check] = []
    written: list[str] = []
    fatal: list[ModelshelfError] = []

    def record(name: str, probe: Callable[[], tuple[bool, str]]) -> None:
        if fatal:
            return
        try:
            ok, detail = probe()
        except (ConfigurationError, AccessDeniedError) as exc:
            # No probe can run (a missing bucket, no credentials, no permission): that is
            # one answer, not a failed check per precondition.
            fatal.append(exc)
            return
        except ModelshelfError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(name, ok, detail))

    key = f"{base}/create"
    written.append(key)

    def create_twice() -> tuple[bool, str]:
        store.put(key, b"first", mode=CREATE)
        ok, detail = _expect_conflict(lambda: store.put(key, b"second", mode=CREATE))
        obj = store.get(key)
        if obj is None or obj.data != b"first":
            return False, "the second create-if-absent replaced the first object"
        return ok, detail

    record("create-if-absent (If-None-Match: *)", create_twice)

    swap = f"{base}/swap"
    written.append(swap)

    def if_match_right() -> tuple[bool, str]:
        etag = store.put(swap, b"v1", mode=CREATE)
        new_etag = store.put(swap, b"v2", mode=IfMatch(etag))
        obj = store.get(swap)
        ok = obj is not None and obj.data == b"v2" and new_etag != etag
        return ok, "replaced, new etag returned" if ok else "the matching swap did not land"

    record("if-match with the current etag", if_match_right)

    def if_match_stale() -> tuple[bool, str]:
        first = store.head(swap).etag
        store.put(swap, b"v3", mode=IfMatch(first))
        ok, detail = _expect_conflict(lambda: store.put(swap, b"v4", mode=IfMatch(first)))
        obj = store.get(swap)
        if obj is None or obj.data != b"v3":
            return False, "a swap with a stale etag replaced the object"
        return ok, detail

    record("if-match with a stale etag", if_match_stale)

    def if_match_missing() -> tuple[bool, str]:
        missing = f"{base}/missing"
        written.append(missing)
        ok, detail = _expect_conflict(lambda: store.put(missing, b"x", mode=IfMatch('"abc"')))
        try:
            store.head(missing)
            return False, "a swap on a missing key created it"
        except KeyNotFoundError:
            return ok, detail

    record("if-match on a missing key", if_match_missing)

    def conditional_get() -> tuple[bool, str]:
        etag = store.head(swap).etag
        unchanged = store.get(swap, if_none_match=etag)
        if unchanged is not None:
            return False, "an unchanged object was sent again (no 304): polls cost full GETs"
        store.put(swap, b"v5", mode=IfMatch(etag))
        changed = store.get(swap, if_none_match=etag)
        if changed is None or changed.data != b"v5":
            return False, "a changed object answered 304: servers would miss alias changes"
        return True, "304 when unchanged, the new bytes when changed"

    record("conditional GET (If-None-Match: etag)", conditional_get)

    big = f"{base}/multipart"
    written.append(big)

    def multipart_create() -> tuple[bool, str]:
        target = _multipart_store(store)
        assert target is not None
        with tempfile.TemporaryDirectory(prefix="modelshelf-doctor-") as tmp:
            first, second = Path(tmp) / "first-object", Path(tmp) / "second-object"
            first.write_bytes(os.urandom(11 * _MIB))
            second.write_bytes(os.urandom(11 * _MIB))
            target.put_file(big, first, mode=CREATE)
            ok, detail = _expect_conflict(lambda: target.put_file(big, second, mode=CREATE))
            size = store.head(big).size
            obj = store.get(big)
            if obj is None or obj.data != first.read_bytes() or size != 11 * _MIB:
                return False, "a second multipart create-if-absent replaced the first object"
        return ok, detail.replace("412", "412 on CompleteMultipartUpload")

    record("multipart upload completed with If-None-Match: *", multipart_create)

    for key in written:
        try:
            store.delete(key)
        except ModelshelfError:
            pass  # best effort; the prefix is clearly scratch
    if fatal:
        raise fatal[0]
    return checks
