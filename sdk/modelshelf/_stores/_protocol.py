"""The narrow store protocol every backend implements (docs/design.md, "Stores").

A registry needs only a handful of operations from its object store; everything else
(versions, aliases, metrics) is built on them. Put modes follow obspec: create-if-absent,
overwrite, or replace-if-the-etag-still-matches.

Optional capabilities are named protocols, checked with ``isinstance`` (never probed with
``getattr``), so a store that wraps another declares what it forwards:

- :class:`SupportsListFolders`: the names one level below a prefix (a delimiter listing),
  so the registry finds its models without listing every metrics object.
- :class:`SupportsContentAddressedPut`: hash a file while storing it (one read, not two).
- :class:`SupportsHashedGet`: hash a download while writing it.
- :class:`SupportsUploadDigest`: hash a file for an upload that follows, in the same read.
- :class:`SupportsStaleUploads`: find and abort abandoned partial uploads.

Every method raises only :class:`~modelshelf.ModelshelfError` subclasses: each backend
translates its own errors once, at this boundary.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from .._errors import InvalidKeyError

__all__ = [
    "CREATE",
    "ContentOutcome",
    "SupportsContentAddressedPut",
    "SupportsHashedGet",
    "SupportsUploadDigest",
    "SupportsListFolders",
    "SupportsStaleUploads",
    "OVERWRITE",
    "IfMatch",
    "ObjectInfo",
    "ProgressCallback",
    "PutMode",
    "Store",
    "StoredObject",
    "check_key",
]

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just transferred."""

ContentOutcome = Literal["created", "verified", "replaced"]
"""What a content-addressed put did with the key."""


@dataclass(frozen=True)
class IfMatch:
    """Put mode: replace the object only if its current etag is ``etag``."""

    etag: str


CREATE: Literal["create"] = "create"
"""Put mode: write only if no object exists under the key (``If-None-Match: *``)."""
OVERWRITE: Literal["overwrite"] = "overwrite"
"""Put mode: write unconditionally."""

PutMode = Literal["create", "overwrite"] | IfMatch


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD tells about one object."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    sha256: str | None = None
    """The content digest the writer declared (S3 ``x-amz-meta-sha256``), from a HEAD."""
    checksum_sha256: str | None = None
    """The full-object SHA-256 the store computed and checked itself (S3 checksums), hex."""


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes with the etag they were read at."""

    key: str
    data: bytes
    etag: str


@runtime_checkable
class Store(Protocol):
    """An object store rooted at a registry URI; keys are relative ``a/b/c`` paths."""

    @property
    def uri(self) -> str:
        """The registry root this store addresses (``s3://bucket/prefix`` or ``file:///path``)."""
        ...

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        """Read an object.

        Args:
            key: The object key.
            if_none_match: An etag the caller already holds.

        Returns:
            The object, or ``None`` when ``if_none_match`` still matches (HTTP 304).

        Raises:
            KeyNotFoundError: No object under ``key``.
        """
        ...

    def head(self, key: str) -> ObjectInfo:
        """Size and etag of an object; raises ``KeyNotFoundError`` when absent."""
        ...

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        """Write ``data`` under ``key`` and return the new etag.

        Raises:
            PreconditionFailedError: ``mode`` was CREATE and the key exists, or
                ``IfMatch`` and the etag moved (or the key is gone).
        """
        ...

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        mode: PutMode = CREATE,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> str:
        """Upload a file, in parallel parts where the backend supports it.

        Args:
            key: The object key.
            path: The local file.
            mode: As for :meth:`put`.
            sha256: The hex digest the caller computed beforehand; the upload hashes the
                bytes it reads and raises ``IntegrityError`` (writing nothing) when the file
                changed in between.
            progress: Called with byte counts as parts complete.
        """
        ...

    def get_file(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> ObjectInfo:
        """Download an object into ``dest`` (created or truncated).

        Args:
            key: The object key.
            dest: The local file.
            progress: Called with byte counts.
            expected_size: The size the caller was promised (a manifest's); an object of
                another size raises ``IntegrityError`` before a byte is written, and no more
                than this many bytes are ever written.
        """
        ...

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects whose keys start with ``prefix``, in key order.

        Args:
            prefix: Only keys starting with this.
            start_after: Only keys that sort after this one (UTF-8 byte order), as S3's
                ``StartAfter``: a reader that knows where it stopped lists only what is new.
                Exact for keys in one folder level (``a/b/{k}``), which is how the registry
                uses it (docs/design.md, "Stores").
            limit: At most this many objects (the first ones in key order); S3 asks for one
                page of that size, so a bounded question costs one request.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove an object; removing a missing key is not an error."""
        ...


@runtime_checkable
class SupportsListFolders(Protocol):
    """A store that lists the folder names one level below a prefix."""

    def list_folders(self, prefix: str = "") -> list[str]:
        """Names (without slashes) of the "folders" directly below ``prefix``, sorted."""
        ...


@runtime_checkable
class SupportsContentAddressedPut(Protocol):
    """A store that hashes a file while it stores it under a key derived from the hash."""

    def put_file_content_addressed(
        self,
        key_for: Callable[[str], str],
        path: Path,
        *,
        progress: ProgressCallback | None = None,
    ) -> tuple[str, ContentOutcome]:
        """Store ``path`` under ``key_for(sha256)`` unless that key holds those bytes.

        An object already under the key is hashed again: when it does not match (bit rot, a
        hostile writer) it is replaced by the file's bytes, which hash to the key.

        Returns:
            The hex sha256 of the file and what happened: ``created``, ``verified`` (the
            stored object matched) or ``replaced``.
        """
        ...


@runtime_checkable
class SupportsHashedGet(Protocol):
    """A store that hashes a download as it writes it."""

    def get_file_hashed(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> tuple[ObjectInfo, str]:
        """Like :meth:`Store.get_file`, also returning the sha256 of the bytes written."""
        ...


@runtime_checkable
class SupportsUploadDigest(Protocol):
    """A store that hashes a file for a ``put_file`` that follows, in the same read."""

    def digest_for_upload(self, path: Path) -> str:
        """The hex sha256 of ``path``, remembering what uploading it unchanged needs.

        A ``put_file`` of the same, unchanged file then reads it only to send it; a file
        changed in between is hashed again there (and refused if it no longer matches).
        """
        ...


@runtime_checkable
class SupportsStaleUploads(Protocol):
    """A store whose uploads can be abandoned half-way (multipart uploads, temp files)."""

    def stale_uploads(self, prefix: str, older_than: timedelta) -> Sequence[object]:
        """Abandoned partial uploads below ``prefix`` older than ``older_than``."""
        ...

    def abort_stale_uploads(self, prefix: str, older_than: timedelta) -> int:
        """Remove them; returns how many were removed."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that are empty, absolute, or climb out of the root.

    Raises:
        InvalidKeyError: With the offending key.
    """
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKeyError(f"invalid store key {key!r}: keys are relative 'a/b/c' paths")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(key) != key:
        raise InvalidKeyError(
            f"invalid store key {key!r}: empty, '.' or '..' path segments are not allowed"
        )
    return key
