"""Moving files: collecting a push source, hashing, and the verified local blob cache."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import IntegrityError, SourceError
from ._store import Store

__all__ = [
    "BlobCache",
    "SourceFile",
    "collect_source",
    "copy_and_hash",
    "copy_file",
    "copy_range",
    "default_cache_dir",
    "sha256_file",
]

_CHUNK = 8 * 1024 * 1024
# Big enough that the per-chunk hand-off between the two threads of copy_and_hash is noise,
# small enough that the hash starts right behind the copy.
_PIPE_CHUNK = 32 * 1024 * 1024
JOBLIB_NAME = "model.joblib"


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
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
    also: int | None = None,
) -> str:
    """Copy the first ``size`` bytes of ``src`` into ``dst`` and return the sha256 of ``dst``.

    The copy runs inside the kernel (``copy_file_range``) on a worker thread while this
    thread reads each chunk back from ``dst`` as soon as it has landed (from the page cache)
    and hashes it, so the digest is of the bytes actually written and the two passes overlap:
    the whole costs about one hash pass instead of a copy plus a hash. ``after_copy`` (e.g.
    an fsync of ``dst``) runs on the worker once the copy is done, overlapping the hash's tail.
    ``also`` receives a second copy, made from ``dst`` chunk by chunk on the worker, so a
    download can land in the cache and at its destination in the time of one hash.

    Args:
        src: A readable file descriptor (read from offset 0; its position is not used).
        dst: A file descriptor open for reading and writing, empty.
        size: Bytes to copy.
        progress: Called with byte counts as chunks are hashed.
        after_copy: Run on the worker thread after the last chunk is copied.
        also: Another empty, writable file descriptor that gets the same bytes.

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
                if also is not None:
                    _copy_exactly(dst, also, offset, n)
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


@dataclass(frozen=True)
class SourceFile:
    """A file to push: its path inside the version and where it is on disk."""

    path: str
    local: Path
    size: int


def collect_source(source: Any, workdir: Path) -> list[SourceFile]:
    """Turn a push source into the files of a version.

    A file is pushed under its own name; a directory contributes every file below it with
    its relative path; any other Python object is serialized with joblib as ``model.joblib``.

    Raises:
        SourceError: A path that does not exist, cannot be read, or holds no files.
    """
    if isinstance(source, str | os.PathLike):
        root = Path(source).expanduser()
        if not root.exists():
            raise SourceError(f"source {str(root)!r} does not exist; give a file or a folder")
        if root.is_file():
            return [_readable(root.name, root)]
        if root.is_dir():
            files = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames.sort()
                for name in sorted(filenames):
                    local = Path(dirpath) / name
                    rel = local.relative_to(root).as_posix()
                    if local.is_file():
                        files.append(_readable(rel, local))
            if not files:
                raise SourceError(f"source folder {str(root)!r} holds no files to push")
            return files
        raise SourceError(f"source {str(root)!r} is neither a regular file nor a folder")
    import joblib

    target = workdir / JOBLIB_NAME
    try:
        joblib.dump(source, target)
    except Exception as exc:  # joblib raises whatever pickling raised
        raise SourceError(
            f"cannot serialize the {type(source).__name__} object with joblib: {exc}"
        ) from exc
    return [SourceFile(JOBLIB_NAME, target, target.stat().st_size)]


def _readable(rel: str, local: Path) -> SourceFile:
    try:
        with open(local, "rb"):
            pass
    except OSError as exc:
        raise SourceError(f"cannot read source file {str(local)!r}: {exc.strerror}") from exc
    return SourceFile(rel, local, local.stat().st_size)


def default_cache_dir() -> Path:
    """``MODELSHELF_CACHE``, else ``$XDG_CACHE_HOME/modelshelf``, else ``~/.cache/modelshelf``."""
    if env := os.environ.get("MODELSHELF_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "modelshelf"


class BlobCache:
    """A local content-addressed cache: ``{root}/sha256/{hex}``, filled only with verified bytes.

    Args:
        root: The cache folder (created on first use).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.bytes_downloaded = 0
        """Bytes fetched from a store by this cache object (cache hits add nothing)."""
        self._lock = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this digest lives in the cache."""
        return self.root / "sha256" / sha256[:2] / sha256

    def fetch(
        self,
        store: Store,
        key: str,
        sha256: str,
        size: int,
        progress: Callable[[int], None] | None = None,
        copy_to: Path | None = None,
    ) -> Path:
        """The cached path of a blob, downloading and verifying it first when needed.

        Args:
            store: Where the blob lives.
            key: Its key in the store.
            sha256: The digest its bytes must have.
            size: Its size; a cached file of another size is fetched again.
            progress: Called with byte counts.
            copy_to: Also write the verified bytes to this file (created or truncated),
                in the same pass as the download where the store allows it. On failure it
                is removed.

        Raises:
            IntegrityError: The downloaded bytes do not hash to ``sha256``; nothing is cached.
        """
        final = self.path_for(sha256)
        if final.is_file() and final.stat().st_size == size:
            if copy_to is not None:
                copy_file(final, copy_to)
            if progress is not None:
                progress(size)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        verified = False
        try:
            # A store that can hash while it copies (LocalStore) saves a second pass.
            get_file_hashed = getattr(store, "get_file_hashed", None)
            if get_file_hashed is not None:
                info, actual = get_file_hashed(key, tmp, progress=progress, also=copy_to)
            else:
                info = store.get_file(key, tmp, progress=progress)
                if copy_to is None:
                    actual = sha256_file(tmp)
                else:
                    # Hash the copy as it is made: one pass places and verifies it.
                    with open(tmp, "rb") as src, open(copy_to, "w+b") as out:
                        actual = copy_and_hash(src.fileno(), out.fileno(), info.size)
            with self._lock:
                self.bytes_downloaded += info.size
            if actual != sha256:
                raise IntegrityError(
                    f"blob {key!r} in {store.uri} is corrupt: its bytes hash to {actual}, "
                    f"not {sha256}; nothing was loaded (run 'modelshelf verify' and re-push)"
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            verified = True
        finally:
            tmp.unlink(missing_ok=True)
            if copy_to is not None and not verified:
                copy_to.unlink(missing_ok=True)
        return final

    def fetch_into(
        self,
        store: Store,
        key: str,
        sha256: str,
        size: int,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Write a blob's verified bytes to ``dest``: from the cache when it holds the blob,
        else straight from the store without filling the cache.

        A pull's files are the caller's own copy; writing every byte a second time into the
        cache cost about a third of a cold pull, and ``load`` fills the cache when it needs to.

        Raises:
            IntegrityError: The bytes do not hash to ``sha256``; ``dest`` is removed.
        """
        cached = self.path_for(sha256)
        if cached.is_file() and cached.stat().st_size == size:
            copy_file(cached, dest)
            if progress is not None:
                progress(size)
            return
        verified = False
        try:
            get_file_hashed = getattr(store, "get_file_hashed", None)
            if get_file_hashed is not None:
                info, actual = get_file_hashed(key, dest, progress=progress)
            else:
                info = store.get_file(key, dest, progress=progress)
                actual = sha256_file(dest)
            with self._lock:
                self.bytes_downloaded += info.size
            if actual != sha256:
                raise IntegrityError(
                    f"blob {key!r} in {store.uri} is corrupt: its bytes hash to {actual}, "
                    f"not {sha256}; nothing was placed (run 'modelshelf verify' and re-push)"
                )
            verified = True
        finally:
            if not verified:
                dest.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every cached blob."""
        shutil.rmtree(self.root / "sha256", ignore_errors=True)
