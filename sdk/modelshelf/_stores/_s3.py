"""A registry in an S3 bucket (AWS S3 or any S3-compatible store: MinIO, SeaweedFS, Ceph, R2).

Conditional writes map one to one onto S3's: create is ``PutObject`` (or
``CompleteMultipartUpload``) with ``If-None-Match: *``, replace-if-match is ``If-Match: etag``.

Failures are translated into modelshelf errors in exactly one place (``_s3_errors.translate``) and
retried in exactly one loop (:meth:`S3Store._with_retries`): 5xx answers, throttling, 409
``ConditionalRequestConflict``, connection resets and timeouts are retried with exponential
backoff and jitter; a 412 never is. botocore's own retries are switched off on the clients
built here so that a retry is always a decision this module made and could account for.

A conditional write whose earlier attempt ended with an unknown outcome (the request was sent,
then the connection broke, the read timed out or the server answered 5xx) may have landed. If
its retry then answers 412, the 412 may be our own earlier write. Every object written here
carries its content's sha256 as ``x-amz-meta-sha256``, so one HEAD tells: the same digest means
the write landed and counts as a success; a different one is a real conflict. When even that
cannot be read, :class:`~modelshelf.CommitStateUnknownError` tells the caller to read the state
again before deciding anything.
"""

from __future__ import annotations

import base64
import builtins
import concurrent.futures as cf
import functools
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ProfileNotFound,
)
from botocore.loaders import Loader, create_loader
from botocore.parsers import ResponseParserFactory
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from .._errors import (
    CommitStateUnknownError,
    ConfigurationError,
    IntegrityError,
    InvalidKeyError,
    KeyNotFoundError,
    ModelshelfError,
    PreconditionFailedError,
)
from .._hashing import sha256_file
from .._settings import endpoint_url_setting, parse_bool, parse_int, parse_size, setting
from ._protocol import (
    CREATE,
    OVERWRITE,
    IfMatch,
    ObjectInfo,
    ProgressCallback,
    PutMode,
    StoredObject,
    check_key,
)
from ._s3_direct import DirectS3, direct_transport_for
from ._s3_errors import Kind, http_status, kind_of, outcome_unknown, translate
from ._s3_timestamps import parse_s3_timestamp
from ._s3_transfer import (
    FileWindow,
    Identity,
    PreparedUpload,
    PreparedUploads,
    RangeHasher,
    check_prepared,
    check_unchanged,
    drain_into,
    file_identity,
    hash_range,
    prepare_upload,
)

__all__ = ["S3Store"]

_T = TypeVar("_T")

MiB = 1024 * 1024
_MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
_MAX_PART = 5 * 1024 * MiB
_MAX_PARTS = 10_000
_DEFAULT_PART_SIZE = 64 * MiB
_DEFAULT_CONCURRENCY = 8
_DEFAULT_MAX_ATTEMPTS = 6
_DEFAULT_RETRY_DELAY = 0.2
_MAX_RETRY_DELAY = 10.0
_STREAM_CHUNK = 1 * MiB
_MAX_RANGE = 16 * MiB  # downloads: ranges of the part size, at most this
_META_SHA256 = "sha256"  # sent as x-amz-meta-sha256
_LOADERS: dict[str | None, Loader] = {}
_LOADERS_LOCK = threading.Lock()


def _etag(raw: str) -> str:
    # Some S3-compatibles quote etags in one answer and not in another; keep them bare.
    return raw.strip().strip('"')


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _condition(mode: PutMode) -> dict[str, str]:
    if mode == CREATE:
        return {"IfNoneMatch": "*"}
    if mode == OVERWRITE:
        return {}
    if isinstance(mode, IfMatch):
        return {"IfMatch": _quoted(_etag(mode.etag))}
    raise TypeError(f"unknown put mode {mode!r}")


def _parse_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigurationError(f"{uri!r} is not an s3://bucket[/prefix] URI")
    if parsed.query or parsed.fragment or parsed.params:
        raise ConfigurationError(f"{uri!r}: S3 registry URIs take no query or fragment")
    prefix = parsed.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except InvalidKeyError as exc:
            raise ConfigurationError(f"{uri!r} has an invalid prefix: {exc}") from exc
    return parsed.netloc, prefix


@dataclass(frozen=True)
class _Write:
    """A conditional write, with what is needed to tell later whether it landed."""

    key: str
    mode: PutMode
    sha256: str
    size: int


class S3Store:
    """A store in an S3 bucket, under an optional key prefix.

    Settings come from the argument, else the environment, else the default.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: A ready boto3 S3 client; when given, ``endpoint_url``, ``profile`` and
            ``region`` are ignored and its own retry settings apply on top of ours.
        endpoint_url: An S3-compatible endpoint; wins over ``AWS_ENDPOINT_URL_S3`` and
            ``AWS_ENDPOINT_URL`` (which boto3 reads itself). Any endpoint switches to
            path-style addressing.
        profile: An AWS profile name; ``None`` uses the standard credential chain.
        region: The bucket's region; ``None`` uses the profile's or ``AWS_REGION``.
        part_size: Multipart part size in bytes (``MODELSHELF_PART_SIZE``, accepts ``64MiB``;
            default 64 MiB). Files larger than one part go up as parallel parts; larger
            objects come down as parallel ranged reads of the same size.
        max_concurrency: Parallel part transfers (``MODELSHELF_CONCURRENCY``; default 8).
        max_attempts: Attempts per request before giving up (``MODELSHELF_MAX_ATTEMPTS``;
            default 6).
        part_checksums: Send SHA-256 checksums per request and part so S3 verifies every
            part in transit (``MODELSHELF_PART_CHECKSUMS``; default on, except for botocore's
            requests to plain ``http://`` endpoints, where SigV4 already signs each body's
            sha256; the direct transport's upload parts carry them unless this is set off,
            as their digests are known already). Turn off for S3-compatibles that reject
            ``x-amz-checksum-*`` headers.
        retry_delay: Base of the exponential backoff in seconds (default 0.2; capped at 10).
        direct_http: Send GetObject, HeadObject, PutObject, DeleteObject, ListObjectsV2 and
            multipart uploads through modelshelf's own signed-request transport instead of
            botocore where it fits: an explicit endpoint, path-style, no proxy, a client the
            store built (``MODELSHELF_DIRECT_HTTP``; default on). It costs a fifth of
            botocore's client CPU per request; turn it off to send everything through botocore
            (and its hooks).

    Raises:
        ConfigurationError: A malformed URI, an unknown profile or an out-of-range setting.
    """

    def __init__(
        self,
        uri: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        part_size: int | None = None,
        max_concurrency: int | None = None,
        max_attempts: int | None = None,
        part_checksums: bool | None = None,
        retry_delay: float | None = None,
        direct_http: bool | None = None,
    ) -> None:
        self._bucket, self._prefix = _parse_uri(uri)
        self._part_size = setting(part_size, "MODELSHELF_PART_SIZE", _DEFAULT_PART_SIZE, parse_size)
        self._concurrency = setting(
            max_concurrency, "MODELSHELF_CONCURRENCY", _DEFAULT_CONCURRENCY, parse_int
        )
        self._max_attempts = setting(
            max_attempts, "MODELSHELF_MAX_ATTEMPTS", _DEFAULT_MAX_ATTEMPTS, parse_int
        )
        endpoint = (
            getattr(getattr(client, "meta", None), "endpoint_url", None)
            if client is not None
            else endpoint_url_setting(endpoint_url)
        )
        # Over plain HTTP botocore already signs every request body's sha256 and the server
        # checks it; a checksum header on top would hash every byte a second time (14% of a
        # 1 GiB push measured on SeaweedFS). Over TLS the checksum replaces payload signing.
        plain_http = isinstance(endpoint, str) and endpoint.startswith("http://")
        chosen = setting(part_checksums, "MODELSHELF_PART_CHECKSUMS", None, parse_bool)
        self._checksums = (not plain_http) if chosen is None else chosen
        # The direct transport's parts carry a checksum the read before the upload computed
        # already; only an explicit "off" (an S3-compatible that rejects it) leaves it out.
        self._direct_part_checksums = chosen is not False
        self._prepared = PreparedUploads()
        self._retry_delay = _DEFAULT_RETRY_DELAY if retry_delay is None else retry_delay
        self._range_size = min(self._part_size, _MAX_RANGE)
        if not _MIN_PART <= self._part_size <= _MAX_PART:
            raise ConfigurationError(
                f"part size {self._part_size} is outside S3's limits "
                f"({_MIN_PART} bytes to {_MAX_PART} bytes)"
            )
        if not 1 <= self._concurrency <= 256:
            raise ConfigurationError(f"concurrency {self._concurrency} must be 1 to 256")
        if not 1 <= self._max_attempts <= 100:
            raise ConfigurationError(f"max attempts {self._max_attempts} must be 1 to 100")
        if self._retry_delay < 0:
            raise ConfigurationError(f"retry delay {self._retry_delay} must not be negative")
        self._direct: DirectS3 | None = None
        # The botocore client is built when something first needs it (about 0.15 s of every
        # CLI run): on the direct transport a pull, a listing or a small push never does.
        self._built_client: Any = client
        self._client_lock = threading.Lock()
        self._hooks: list[Callable[..., None]] = []
        if client is None:
            self._endpoint_arg = endpoint_url
            self._config = self._client_config(endpoint_url)
            self._session = self._make_session(endpoint_url, profile, region)
            if setting(direct_http, "MODELSHELF_DIRECT_HTTP", True, parse_bool):
                self._direct = direct_transport_for(
                    self._session,
                    self._config,
                    endpoint_url=endpoint_url_setting(endpoint_url),
                    max_connections=4 * self._concurrency + 8,
                )

    @property
    def _client(self) -> Any:
        client = self._built_client
        if client is None:
            with self._client_lock:
                if self._built_client is None:
                    built = self._create_client()
                    for hook in self._hooks:
                        built.meta.events.register("before-parameter-build.s3", hook)
                    self._built_client = built
                client = self._built_client
        return client

    @property
    def _transport(self) -> Any:
        # Object reads, writes, deletes, listings and multipart uploads go direct where that
        # fits; the rest (admin calls), botocore.
        return self._direct if self._direct is not None else self._client

    def _client_config(self, endpoint_url: str | None) -> Config:
        # boto3 reads AWS_ENDPOINT_URL(_S3) itself; we look only to choose the addressing style.
        endpoint = endpoint_url_setting(endpoint_url)
        return Config(
            connect_timeout=10,
            read_timeout=120,
            tcp_keepalive=True,
            # We retry ourselves and must know about every attempt (ambiguous writes).
            retries={"mode": "standard", "total_max_attempts": 1},
            # Parts of a few large files, or many small files at once (_versions/_pool.py).
            max_pool_connections=4 * self._concurrency + 8,
            s3={"addressing_style": "path"} if endpoint else None,
            request_checksum_calculation="when_supported" if self._checksums else "when_required",
            response_checksum_validation="when_supported" if self._checksums else "when_required",
            user_agent_extra="modelshelf",
        )

    def _make_session(
        self, endpoint_url: str | None, profile: str | None, region: str | None
    ) -> botocore.session.Session:
        try:
            if endpoint_url is not None and not (
                is_valid_endpoint_url(endpoint_url) or is_valid_ipv6_endpoint_url(endpoint_url)
            ):
                raise ValueError(f"Invalid endpoint: {endpoint_url}")  # botocore's words
            # botocore's own session, not boto3's: boto3 adds nothing this store uses but
            # its import (s3transfer among it), about 50 ms of every CLI run (measured).
            core = _botocore_session()
            if profile is not None:
                if profile not in core.available_profiles:
                    raise ProfileNotFound(profile=profile)
                core.set_config_variable("profile", profile)
            if region is not None:
                core.set_config_variable("region", region)
            return core
        except (ProfileNotFound, BotoCoreError, ValueError) as exc:
            raise ConfigurationError(f"cannot set up an S3 client for {self.uri}: {exc}") from exc

    def _create_client(self) -> Any:
        try:
            return self._session.create_client(
                "s3", endpoint_url=self._endpoint_arg, config=self._config
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigurationError(f"cannot set up an S3 client for {self.uri}: {exc}") from exc

    # -- identity ----------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix under which registry keys live ('' for the bucket root)."""
        return self._prefix

    @property
    def client(self) -> Any:
        """The boto3 S3 client, shared by every thread of this store."""
        return self._client

    @property
    def direct(self) -> bool:
        """Whether GetObject and PutObject go through the direct transport."""
        return self._direct is not None

    def observe_requests(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``callback(operation, params)`` before each S3 request, on either transport.

        For counting requests in tests and benchmarks. Each attempt is one request on both
        transports (botocore itself never retries: the store's own loop does).
        """

        def hook(model: Any, params: dict[str, Any], **_: Any) -> None:
            callback(model.name, params)

        with self._client_lock:
            if self._built_client is None:
                self._hooks.append(hook)  # registered when the client is built
            else:
                self._built_client.meta.events.register("before-parameter-build.s3", hook)
        if self._direct is not None:
            self._direct.observe(callback)

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _where(self, key: str) -> str:
        return f"{key!r} in {self.uri}"

    # -- the one retry loop ------------------------------------------------------------

    def _with_retries(
        self,
        action: str,
        call: Callable[[], _T],
        *,
        write: _Write | None = None,
        completing: bool = False,
    ) -> _T:
        """Run ``call``, retrying what is worth retrying, and translate what is left.

        Args:
            action: What is attempted, for messages.
            call: One attempt.
            write: Set for conditional writes: after an attempt whose outcome is unknown, a
                412 (or a vanished key or upload) is checked against the stored digest.
            completing: The call completes a multipart upload, whose upload id vanishes
                once an earlier attempt succeeded.
        """
        ambiguous = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except (ClientError, BotoCoreError) as exc:
                kind = kind_of(exc)
                if kind is Kind.RETRY and attempt < self._max_attempts:
                    ambiguous = ambiguous or (write is not None and outcome_unknown(exc))
                    self._backoff(attempt)
                    continue
                mode = write.mode if write is not None else None
                if write is not None and ambiguous:
                    if kind is Kind.RETRY:
                        raise CommitStateUnknownError(
                            f"cannot tell whether {action} landed: an attempt's outcome was "
                            f"unknown and the store kept failing ({exc}); read it again"
                        ) from exc
                    if (
                        kind is Kind.PRECONDITION
                        or (kind is Kind.MISSING and isinstance(mode, IfMatch))
                        or (kind is Kind.NO_UPLOAD and completing)
                    ):
                        return self._landed_etag(write, action, exc)  # type: ignore[return-value]
                raise translate(exc, action=action, mode=mode, bucket=self._bucket) from exc

    def _backoff(self, attempt: int) -> None:
        ceiling = min(_MAX_RETRY_DELAY, self._retry_delay * 2 ** (attempt - 1))
        # Equal jitter: never a zero wait, and racing writers spread out.
        time.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))

    def _landed_etag(self, write: _Write, action: str, exc: Exception) -> str:
        """After an ambiguous attempt and a refusal: did our own earlier attempt land?

        Returns:
            The stored object's etag when it holds our bytes.

        Raises:
            PreconditionFailedError: Someone else's bytes are there (a real conflict).
            CommitStateUnknownError: The stored state could not be read or explained.
        """
        try:
            head = self._head_raw(write.key)
            stored = head.get("Metadata", {}).get(_META_SHA256)
            etag = _etag(head["ETag"])
            if stored is None and int(head.get("ContentLength", -1)) == write.size:
                # Written by something that does not label its objects: hash the bytes.
                stored = self._digest_of(write.key, etag)
        except KeyNotFoundError as err:
            if isinstance(write.mode, IfMatch):
                raise PreconditionFailedError(
                    f"cannot {action}: the object is gone, so its etag cannot match"
                ) from err
            raise CommitStateUnknownError(
                f"cannot tell whether {action} landed: the store refused the retry ({exc}) "
                "but now holds no object; read it again"
            ) from err
        except ModelshelfError as err:
            raise CommitStateUnknownError(
                f"cannot tell whether {action} landed: an attempt's outcome was unknown and "
                f"the object could not be read back ({err}); read it again"
            ) from err
        if stored == write.sha256:
            return etag
        raise PreconditionFailedError(
            f"cannot {action}: a precondition failed and the stored object holds other "
            f"content ({exc})"
        ) from exc

    def _digest_of(self, key: str, etag: str) -> str:
        full = self._full(key)

        def call() -> str:
            body = self._transport.get_object(Bucket=self._bucket, Key=full, IfMatch=_quoted(etag))[
                "Body"
            ]
            digest = hashlib.sha256()
            try:
                for chunk in body.iter_chunks(_STREAM_CHUNK):
                    digest.update(chunk)
            finally:
                body.close()
            return digest.hexdigest()

        return self._with_retries(f"read {self._where(key)}", call)

    # -- reads -------------------------------------------------------------------------

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        full = self._full(key)
        extra = {} if if_none_match is None else {"IfNoneMatch": _quoted(_etag(if_none_match))}

        def call() -> StoredObject | None:
            try:
                response = self._transport.get_object(Bucket=self._bucket, Key=full, **extra)
            except ClientError as exc:
                if http_status(exc) == 304:
                    return None  # unchanged: an answer, not a failure
                raise
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            return StoredObject(key=key, data=data, etag=_etag(response["ETag"]))

        return self._with_retries(f"read {self._where(key)}", call)

    def _head_raw(self, key: str) -> dict[str, Any]:
        full = self._full(key)
        result: dict[str, Any] = self._with_retries(
            f"read {self._where(key)}",
            lambda: self._transport.head_object(Bucket=self._bucket, Key=full),
        )
        return result

    def head(self, key: str) -> ObjectInfo:
        full = self._full(key)
        # ChecksumMode: S3 returns the SHA-256 it checked on upload (a push verifies a blob
        # it reuses against it; docs/design.md, invariant 1).
        response: dict[str, Any] = self._with_retries(
            f"read {self._where(key)}",
            lambda: self._transport.head_object(
                Bucket=self._bucket, Key=full, ChecksumMode="ENABLED"
            ),
        )
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=_etag(response["ETag"]),
            last_modified=response.get("LastModified"),
            sha256=response.get("Metadata", {}).get(_META_SHA256),
            checksum_sha256=_full_object_sha256(response),
        )

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        root = f"{self._prefix}/" if self._prefix else ""
        # S3 lists in UTF-8 byte order, but some S3-compatibles (SeaweedFS) walk folders
        # and give 'a/b/c' before 'a/b-c'; sorting here makes every backend agree.
        found = builtins.list(self._list(root, prefix, start_after, limit))
        if start_after is not None:
            after = start_after.encode()
            found = [info for info in found if info.key.encode() > after]
        found.sort(key=lambda info: info.key.encode())
        return iter(found if limit is None else found[:limit])

    def list_folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate "folders" under ``prefix`` (a delimiter listing)."""
        root = f"{self._prefix}/" if self._prefix else ""
        names: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self._bucket,
                "Prefix": root + prefix,
                "Delimiter": "/",
            }
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = self._with_retries(
                f"list folders {prefix!r} in {self.uri}",
                functools.partial(self._transport.list_objects_v2, **kwargs),
            )
            for item in page.get("CommonPrefixes", ()):
                names.add(item["Prefix"][len(root) + len(prefix) :].rstrip("/"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(names)

    def stale_uploads(self, prefix: str, older_than: timedelta) -> builtins.list[tuple[str, str]]:
        """Unfinished multipart uploads under ``prefix`` started before ``older_than`` ago.

        Returns:
            ``(key, upload_id)`` pairs.
        """
        root = f"{self._prefix}/" if self._prefix else ""
        cutoff = datetime.now(UTC) - older_than
        found: builtins.list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": root + prefix}
        while True:
            page: dict[str, Any] = self._with_retries(
                f"list multipart uploads {prefix!r} in {self.uri}",
                functools.partial(self._transport.list_multipart_uploads, **kwargs),
            )
            for upload in page.get("Uploads", ()):
                # An upload whose start the server does not say is not known to be stale.
                initiated = upload.get("Initiated")
                if initiated is not None and initiated < cutoff:
                    found.append((upload["Key"][len(root) :], upload["UploadId"]))
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def abort_stale_uploads(self, prefix: str, older_than: timedelta) -> int:
        """Abort the uploads :meth:`stale_uploads` finds; returns how many."""
        stale = self.stale_uploads(prefix, older_than)
        for key, upload_id in stale:
            self._with_retries(
                f"abort upload of {self._where(key)}",
                functools.partial(
                    self._transport.abort_multipart_upload,
                    Bucket=self._bucket,
                    Key=self._full(key),
                    UploadId=upload_id,
                ),
            )
        return len(stale)

    def _list(
        self, root: str, prefix: str, start_after: str | None, limit: int | None
    ) -> Iterator[ObjectInfo]:
        token: str | None = None
        seen = 0
        after = start_after.encode() if start_after is not None else None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": root + prefix}
            if start_after is not None:
                # SeaweedFS skips the whole folder that StartAfter's last segment names
                # ('m/w' skips 'm/w/x'); asking from one character earlier and dropping the
                # extra keys in list() is exact on every backend.
                kwargs["StartAfter"] = root + start_after[:-1]
            if limit is not None:
                # One more than asked for: the key StartAfter's earlier start brings back.
                kwargs["MaxKeys"] = max(1, min(limit + 1, 1000))
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = self._with_retries(
                f"list {prefix!r} in {self.uri}",
                functools.partial(self._transport.list_objects_v2, **kwargs),
            )
            for item in page.get("Contents", ()):
                if after is not None and item["Key"][len(root) :].encode() <= after:
                    continue
                seen += 1
                yield ObjectInfo(
                    key=item["Key"][len(root) :],
                    size=int(item["Size"]),
                    etag=_etag(item.get("ETag", "")),
                    last_modified=item.get("LastModified"),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            if limit is not None and seen >= limit:
                return

    def get_file(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> ObjectInfo:
        info, _ = self._download(key, Path(dest), progress, hashed=False, expected=expected_size)
        return info

    def get_file_hashed(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> tuple[ObjectInfo, str]:
        """Like :meth:`get_file`, also returning the sha256 of the bytes written.

        The parallel ranged GETs write each byte once; a hashing thread follows them and
        hashes the written prefix in order from the page cache, so nothing waits in memory
        and the digest is of the bytes as they lie in the file.
        """
        info, digest = self._download(
            key, Path(dest), progress, hashed=True, expected=expected_size
        )
        assert digest is not None
        return info, digest

    def _download(
        self,
        key: str,
        dest: Path,
        progress: ProgressCallback | None,
        *,
        hashed: bool,
        expected: int | None = None,
    ) -> tuple[ObjectInfo, str | None]:
        """One GET of the first range (size and etag from its answer), then the rest in
        parallel ranges with If-Match on that etag; every byte written once where it goes and
        hashed, when asked, from the file by a thread that follows the writers.
        """
        full = self._full(key)
        action = f"download {self._where(key)}"
        span = self._range_size
        # Bounded by the manifest (invariant 2): the first range asks for no more than the
        # declared size, and an object of another size is refused before a byte is written.
        first_span = min(span, expected) if expected else span
        response = self._with_retries(action, lambda: self._get_first(full, first_span))
        etag = _etag(response["ETag"])
        modified = response.get("LastModified")
        total, first_end = _content_range(response)
        if expected is not None and total != expected:
            response["Body"].close()
            raise _size_error(self._where(key), total, expected)
        ranges = [(0, first_end + 1)] + [
            (start, min(start + span, total)) for start in range(first_end + 1, total, span)
        ]
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        hasher: RangeHasher | None = None
        try:
            if len(ranges) > 1:
                os.ftruncate(fd, total)
            hasher = RangeHasher(fd, ranges) if hashed else None

            def first(on_written: Callable[[int, int], None]) -> None:
                reached, _ = drain_into(response["Body"], fd, 0, first_end + 1, on_written)
                if reached <= first_end:
                    # The stream broke: go on from where it stopped, same generation.
                    self._read_range(full, action, fd, reached, first_end + 1, etag, on_written)

            self._parallel_ranges(full, action, etag, fd, ranges, first, hasher, progress)
            digest = hasher.hexdigest() if hasher is not None else None
        finally:
            os.close(fd)
        info = ObjectInfo(key=key, size=total, etag=etag, last_modified=modified)
        return info, digest

    def _get_first(self, full: str, span: int) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._transport.get_object(
                Bucket=self._bucket, Key=full, Range=f"bytes=0-{span - 1}"
            )
        except ClientError as exc:
            if http_status(exc) != 416:
                raise
            # An empty object has no first byte to ask for.
            response = self._transport.get_object(Bucket=self._bucket, Key=full)
        return response

    def _parallel_ranges(
        self,
        full: str,
        action: str,
        etag: str,
        fd: int,
        ranges: builtins.list[tuple[int, int]],
        first: Callable[[Callable[[int, int], None]], None],
        hasher: RangeHasher | None,
        progress: ProgressCallback | None,
    ) -> None:
        """Every range into ``fd`` (the first from the answer already open), ``hasher``
        following on a thread of its own."""

        def reporter(index: int) -> Callable[[int, int], None]:
            def on_written(reached: int, nbytes: int) -> None:
                if hasher is not None:
                    hasher.advance(index, reached)
                if progress is not None:
                    progress(nbytes)

            return on_written

        def one(index: int) -> None:
            start, end = ranges[index]
            self._read_range(full, action, fd, start, end, etag, reporter(index))

        if len(ranges) == 1:
            # One range (every small file): written, then hashed on this thread; a thread of
            # its own would cost more than the hash.
            first(reporter(0))
            if hasher is not None:
                hasher.run()
            return
        hashing = None
        if hasher is not None:
            hashing = threading.Thread(target=hasher.run, name="modelshelf-hash", daemon=True)
            hashing.start()
        workers = min(self._concurrency, len(ranges))
        try:
            with cf.ThreadPoolExecutor(workers, thread_name_prefix="modelshelf-get") as pool:
                # FIFO: ranges start in file order, so the hash follows close behind.
                futures = [pool.submit(first, reporter(0))]
                futures += [pool.submit(one, i) for i in range(1, len(ranges))]
                try:
                    for future in cf.as_completed(futures):
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        except BaseException:
            if hasher is not None:
                hasher.cancel()
            raise
        finally:
            if hashing is not None:
                hashing.join()

    def _read_range(
        self,
        full: str,
        action: str,
        fd: int,
        start: int,
        end: int,
        etag: str,
        on_written: Callable[[int, int], None],
    ) -> None:
        """Bytes ``start..end`` (end exclusive) into ``fd``; a retry goes on from the byte
        reached."""
        reached = start

        def call() -> None:
            nonlocal reached
            # If-Match: every range must come from the same object generation.
            response = self._transport.get_object(
                Bucket=self._bucket,
                Key=full,
                Range=f"bytes={reached}-{end - 1}",
                IfMatch=_quoted(etag),
            )
            reached, error = drain_into(response["Body"], fd, reached, end, on_written)
            if error is not None:
                raise error  # retried from the byte reached

        self._with_retries(action, call)

    # -- writes ------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        full = self._full(key)
        data = bytes(data)
        return self._put_object(key, full, data, hashlib.sha256(data).digest(), mode)

    def _put_object(self, key: str, full: str, data: bytes, digest: bytes, mode: PutMode) -> str:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": full,
            "Body": data,
            "Metadata": {_META_SHA256: digest.hex()},
            **_condition(mode),
        }
        if key.endswith(".html"):
            # {model}/report.html: a browser given a presigned URL shows it, not downloads it.
            kwargs["ContentType"] = "text/html; charset=utf-8"
        if self._checksums:
            kwargs["ChecksumSHA256"] = base64.b64encode(digest).decode()
        write = _Write(key=key, mode=mode, sha256=digest.hex(), size=len(data))
        direct = self._direct
        if direct is not None:
            kwargs["PayloadSHA256"] = digest.hex()
        put = direct.put_object if direct is not None else self._client.put_object
        return self._with_retries(
            f"write {self._where(key)}",
            lambda: _etag(put(**kwargs)["ETag"]),
            write=write if mode != OVERWRITE else None,
        )

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        mode: PutMode = CREATE,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> str:
        full = self._full(key)
        _condition(mode)  # refuse an unknown mode before reading anything
        path = Path(path)
        size = path.stat().st_size
        expected = sha256.lower() if sha256 is not None else None
        if size <= self._part_size:
            data = path.read_bytes()
            digest = hashlib.sha256(data).digest()
            if expected is not None and digest.hex() != expected:
                raise IntegrityError(
                    f"{path} does not match its sha256 (read {digest.hex()}, expected "
                    f"{expected}); nothing was written"
                )
            etag = self._put_object(key, full, data, digest, mode)
            if progress is not None:
                progress(len(data))
            return etag
        if expected is None:
            # The digest goes into the object's metadata when the upload starts, so it must
            # be known first; the upload checks the bytes it sends against it.
            expected = self.digest_for_upload(path)
        return self._put_multipart(key, full, path, size, mode, expected, progress)

    def digest_for_upload(self, path: Path) -> str:
        """The hex sha256 of ``path``; on the direct transport, each part's sha256 too.

        The part digests are kept under the file's identity until a :meth:`put_file` of the
        unchanged file takes them: its parts then go up signed with them, read once more only
        to be sent (docs/design.md, "Put modes").
        """
        path = Path(path)
        size = path.stat().st_size
        if self._direct is None or size <= self._part_size:
            return sha256_file(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            prepared = prepare_upload(fd, self._part_size_for(os.fstat(fd).st_size))
        finally:
            os.close(fd)
        if prepared is None:
            # It changed while it was hashed: the upload will hash it again.
            return sha256_file(path)
        self._prepared.keep(prepared)
        return prepared.sha256

    def _part_size_for(self, size: int) -> int:
        if size > self._part_size * _MAX_PARTS:
            return -(-size // (_MAX_PARTS * MiB)) * MiB  # whole MiB, ceiling
        return self._part_size

    def _put_multipart(
        self,
        key: str,
        full: str,
        path: Path,
        size: int,
        mode: PutMode,
        sha256: str,
        progress: ProgressCallback | None,
    ) -> str:
        action = f"upload the file {str(path)!r} to {self._where(key)}"
        part_size = self._part_size_for(size)
        direct = self._direct
        checksums = self._direct_part_checksums if direct is not None else self._checksums
        fd = os.open(path, os.O_RDONLY)
        try:
            prepared = None
            if direct is not None:
                prepared = self._prepared.take(fd, part_size) or prepare_upload(fd, part_size)
                check_prepared(path, prepared, sha256)
            create: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": full,
                "Metadata": {_META_SHA256: sha256},
            }
            if checksums:
                create["ChecksumAlgorithm"] = "SHA256"
            # With its parts: on the direct transport where that fits (their digests are known).
            upload_id: str = self._with_retries(
                action, lambda: self._transport.create_multipart_upload(**create)["UploadId"]
            )
            try:
                if prepared is not None:
                    parts = self._upload_prepared_parts(
                        full, upload_id, path, fd, prepared, checksums, action, progress
                    )
                else:
                    parts = self._upload_parts(
                        full, upload_id, path, fd, part_size, sha256, action, progress
                    )
                return self._complete(key, full, upload_id, parts, mode, sha256, size, action)
            except BaseException:
                self._abort(full, upload_id)
                raise
        finally:
            os.close(fd)

    def _complete(
        self,
        key: str,
        full: str,
        upload_id: str,
        parts: builtins.list[dict[str, Any]],
        mode: PutMode,
        sha256: str,
        size: int,
        action: str,
    ) -> str:
        complete: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": full,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
            **_condition(mode),
        }
        write = _Write(key=key, mode=mode, sha256=sha256, size=size)
        return self._with_retries(
            action,
            lambda: _etag(self._transport.complete_multipart_upload(**complete)["ETag"]),
            write=write if mode != OVERWRITE else None,
            completing=True,
        )

    def _upload_parts(
        self,
        full: str,
        upload_id: str,
        path: Path,
        fd: int,
        part_size: int,
        sha256: str,
        action: str,
        progress: ProgressCallback | None,
    ) -> builtins.list[dict[str, Any]]:
        """Upload parts through botocore in parallel, each streamed from the file, and check
        the file.

        No part is held in memory: each body is a :class:`FileWindow` read as it is sent.
        Meanwhile this thread hashes the file front to back; the digest must be ``sha256``
        and the file's identity and times must not move from before that pass to after the
        last part (any write moves ``ctime``), so the bytes sent are the bytes hashed.
        """
        before = file_identity(fd)
        size = before[1]

        def check_file() -> None:
            digest = hash_range(fd, size)
            if digest != sha256:
                raise IntegrityError(
                    f"{path} does not match its sha256 (read {digest}, expected "
                    f"{sha256}); it changed since it was hashed, and nothing was written"
                )

        parts = self._run_parts(
            [
                functools.partial(
                    self._upload_part,
                    full,
                    upload_id,
                    number,
                    fd,
                    start,
                    min(part_size, size - start),
                    action,
                )
                for number, start in enumerate(range(0, size, part_size), start=1)
            ],
            check_file,
            progress,
        )
        check_unchanged(path, fd, before)
        return parts

    def _upload_prepared_parts(
        self,
        full: str,
        upload_id: str,
        path: Path,
        fd: int,
        prepared: PreparedUpload,
        checksums: bool,
        action: str,
        progress: ProgressCallback | None,
    ) -> builtins.list[dict[str, Any]]:
        """Upload parts on the direct transport, each signed with the digest the read before
        the upload gave it (and carrying it as a checksum), so nothing hashes them on the way
        and the server checks each against that read (docs/design.md, "Put modes")."""
        size, part_size = prepared.identity[1], prepared.part_size
        uploads = [
            functools.partial(
                self._upload_prepared_part,
                full,
                upload_id,
                path,
                prepared.identity,
                number,
                fd,
                start,
                min(part_size, size - start),
                prepared.parts[number - 1],
                checksums,
                action,
            )
            for number, start in enumerate(range(0, size, part_size), start=1)
        ]
        parts = self._run_parts(uploads, None, progress)
        check_unchanged(path, fd, prepared.identity)
        return parts

    def _run_parts(
        self,
        uploads: Sequence[Callable[[], tuple[dict[str, Any], int]]],
        meanwhile: Callable[[], None] | None,
        progress: ProgressCallback | None,
    ) -> builtins.list[dict[str, Any]]:
        """Run the part uploads in parallel (``meanwhile`` on this thread); the parts in
        order, or the first failure with the rest cancelled."""
        parts: dict[int, dict[str, Any]] = {}
        workers = max(1, min(self._concurrency, len(uploads)))
        with cf.ThreadPoolExecutor(workers, thread_name_prefix="modelshelf-put") as pool:
            futures = [pool.submit(upload) for upload in uploads]
            try:
                if meanwhile is not None:
                    meanwhile()
                for future in cf.as_completed(futures):
                    part, nbytes = future.result()
                    parts[part["PartNumber"]] = part
                    if progress is not None:
                        progress(nbytes)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [parts[n] for n in sorted(parts)]

    def _upload_part(
        self,
        full: str,
        upload_id: str,
        number: int,
        fd: int,
        start: int,
        length: int,
        action: str,
    ) -> tuple[dict[str, Any], int]:
        def call() -> dict[str, Any]:
            kwargs: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": full,
                "UploadId": upload_id,
                "PartNumber": number,
                "Body": FileWindow(fd, start, length),  # fresh per attempt: read from 0
                "ContentLength": length,
            }
            if self._checksums:
                kwargs["ChecksumAlgorithm"] = "SHA256"
            response = self._client.upload_part(**kwargs)
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if response.get("ChecksumSHA256"):
                part["ChecksumSHA256"] = response["ChecksumSHA256"]
            return part

        return self._with_retries(f"{action} (part {number})", call), length

    def _upload_prepared_part(
        self,
        full: str,
        upload_id: str,
        path: Path,
        identity: Identity,
        number: int,
        fd: int,
        start: int,
        length: int,
        digest: bytes,
        checksums: bool,
        action: str,
    ) -> tuple[dict[str, Any], int]:
        direct = self._direct
        assert direct is not None
        checksum = base64.b64encode(digest).decode() if checksums else None

        def call() -> dict[str, Any]:
            try:
                response = direct.upload_part(
                    Bucket=self._bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=FileWindow(fd, start, length),  # fresh per attempt: read from 0
                    ContentLength=length,
                    PayloadSHA256=digest.hex(),
                    ChecksumSHA256=checksum,
                )
            except ClientError:
                # A file written since it was hashed is refused for its digest on every
                # attempt: say so now instead of retrying.
                check_unchanged(path, fd, identity)
                raise
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if checksum is not None:
                part["ChecksumSHA256"] = checksum
            return part

        return self._with_retries(f"{action} (part {number})", call), length

    def _abort(self, full: str, upload_id: str) -> None:
        # Best effort: an upload left behind costs storage until a lifecycle rule ends it,
        # and must not hide the error that got us here.
        try:
            self._transport.abort_multipart_upload(
                Bucket=self._bucket, Key=full, UploadId=upload_id
            )
        except (ClientError, BotoCoreError):
            pass

    def delete(self, key: str) -> None:
        full = self._full(key)

        def call() -> None:
            try:
                self._transport.delete_object(Bucket=self._bucket, Key=full)
            except ClientError as exc:
                if kind_of(exc) is not Kind.MISSING:
                    raise

        self._with_retries(f"delete {self._where(key)}", call)


def _botocore_session() -> botocore.session.Session:
    """A new botocore session that shares the parsed service models of earlier ones.

    Each session otherwise parses botocore's S3 model and endpoint rules again (about
    0.1 s); the data loader only caches files that never change, while credentials, profile
    and region stay per session.
    """
    session = botocore.session.get_session()
    data_path = session.get_config_variable("data_path")
    with _LOADERS_LOCK:
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = create_loader(data_path)
    session.register_component("data_loader", loader)
    parsers = ResponseParserFactory()
    parsers.set_parser_defaults(timestamp_parser=parse_s3_timestamp)
    session.register_component("response_parser_factory", parsers)
    return session


def _content_range(response: dict[str, Any]) -> tuple[int, int]:
    """``(object size, last byte of this answer)`` of a ranged GET's answer."""
    length = int(response.get("ContentLength", 0))
    text = response.get("ContentRange")
    if not text:
        return length, length - 1  # the server sent the whole object (200, no range)
    # "bytes 0-8388607/1073741824"
    span, _, total = str(text).removeprefix("bytes ").partition("/")
    _, _, last = span.partition("-")
    return int(total), int(last)


def _full_object_sha256(response: dict[str, Any]) -> str | None:
    """The hex SHA-256 S3 checked over the whole object, if the HEAD carries one.

    Multipart objects carry a checksum of their parts' checksums (``...-N``), which is not
    the content's digest; those count as having none.
    """
    value = response.get("ChecksumSHA256")
    if not value or "-" in value or response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def _size_error(where: str, actual: object, expected: int) -> IntegrityError:
    return IntegrityError(
        f"{where} holds {actual} bytes where the manifest declares {expected}; nothing more "
        "was downloaded (run 'modelshelf verify' and re-push)"
    )
