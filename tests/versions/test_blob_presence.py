"""A push of many files checks which blobs exist with one listing, not a HEAD per file, and a
wrong listing (a stale hint) costs requests, never a broken version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._stores import ObjectInfo, Store
from modelshelf._stores._s3 import S3Store
from modelshelf._versions._presence import BATCH_FROM
from tests.support.backends import Backend


def _files(root: Path, count: int, seed: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"part-{i:04d}.bin").write_bytes(bytes([seed]) + os.urandom(100 + i))
    return root


def _count(store: S3Store) -> dict[str, int]:
    """Requests by operation, and again by operation and kind of key (``HeadObject:blob``):
    the version head under ``index/`` has reads and writes of its own."""
    calls: dict[str, int] = {}

    def count(model: Any, params: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1
        key = str(params.get("Key") or params.get("Prefix") or "")
        kind = "blob" if "/blobs/" in key else "index" if "/index/" in key else "other"
        calls[f"{model.name}:{kind}"] = calls.get(f"{model.name}:{kind}", 0) + 1

    store.client.meta.events.register("before-parameter-build.s3", count)
    return calls


@pytest.fixture
def s3(make_backend: Any) -> Backend:
    backend: Backend = make_backend("moto")
    return backend


# The tests' tiny gc grace makes a commit slower than half of it (a loaded machine) HEAD every
# blob again afterwards (docs/design.md, "Retention"); that check is not what these tests count.
_GRACE = 60.0


def test_many_small_files_cost_one_listing_and_no_head(s3: Backend, tmp_path: Path) -> None:
    store = s3.open()
    assert isinstance(store, S3Store)
    registry = Registry(store, cache_dir=tmp_path / "cache", user="tester", gc_grace=_GRACE)
    registry.push("many", _files(tmp_path / "a", 3, seed=1))  # some blobs already there
    calls = _count(store)
    source = _files(tmp_path / "b", 40, seed=2)
    manifest = registry.push("many", source)
    assert calls.get("HeadObject:blob", 0) == 0, f"existence checks still HEAD each file: {calls}"
    # Two: one while uploading, one after looking for gc condemnations (invariant 13: a gc
    # run may have ended between the upload's check and that look).
    blob_listings = calls.get("ListObjectsV2:blob", 0)
    assert blob_listings == 2, f"two listings of the blobs, no more, expected: {calls}"
    assert calls["ListObjectsV2"] <= 5, f"the version and gc listings besides: {calls}"
    puts = calls.get("PutObject", 0) - calls.get("PutObject:index", 0)
    assert puts == 41, f"40 blobs and the manifest expected (and the version head): {calls}"
    pulled = tmp_path / "pulled"
    registry.pull(f"many:{manifest.version}", pulled)
    assert sorted(p.name for p in pulled.iterdir()) == sorted(p.name for p in source.iterdir())


def test_a_push_of_few_files_does_not_list_the_blobs(s3: Backend, tmp_path: Path) -> None:
    store = s3.open()
    assert isinstance(store, S3Store)
    registry = Registry(store, cache_dir=tmp_path / "cache", user="tester", gc_grace=_GRACE)
    calls = _count(store)
    registry.push("few", _files(tmp_path / "a", BATCH_FROM - 1, seed=3))
    # A HEAD each while uploading, and again after looking for gc condemnations (invariant 13).
    heads = calls.get("HeadObject:blob")
    assert heads == 2 * (BATCH_FROM - 1), f"few files: two HEADs each expected ({calls})"


class LyingListing:
    """A store whose blob listing is wrong: it hides what exists, or shows what does not."""

    def __init__(self, inner: Store, *, hide: bool, invent: list[str]) -> None:
        self.inner = inner
        self.hide = hide
        self.invent = invent

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        found = list(self.inner.list(prefix, **kwargs))
        if "/blobs/" not in prefix:
            return iter(found)
        if self.hide:
            found = []
        found += [ObjectInfo(key=k, size=1, etag="x") for k in self.invent]
        return iter(sorted(found, key=lambda i: i.key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_listing_that_hides_existing_blobs_still_pushes_a_whole_version(
    s3: Backend, tmp_path: Path
) -> None:
    store = s3.open()
    source = _files(tmp_path / "a", 20, seed=4)
    Registry(store, cache_dir=tmp_path / "c1").push("hint", source, version="1.0.0")
    lying = LyingListing(store, hide=True, invent=[])
    registry = Registry(lying, cache_dir=tmp_path / "c2")  # type: ignore[arg-type]
    manifest = registry.push("hint", source, version="1.1.0")  # every blob "missing"
    registry.verify(f"hint:{manifest.version}")


def test_a_listing_that_shows_missing_blobs_still_pushes_a_whole_version(
    s3: Backend, tmp_path: Path
) -> None:
    import hashlib

    store = s3.open()
    source = _files(tmp_path / "a", 20, seed=5)
    invented = [
        f"hint/blobs/sha256/{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted(source.iterdir())[:5]
    ]
    lying = LyingListing(store, hide=False, invent=invented)
    registry = Registry(lying, cache_dir=tmp_path / "c2")  # type: ignore[arg-type]
    manifest = registry.push("hint", source)
    Registry(store, cache_dir=tmp_path / "c3").verify(f"hint:{manifest.version}")
