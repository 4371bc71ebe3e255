"""Retention: gc keeps recent and ever-aliased versions, never manifests, and cleans up."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._aliases import read_history
from tests.support.blobs import blob_keys


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="ops")


def test_gc_keeps_recent_and_ever_aliased_versions_and_never_manifests(registry: Registry) -> None:
    for i in range(6):
        registry.push("m", {"weights": i, "pad": b"x" * 1000 * (i + 1)}, version=f"1.{i}.0")
    registry.set_active("m", "1.0.0")
    registry.start_canary("m", "1.1.0", 0.1)
    registry.abort_canary("m")
    manifests_before = {i.key for i in registry.store.list("m/versions/")}

    plan = registry.gc("m", keep_last=2)
    assert plan.expired_versions == ["1.2.0", "1.3.0"], "versions outside keep-last expire"
    assert plan.protected_versions == ["1.0.0", "1.1.0"], "ever-aliased versions are kept"
    assert plan.kept_versions == ["1.4.0", "1.5.0"]
    assert not plan.deleted and len(plan.delete_blobs) == 2 and plan.bytes_freed > 2000
    assert len(blob_keys(registry, "m")) == 6, "a dry run deletes nothing"

    done = registry.gc("m", keep_last=2, dry_run=False)
    assert done.deleted and len(blob_keys(registry, "m")) == 4
    assert {i.key for i in registry.store.list("m/versions/")} == manifests_before, (
        "manifests must never be deleted"
    )
    for version in ("1.0.0", "1.1.0", "1.4.0", "1.5.0"):
        registry.verify(f"m:{version}")
    assert read_history(registry.store, "m"), "history untouched"


def test_gc_older_than_spares_young_versions_and_young_orphans(registry: Registry) -> None:
    for i in range(3):
        registry.push("m", {"weights": i}, version=f"1.{i}.0")
    registry.store.put("m/blobs/sha256/" + "a" * 64, b"orphan in flight")
    plan = registry.gc("m", keep_last=0, older_than=timedelta(days=365))
    assert plan.expired_versions == [] and plan.delete_blobs == [], (
        "young versions and young orphans must be kept"
    )
    plan = registry.gc("m", keep_last=0, orphan_grace=timedelta(0))
    assert plan.expired_versions == ["1.0.0", "1.1.0", "1.2.0"]
    assert plan.orphan_blobs == ["m/blobs/sha256/" + "a" * 64]


def test_a_push_reusing_a_blob_that_gc_deletes_meanwhile_repairs_it(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelshelf._versions import Pusher

    registry.push("m", {"weights": 1}, version="1.0.0")
    real_commit = Pusher._commit

    def gc_between_upload_and_commit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # the push has just found 1.0.0's blob and skipped uploading it; gc now deletes it
        registry.gc("m", keep_last=0, dry_run=False)
        assert not blob_keys(registry, "m"), "the race needs the blob gone before the commit"
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(Pusher, "_commit", gc_between_upload_and_commit)
    registry.push("m", {"weights": 1}, version="1.1.0")
    registry.verify("m:1.1.0")  # raises IntegrityError if the blob were still missing


def test_gc_aborts_stale_multipart_uploads(s3_backend: Any, tmp_path: Path) -> None:
    registry = Registry(s3_backend.uri, cache_dir=tmp_path / "cache", **s3_backend.store_options)
    registry.push("m", {"weights": 1}, version="1.0.0")
    client = s3_backend.s3_client()
    # a push killed mid-upload leaves an unfinished multipart upload behind
    client.create_multipart_upload(
        Bucket=s3_backend.bucket, Key="registry/m/blobs/sha256/" + "b" * 64
    )
    time.sleep(1.1)  # S3 reports Initiated to the second

    plan = registry.gc("m", orphan_grace=timedelta(0))
    assert plan.stale_uploads == 1, "the dry run must count the stale upload"
    done = registry.gc("m", orphan_grace=timedelta(0), dry_run=False)
    assert done.stale_uploads == 1
    left = client.list_multipart_uploads(Bucket=s3_backend.bucket).get("Uploads", [])
    assert left == [], f"stale uploads were not aborted: {left}"
    registry.verify("m:1.0.0")


def test_gc_removes_temp_files_of_killed_local_writes(registry: Registry) -> None:
    registry.push("m", {"weights": 1}, version="1.0.0")
    tmp_dir = registry.store.root / ".modelshelf-tmp"  # type: ignore[attr-defined]
    (tmp_dir / "put-leftover").write_bytes(b"half a blob")
    old = time.time() - 7200
    os.utime(tmp_dir / "put-leftover", (old, old))
    assert registry.gc("m").stale_uploads == 1
    registry.gc("m", dry_run=False)
    assert not (tmp_dir / "put-leftover").exists()
