"""Helpers that look at blobs and transfers behind a store's back."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from modelshelf import Registry
from tests.support.backends import Backend

__all__ = ["MiB", "blob_keys", "make_source", "multipart_uploads", "referenced_keys", "sha256_of"]

MiB = 1024 * 1024


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def multipart_uploads(backend: Backend) -> list[str]:
    """Keys of multipart uploads still open in the backend's bucket."""
    answer = backend.s3_client().list_multipart_uploads(Bucket=backend.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", ())]


def make_source(root: Path, seed: int, files: int = 8, size: int = 8 << 20) -> Path:
    """A folder of random files (half of them in a sub-folder), reproducible by ``seed``."""
    rng = random.Random(seed)
    src = root / f"src-{seed}"
    (src / "sub").mkdir(parents=True)
    for i in range(files):
        target = src / ("sub" if i % 2 else "") / f"part-{i}.bin"
        target.write_bytes(rng.randbytes(size))
    return src


def blob_keys(registry: Registry, name: str) -> set[str]:
    """Every object under the model's blobs/."""
    return {info.key for info in registry.store.list(f"{name}/blobs/")}


def referenced_keys(registry: Registry, name: str) -> set[str]:
    """The blob keys some committed version references."""
    return {
        f"{name}/blobs/sha256/{entry.sha256}"
        for version in registry.versions(name)
        for entry in registry.get(f"{name}:{version}").files
    }
