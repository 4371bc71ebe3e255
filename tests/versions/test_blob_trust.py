"""Stored bytes are verified, not assumed (docs/design.md, invariants 1 and 2): a reused blob
is checked before a push commits it, downloads never exceed the manifest's size, and a
cache hit is verified."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from modelshelf import IntegrityError, Registry
from modelshelf.layout import blob_key

CONTENT = b"the real weights " * 4096


def _registry(backend: Any, tmp_path: Path) -> Registry:
    return Registry(backend.uri, cache_dir=tmp_path / "cache", **backend.store_options)


def _plant(backend: Any, registry: Registry, key: str, data: bytes, claimed: str) -> None:
    """Write ``data`` under ``key`` behind modelshelf's back, claiming digest ``claimed``."""
    if backend.is_s3:
        backend.s3_client().put_object(
            Bucket=backend.bucket,
            Key=f"registry/{key}",
            Body=data,
            Metadata={"sha256": claimed},
            ChecksumAlgorithm="SHA256",
        )
        return
    path = Path(registry.store.root) / key  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


@pytest.mark.parametrize("size", ["same-size", "other-size"])
def test_a_push_replaces_a_stored_blob_that_does_not_match_its_key(
    backend: Any, tmp_path: Path, size: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _registry(backend, tmp_path)
    source = tmp_path / "model.bin"
    source.write_bytes(CONTENT)
    digest = hashlib.sha256(CONTENT).hexdigest()
    bad = b"X" * len(CONTENT) if size == "same-size" else b"planted"
    # Someone wrote other bytes (with a forged digest) under the key a later push will use.
    _plant(backend, registry, blob_key("m", digest), bad, claimed=digest)
    with caplog.at_level(logging.WARNING, logger="modelshelf"):
        pushed = registry.push("m", source, version="1.0.0")
    registry.verify("m:1.0.0")  # raises IntegrityError if the bad bytes were reused
    assert pushed.repaired_blobs == [digest], "the push must report the replaced blob"
    assert any(digest in record.getMessage() for record in caplog.records), "and warn"
    assert "repaired_blobs" not in pushed.to_json().decode(), "not part of the manifest"
    again = registry.push("m", source, version="1.1.0")
    assert again.repaired_blobs == [], "a good stored blob is reused as it is"


def test_a_download_never_exceeds_the_declared_size(backend: Any, tmp_path: Path) -> None:
    registry = _registry(backend, tmp_path)
    pushed = registry.push("m", {"w": 1}, version="1.0.0")
    entry = pushed.files[0]
    huge = b"\0" * (entry.size * 50 + 1024 * 1024)
    _plant(backend, registry, blob_key("m", entry.sha256), huge, claimed=entry.sha256)
    registry.cache.clear()
    before = registry.cache.bytes_downloaded
    with pytest.raises(IntegrityError) as info:
        registry.fetch("m:1.0.0")
    fetched = registry.cache.bytes_downloaded - before
    assert fetched <= entry.size, f"downloaded {fetched} bytes for a {entry.size}-byte blob"
    assert "declares" in str(info.value), "the error names the declared size"
    with pytest.raises(IntegrityError):
        registry.pull("m:1.0.0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_cache_hit_swapped_for_same_size_bytes_is_caught(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    source = tmp_path / "model.bin"
    source.write_bytes(CONTENT)
    registry.push("m", source, version="1.0.0")
    cached = registry.fetch("m:1.0.0")["model.bin"]
    os.chmod(cached, 0o644)
    cached.write_bytes(b"Y" * len(CONTENT))  # same size, same name: a swap
    os.utime(cached, ns=(0, 0))
    again = registry.fetch("m:1.0.0")["model.bin"]
    assert again.read_bytes() == CONTENT, "a swapped cache file was handed out as verified"
    out = tmp_path / "pulled"
    cached_now = registry.cache.path_for(hashlib.sha256(CONTENT).hexdigest())
    os.chmod(cached_now, 0o644)
    cached_now.write_bytes(b"Z" * len(CONTENT))
    registry.pull("m:1.0.0", out)
    assert (out / "model.bin").read_bytes() == CONTENT, "pull copied a swapped cache file"
