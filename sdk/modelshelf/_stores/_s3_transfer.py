"""Pieces of S3Store's large transfers that make no request: the hasher that follows parallel
ranged downloads, draining a response body into a file, the one read that prepares an upload
(the file's and each part's sha256, kept by file identity), and a window of a file that an
upload part streams from (docs/design.md, "Put modes", S3).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody

from .._errors import IntegrityError

__all__ = [
    "FileWindow",
    "Identity",
    "PreparedUpload",
    "PreparedUploads",
    "RangeHasher",
    "check_prepared",
    "check_unchanged",
    "drain_into",
    "file_identity",
    "hash_parts",
    "hash_range",
    "prepare_upload",
]

_HASH_CHUNK = 8 * 1024 * 1024
# A download's receive buffer and the hashing thread's read-back buffer: small enough to stay
# in the core's cache between the two copies that touch each byte. With 1 MiB and 8 MiB the
# kernel's copies into the page cache ran 3x slower while the hash followed: a hashed 1 GiB
# download on two cores beside SeaweedFS took 1.91 s (1.17 s of system time), 1.46 s (0.51 s)
# with these (6 runs each from fresh memory, interleaved).
_STREAM_CHUNK = 256 * 1024


class RangeHasher:
    """The sha256 of a file that parallel ranges are writing, hashed in order from the file.

    Writers report how far each range has been written (:meth:`advance`); :meth:`run`, on a
    thread of its own, hashes the written prefix of the file as it grows, reading it back
    with ``pread`` (from the page cache: it was just written). The digest is therefore of the
    bytes as they lie in the file, and nothing is held in memory waiting for its turn.

    Args:
        fd: The file being written, open for reading.
        ranges: ``(start, end)`` of every range (end exclusive), in file order, covering it.
    """

    def __init__(self, fd: int, ranges: list[tuple[int, int]]) -> None:
        self._fd = fd
        self._ranges = ranges
        self._reached = [start for start, _ in ranges]
        self._total = ranges[-1][1] if ranges else 0
        self._head = 0  # the first range not yet completely written
        self._cancelled = False
        self._cond = threading.Condition()
        self._digest = hashlib.sha256()
        self._hashed = 0
        self._error: BaseException | None = None

    def advance(self, index: int, reached: int) -> None:
        """Range ``index`` has been written up to (not including) offset ``reached``."""
        with self._cond:
            self._reached[index] = reached
            if index == self._head:
                self._cond.notify()

    def cancel(self) -> None:
        """Stop :meth:`run` (the transfer failed)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify()

    def _written_prefix(self) -> int:
        """The end of the bytes written contiguously from the start (call holding the lock)."""
        ranges, reached = self._ranges, self._reached
        while self._head < len(ranges) and reached[self._head] == ranges[self._head][1]:
            self._head += 1
        return self._total if self._head == len(ranges) else reached[self._head]

    def run(self) -> None:
        """Hash until the whole file is hashed or :meth:`cancel` is called."""
        buffer = bytearray(min(_STREAM_CHUNK, max(1, self._total)))
        view = memoryview(buffer)
        try:
            while self._hashed < self._total:
                with self._cond:
                    while not self._cancelled and (end := self._written_prefix()) <= self._hashed:
                        self._cond.wait()
                    if self._cancelled:
                        return
                while self._hashed < end:
                    step = min(end - self._hashed, len(buffer))
                    n = os.preadv(self._fd, [view[:step]], self._hashed)
                    if n <= 0:
                        raise OSError(
                            f"the file being downloaded ended at byte {self._hashed} of "
                            f"{self._total}: something else truncated it"
                        )
                    self._digest.update(view[:n])
                    self._hashed += n
        except BaseException as exc:
            self._error = exc

    def hexdigest(self) -> str:
        """The digest of the whole file (once :meth:`run` has returned).

        Raises:
            OSError: The file could not be read back.
        """
        if self._error is not None:
            raise self._error
        if self._hashed != self._total:
            raise RuntimeError("the download was not hashed to its end")
        return self._digest.hexdigest()


def _readinto_of(body: Any) -> tuple[Callable[[memoryview], int], Callable[[], None]]:
    """How to receive ``body`` straight into a buffer, and how to let its connection go.

    A plain botocore body over urllib3 is read from its ``http.client`` response with
    ``readinto`` (one copy, from the socket into the buffer); anything else (a body that
    checks a checksum or decodes content as it reads) goes through its own ``read``.
    """
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if (
        type(body) is StreamingBody
        and isinstance(fp, http.client.HTTPResponse)
        and not raw.headers.get("content-encoding")  # type: ignore[union-attr]
    ):

        def release() -> None:
            # Fully read: the connection goes back to the pool; cut short: it is dropped.
            if fp.isclosed():
                raw.release_conn()  # type: ignore[union-attr]
            else:
                raw.close()  # type: ignore[union-attr]

        return fp.readinto, release

    def read_into(view: memoryview) -> int:
        data = body.read(len(view))
        view[: len(data)] = data
        return len(data)

    return read_into, body.close


def drain_into(
    body: Any,
    fd: int,
    start: int,
    end: int,
    on_written: Callable[[int, int], None],
) -> tuple[int, Exception | None]:
    """Write ``body``, the bytes ``start..end`` (end exclusive) of an object, into ``fd``.

    ``on_written(offset reached, bytes just written)`` follows every chunk. Returns the
    offset reached and the error that stopped the body early, as botocore's (retryable)
    exceptions, or ``None`` once it ended.
    """
    readinto, release = _readinto_of(body)
    buffer = bytearray(min(_STREAM_CHUNK, max(1, end - start)))
    view = memoryview(buffer)
    at = start
    try:
        while at < end:
            try:
                n = readinto(view[: min(len(buffer), end - at)])
            except TimeoutError as exc:
                return at, ReadTimeoutError(endpoint_url="the object being downloaded", error=exc)
            except (OSError, http.client.HTTPException) as exc:
                return at, ResponseStreamingError(error=exc)
            except (BotoCoreError, ClientError) as exc:  # from a body read with its read()
                return at, exc
            if not n:
                return at, IncompleteReadError(actual_bytes=at - start, expected_bytes=end - start)
            # A failing write (a full disk) is not the network's: it propagates, unretried.
            written = 0
            while written < n:
                written += os.pwrite(fd, view[written:n], at + written)
            at += n
            on_written(at, n)
    finally:
        release()
    return at, None


def hash_parts(fd: int, size: int, part_size: int) -> tuple[str, list[bytes]]:
    """The hex sha256 of the first ``size`` bytes of ``fd`` and the sha256 of each part.

    Both come from one read: each buffer goes to the file's digest on a helper thread and
    to its part's digest on this one (hashlib lets go of the GIL), so the pass costs about
    one hash's time on two cores, and a part whose bytes match its digest holds bytes of the
    same read that gave the file's digest.

    Raises:
        OSError: The file ended early (something truncated it meanwhile).
    """
    whole = hashlib.sha256()
    parts: list[bytes] = []
    chunk = min(_HASH_CHUNK, part_size)
    with ThreadPoolExecutor(1, thread_name_prefix="modelshelf-hash") as helper:
        for start in range(0, size, part_size):
            part = hashlib.sha256()
            end = min(start + part_size, size)
            at = start
            while at < end:
                data = os.pread(fd, min(chunk, end - at), at)
                if not data:
                    raise OSError(f"the file ended at byte {at} of {size} while it was hashed")
                pending = helper.submit(whole.update, data)
                part.update(data)
                pending.result()
                at += len(data)
            parts.append(part.digest())
    return whole.hexdigest(), parts


Identity = tuple[int, int, int, int, int]
"""``(inode, size, mtime_ns, ctime_ns, device)``: any write to a file moves ``ctime``."""

_MAX_PREPARED = 64  # files hashed for an upload not yet made (a push holds a few at a time)


def file_identity(fd: int) -> Identity:
    """The identity of an open file, to tell whether it changed between two moments."""
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev)


def hash_range(fd: int, size: int) -> str:
    """The hex sha256 of the first ``size`` bytes of ``fd`` (fewer if it ends early)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(_HASH_CHUNK, size - offset), offset)
        if not chunk:
            break  # truncated meanwhile: the digest (and the identity check) will say so
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedUpload:
    """One read of a file: its sha256 and each part's, and its identity during that read."""

    identity: Identity
    part_size: int
    sha256: str
    parts: list[bytes]


def prepare_upload(fd: int, part_size: int) -> PreparedUpload | None:
    """Hash the file and its parts in one read; ``None`` if it changed during the read."""
    before = file_identity(fd)
    try:
        sha256, parts = hash_parts(fd, before[1], part_size)
    except OSError:
        return None
    if file_identity(fd) != before:
        return None
    return PreparedUpload(identity=before, part_size=part_size, sha256=sha256, parts=parts)


class PreparedUploads:
    """Prepared uploads waiting for their ``put_file``, by file identity (a bounded few)."""

    def __init__(self) -> None:
        self._by_identity: OrderedDict[Identity, PreparedUpload] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, prepared: PreparedUpload) -> None:
        with self._lock:
            self._by_identity[prepared.identity] = prepared
            while len(self._by_identity) > _MAX_PREPARED:
                self._by_identity.popitem(last=False)

    def take(self, fd: int, part_size: int) -> PreparedUpload | None:
        """The prepared upload of the open file as it is now, with these parts, if any."""
        with self._lock:
            prepared = self._by_identity.pop(file_identity(fd), None)
        if prepared is None or prepared.part_size != part_size:
            return None
        return prepared


def check_prepared(path: Path, prepared: PreparedUpload | None, sha256: str) -> None:
    """Refuse, before anything is sent, a file that changed or does not match ``sha256``.

    Raises:
        IntegrityError: Saying which.
    """
    if prepared is None:
        raise IntegrityError(
            f"{path} changed while it was being hashed for its upload; nothing was written "
            "(push it again once it is complete)"
        )
    if prepared.sha256 != sha256:
        raise IntegrityError(
            f"{path} does not match its sha256 (read {prepared.sha256}, expected {sha256}); "
            "it changed since it was hashed, and nothing was written"
        )


def check_unchanged(path: Path, fd: int, before: Identity) -> None:
    """Refuse a file whose identity moved since ``before`` (it was written meanwhile).

    Raises:
        IntegrityError: It changed.
    """
    if file_identity(fd) != before:
        raise IntegrityError(
            f"{path} changed while it was being uploaded; nothing was written "
            "(push it again once it is complete)"
        )


class FileWindow(io.RawIOBase):
    """``length`` bytes of an open file from ``start``, read with ``pread`` as they are sent.

    An upload part's body: botocore reads it to sign it, seeks back and reads it again to
    send it, so nothing of the part is held in memory beyond botocore's own blocks.
    """

    def __init__(self, fd: int, start: int, length: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._length = length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self._pos + offset
        elif whence == os.SEEK_END:
            target = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise ValueError("negative seek position")
        self._pos = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._pos
        if remaining <= 0:
            return b""
        n = remaining if size is None or size < 0 else min(size, remaining)
        data = os.pread(self._fd, n, self._start + self._pos)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
