"""Pieces of S3Store's large transfers: an in-order hasher for parallel downloads and a
window of a file that an upload part streams from (docs/design.md, "Put modes", S3).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading

__all__ = ["FileWindow", "InOrderHasher", "TransferCancelled"]


class TransferCancelled(Exception):
    """Raised in a waiting range worker after another range of the same transfer failed."""


class InOrderHasher:
    """The sha256 of chunks that arrive at their offsets in any order, hashed in order.

    A chunk at the hash position is hashed by the thread that brought it, which then drains
    the chunks that waited behind it; any other chunk waits in a reorder buffer. The buffer
    is bounded by :meth:`wait_for_room`: a range starts only when it begins at most
    ``window`` bytes past the hash position. The range at the hash position never waits, so
    the hash always advances and nothing deadlocks.

    Args:
        window: How far past the hash position a range may start, in bytes.
    """

    def __init__(self, window: int) -> None:
        self._window = window
        self._digest = hashlib.sha256()
        self._position = 0
        self._pending: dict[int, bytes] = {}
        self._busy = False
        self._cancelled = False
        self._cond = threading.Condition()
        self.peak_pending = 0
        """The most bytes that ever waited in the reorder buffer (for tests and benchmarks)."""
        self._pending_bytes = 0

    @property
    def position(self) -> int:
        """How many bytes from the start have been hashed (or are being hashed)."""
        with self._cond:
            return self._position

    def wait_for_room(self, start: int) -> None:
        """Block until a range starting at ``start`` may begin.

        Raises:
            TransferCancelled: :meth:`cancel` was called.
        """
        with self._cond:
            while not self._cancelled and start - self._position > self._window:
                self._cond.wait()
            if self._cancelled:
                raise TransferCancelled()

    def cancel(self) -> None:
        """Release every waiting range (they raise :class:`TransferCancelled`)."""
        with self._cond:
            self._cancelled = True
            self._pending.clear()
            self._pending_bytes = 0
            self._cond.notify_all()

    def feed(self, offset: int, chunk: bytes) -> None:
        """Account for ``chunk``, the bytes at ``offset``."""
        if not chunk:
            return
        with self._cond:
            if self._cancelled:
                return
            self._pending[offset] = chunk
            self._pending_bytes += len(chunk)
            self.peak_pending = max(self.peak_pending, self._pending_bytes)
            if self._busy or offset != self._position:
                return
            self._busy = True
        while True:
            with self._cond:
                chunk = self._pending.pop(self._position, b"")
                if not chunk:
                    self._busy = False
                    return
                self._pending_bytes -= len(chunk)
                # Moving the position before hashing lets waiting ranges start a little
                # earlier; only this (busy) thread hashes, so the order is kept.
                self._position += len(chunk)
                self._cond.notify_all()
            self._digest.update(chunk)

    def hexdigest(self) -> str:
        """The digest of the bytes hashed so far (call once every chunk was fed)."""
        with self._cond:
            return self._digest.hexdigest()


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
