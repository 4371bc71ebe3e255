"""Copy and hash primitives shared by the stores and the version workflows.

The foundation layer: it imports only the errors, so both ``_stores`` and
``_versions`` can use it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from ._errors import IntegrityError

__all__ = ["copy_and_hash", "copy_file", "copy_range", "sha256_file"]

_CHUNK = 8 * 1024 * 1024
# Big enough that the per-chunk hand-off between the two threads of copy_and_hash is noise,
# small enough that the hash starts right behind the copy.
_PIPE_CHUNK = 32 * 1024 * 1024


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        # The buffer no larger than the file: zeroing a whole chunk for a 4 KiB file costs
        # more than hashing it (0.6 ms a file, most of a small-file push's own CPU).
        size = os.fstat(fh.fileno()).st_size
        buf = bytearray(max(1, min(_CHUNK, size + 1)))
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
            if progress is not None:
                progress(n)
    return digest.hexdigest()


def copy_range(src: int, dst: int, offset: int, count: int) -> int:
    """Copy up to ``count`` bytes at ``offset`` inside the kernel; returns the bytes copied."""
    try:
        return os.copy_file_range(src, dst, count, offset, offset)
    except OSError as exc:
        # EXDEV/EINVAL/ENOSYS/EOPNOTSUPP: no in-kernel copy between these two files.
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    data = os.pread(src, count, offset)
    written = 0
    while written < len(data):
        written += os.pwrite(dst, data[written:], offset + written)
    return len(data)


def copy_and_hash(
    src: int,
    dst: int,
    size: int,
    *,
    progress: Callable[[int], None] | None = None,
    after_copy: Callable[[], None] | None = None,
) -> str:
    """Copy the first ``size`` bytes of ``src`` into ``dst`` and return the sha256 of ``dst``.

    The copy runs inside the kernel (``copy_file_range``) on a worker thread while this
    thread reads each chunk back from ``dst`` as soon as it has landed (from the page cache)
    and hashes it, so the digest is of the bytes actually written and the two passes overlap:
    the whole costs about one hash pass instead of a copy plus a hash. ``after_copy`` (e.g.
    an fsync of ``dst``) runs on the worker once the copy is done, overlapping the hash's tail.

    Args:
        src: A readable file descriptor (read from offset 0; its position is not used).
        dst: A file descriptor open for reading and writing, empty.
        size: Bytes to copy.
        progress: Called with byte counts as chunks are hashed.
        after_copy: Run on the worker thread after the last chunk is copied.

    Raises:
        IntegrityError: ``src`` held fewer than ``size`` bytes (it changed during the copy).
        OSError: The copy failed.
    """
    chunks: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()
    stop = threading.Event()

    def copier() -> None:
        offset = 0
        try:
            while offset < size and not stop.is_set():
                n = copy_range(src, dst, offset, min(_PIPE_CHUNK, size - offset))
                if n == 0:
                    raise IntegrityError(
                        f"the source ended after {offset} of {size} bytes; it changed while "
                        "it was copied"
                    )
                offset += n
                chunks.put(n)
            if after_copy is not None and not stop.is_set():
                after_copy()
            chunks.put(0)
        except BaseException as exc:  # handed to the hashing thread, which re-raises it
            chunks.put(exc)

    worker = threading.Thread(target=copier, name="modelshelf-copy", daemon=True)
    worker.start()
    digest = hashlib.sha256()
    # Small files (most models) must not pay for allocating a whole pipeline chunk.
    buf = bytearray(max(1, min(size, _PIPE_CHUNK)))
    view = memoryview(buf)
    hashed = 0
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if item == 0:
                break
            end = hashed + item
            while hashed < end:
                n = os.preadv(dst, [view[: end - hashed]], hashed)
                if n == 0:
                    raise IntegrityError("the copy is shorter than what was written")
                digest.update(view[:n])
                hashed += n
                if progress is not None:
                    progress(n)
    finally:
        stop.set()
        worker.join()
    return digest.hexdigest()


def _copy_exactly(src: int, dst: int, offset: int, count: int) -> None:
    end = offset + count
    while offset < end:
        n = copy_range(src, dst, offset, end - offset)
        if n == 0:
            raise OSError(f"short copy: the source ended at byte {offset} of {end}")
        offset += n


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file's bytes inside the kernel; ``dst`` is created or truncated."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        _copy_exactly(fin.fileno(), fout.fileno(), 0, os.fstat(fin.fileno()).st_size)
