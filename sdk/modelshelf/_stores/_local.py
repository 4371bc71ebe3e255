"""A registry in a local folder, with the same guarantees as S3's conditional writes.

Create-if-absent writes a temp file, fsyncs it and ``os.link``s it onto the key: ``link``
fails if the name exists, so exactly one of several racing writers wins and nobody ever sees
a half-written file. Replace-if-match takes an exclusive ``flock`` for the key, compares the
etag and ``os.replace``s. An etag names one inode generation (inode, mtime, size): every write
lands as a fresh file, so any change gives a new etag (docs/design.md, "Put modes").

Every public method translates operating-system errors once, here, as S3Store translates
botocore's: EACCES/EPERM/EROFS become :class:`AccessDeniedError`, anything else (ENOSPC,
EIO, ...) :class:`StoreError`. Temp files are removed on the way out, so a failed write
leaves nothing half written.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar
from urllib.parse import unquote, urlparse

from .._errors import (
    AccessDeniedError,
    ConfigurationError,
    IntegrityError,
    InvalidKeyError,
    KeyNotFoundError,
    ModelshelfError,
    PreconditionFailedError,
    StoreError,
)
from .._hashing import copy_and_hash, copy_range, sha256_file
from ._protocol import (
    CREATE,
    OVERWRITE,
    ContentOutcome,
    IfMatch,
    ObjectInfo,
    ProgressCallback,
    PutMode,
    StoredObject,
    check_key,
)

__all__ = ["LocalStore"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

_CHUNK = 32 * 1024 * 1024
# Bookkeeping lives beside the data on the same filesystem (link and replace need that),
# under names a listing never returns.
_TMP_DIR = ".modelshelf-tmp"
_LOCK_DIR = ".modelshelf-locks"


def _umask() -> int:
    """The process umask, read without changing it where the kernel tells (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (once per store)
    os.umask(mask)
    return mask


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError, action: str, uri: str) -> ModelshelfError:
    """The one translation of an operating-system error into the modelshelf tree."""
    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in _DENIED:
        return AccessDeniedError(
            f"{action} in {uri} was refused: {what}{where}; check the folder's owner and "
            "permissions (a shared registry needs group write, e.g. a setgid folder)"
        )
    return StoreError(f"{action} in {uri} failed: {what}{where}; nothing was committed")


def _translated(action: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Wrap a public method so no bare ``OSError`` escapes the store boundary."""

    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(*args, **kwargs)
            except OSError as exc:
                store = args[0]
                assert isinstance(store, LocalStore)
                key = args[1] if len(args) > 1 and isinstance(args[1], str) else None
                label = f"{action} {key!r}" if key is not None else action
                raise _os_error(exc, label, store.uri) from exc

        return inner

    return wrap


def _translated_iter(
    action: str,
) -> Callable[[Callable[_P, Iterator[_R]]], Callable[_P, Iterator[_R]]]:
    """As :func:`_translated`, for a method returning an iterator that fails while iterated."""

    def wrap(method: Callable[_P, Iterator[_R]]) -> Callable[_P, Iterator[_R]]:
        @functools.wraps(method)
        def inner(*args: _P.args, **kwargs: _P.kwargs) -> Iterator[_R]:
            store = args[0]
            assert isinstance(store, LocalStore)
            try:
                yield from method(*args, **kwargs)
            except OSError as exc:
                raise _os_error(exc, action, store.uri) from exc

        return inner

    return wrap


class LocalStore:
    """A store in a local folder (``file:///path`` or a plain path).

    Args:
        root: The folder, a ``file://`` URI, or a plain path; created when missing.
        fsync: Flush data to disk before each commit. Leave on for real registries.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        text = os.fspath(root)
        if text.startswith("file://"):
            parsed = urlparse(text)
            if parsed.netloc not in ("", "localhost"):
                raise ConfigurationError(
                    f"file URI {text!r} names a host; use file:///absolute/path"
                )
            text = unquote(parsed.path)
        self._root = Path(text).expanduser().resolve()
        if self._root.exists() and not self._root.is_dir():
            raise ConfigurationError(f"the registry path {self._root} is not a folder")
        self._fsync = fsync
        self._ready = False
        # Objects get the mode a plain file would (0644 or 0664 as the umask says), not
        # mkstemp's 0600, so a group sharing a setgid folder can read what others wrote.
        self._file_mode = 0o666 & ~_umask()

    def _prepare(self) -> None:
        # Created on the first write, so reading a registry that does not exist yet (or a
        # refused command) leaves no folder behind.
        if self._ready:
            return
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            (self._root / _TMP_DIR).mkdir(exist_ok=True)
            (self._root / _LOCK_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            if exc.errno in _DENIED:
                raise _os_error(exc, "creating the registry folder", self.uri) from exc
            raise ConfigurationError(
                f"cannot create the registry folder {self._root}: {exc.strerror}"
            ) from exc
        self._ready = True

    @property
    def uri(self) -> str:
        return self._root.as_uri()

    @property
    def root(self) -> Path:
        """The folder this store writes into."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"

    # -- paths -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] in (_TMP_DIR, _LOCK_DIR):
            check_key("..")  # raises: bookkeeping names are not keys
        # check_key refuses '..'; a symbolic link planted anywhere along the key (a folder or
        # the object itself) is refused the same way, wherever it points: keys never follow
        # links, so nothing outside the root can be read, written or deleted through one.
        path = self._root
        for part in key.split("/"):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                break  # the rest does not exist yet
            if stat.S_ISLNK(mode):
                raise InvalidKeyError(
                    f"invalid store key {key!r}: {path} is a symbolic link; keys never "
                    f"follow links (remove it from {self._root})"
                )
        return self._root / key

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        self._prepare()
        name = hashlib.sha1(key.encode()).hexdigest()
        # Read-only is enough for flock, so a lock file another user of the group created
        # (0644 under umask 022) still works; the mode is the umask's.
        fd = os.open(self._root / _LOCK_DIR / name, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _tempfile(self) -> tuple[int, Path]:
        self._prepare()
        fd, name = tempfile.mkstemp(dir=self._root / _TMP_DIR, prefix="put-")
        try:
            os.fchmod(fd, self._file_mode)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
        return fd, Path(name)

    # -- reads -------------------------------------------------------------------------

    @_translated("reading")
    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                etag = _etag(os.fstat(fh.fileno()))
                if if_none_match is not None and if_none_match == etag:
                    return None
                return StoredObject(key=key, data=fh.read(), etag=etag)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise KeyNotFoundError(f"no object {key!r} in {self.uri}") from exc

    @_translated("reading")
    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise KeyNotFoundError(f"no object {key!r} in {self.uri}") from exc
        if not path.is_file():
            raise KeyNotFoundError(f"no object {key!r} in {self.uri}")
        return ObjectInfo(key, st.st_size, _etag(st), datetime.fromtimestamp(st.st_mtime, UTC))

    @_translated("downloading")
    def get_file(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> ObjectInfo:
        with self._open(key) as src:
            st = os.fstat(src.fileno())
            self._check_size(key, st.st_size, expected_size)
            with open(dest, "wb") as out:
                _copy_fd(src.fileno(), out.fileno(), st.st_size, progress)
        return ObjectInfo(key, st.st_size, _etag(st), datetime.fromtimestamp(st.st_mtime, UTC))

    @_translated("downloading")
    def get_file_hashed(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> tuple[ObjectInfo, str]:
        """Like :meth:`get_file`, also returning the sha256 of the bytes written to ``dest``.

        The :class:`~modelshelf._stores.SupportsHashedGet` capability: the hash runs over
        ``dest`` right behind the in-kernel copy instead of in a second pass.
        """
        with self._open(key) as src:
            st = os.fstat(src.fileno())
            self._check_size(key, st.st_size, expected_size)
            with open(dest, "w+b") as out:
                digest = copy_and_hash(src.fileno(), out.fileno(), st.st_size, progress=progress)
        info = ObjectInfo(key, st.st_size, _etag(st), datetime.fromtimestamp(st.st_mtime, UTC))
        return info, digest

    def _check_size(self, key: str, size: int, expected: int | None) -> None:
        # Downloads are bounded by the manifest (invariant 2): refuse before copying a byte.
        if expected is not None and size != expected:
            raise IntegrityError(
                f"{key!r} in {self.uri} holds {size} bytes where the manifest declares "
                f"{expected}; nothing was copied (run 'modelshelf verify' and re-push)"
            )

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise KeyNotFoundError(f"no object {key!r} in {self.uri}") from exc

    @_translated_iter("listing")
    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        base = self._root / prefix.rsplit("/", 1)[0] if "/" in prefix else self._root
        if not base.is_dir():
            return iter(())
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self._root:
                dirnames[:] = [d for d in dirnames if d not in (_TMP_DIR, _LOCK_DIR)]
            rel_dir = os.path.relpath(dirpath, self._root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    found.append((key, Path(dirpath) / name))
        found.sort(key=lambda item: item[0].encode())
        if start_after is not None:
            after = start_after.encode()
            found = [item for item in found if item[0].encode() > after]
        return _infos(found, limit)

    @_translated("listing")
    def list_folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders under ``prefix`` (``""`` or ending in ``/``)."""
        base = self._root / prefix if prefix else self._root
        try:
            entries = builtins.list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            e.name
            for e in entries
            if e.is_dir(follow_symlinks=False) and e.name not in (_TMP_DIR, _LOCK_DIR)
        )

    @_translated("listing temp files")
    def stale_uploads(self, prefix: str, older_than: timedelta) -> builtins.list[Path]:
        """Temp files of writes that never finished (a killed process), older than that.

        ``prefix`` is accepted for symmetry with S3; temp files do not know their key.
        """
        tmp_dir = self._root / _TMP_DIR
        if not tmp_dir.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        return [p for p in tmp_dir.iterdir() if p.is_file() and p.stat().st_mtime < cutoff]

    @_translated("removing temp files")
    def abort_stale_uploads(self, prefix: str, older_than: timedelta) -> int:
        """Remove the temp files :meth:`stale_uploads` finds; returns how many."""
        stale = self.stale_uploads(prefix, older_than)
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    # -- writes ------------------------------------------------------------------------

    @_translated("writing")
    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        path = self._path(key)
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self._fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            return self._commit(key, path, tmp, mode)
        finally:
            tmp.unlink(missing_ok=True)

    @_translated("uploading")
    def put_file(
        self,
        key: str,
        path: Path,
        *,
        mode: PutMode = CREATE,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> str:
        target = self._path(key)
        tmp, digest = self._stage(path, progress)
        try:
            if sha256 is not None and digest != sha256:
                raise IntegrityError(
                    f"{path} changed while it was uploaded (sha256 {digest} != {sha256}); "
                    "nothing was written"
                )
            return self._commit(key, target, tmp, mode)
        finally:
            tmp.unlink(missing_ok=True)

    @_translated("uploading")
    def put_file_content_addressed(
        self,
        key_for: Callable[[str], str],
        path: Path,
        *,
        progress: ProgressCallback | None = None,
    ) -> tuple[str, ContentOutcome]:
        """Store a file under a key named by its own sha256, reading it once.

        The :class:`~modelshelf._stores.SupportsContentAddressedPut` capability: the file is copied
        into the store's staging area while the copy is hashed, then linked to
        ``key_for(sha256)`` if absent. (S3 stores hash first instead; moving an object into
        place there would cost a second upload.) A file already under the key is hashed
        again before it is trusted (docs/design.md, invariant 1); one that does not match is
        replaced by the staged copy, which does.

        Returns:
            The hex sha256 and ``created``, ``verified`` (the stored file matched; these
            bytes were dropped) or ``replaced``.
        """
        tmp, digest = self._stage(path, progress)
        try:
            key = key_for(digest)
            target = self._path(key)
            for _ in range(3):
                try:
                    self._commit(key, target, tmp, CREATE)
                    return digest, "created"
                except PreconditionFailedError:
                    pass
                try:
                    current = target.stat()
                    stored = sha256_file(target)
                except FileNotFoundError:
                    continue  # deleted meanwhile (gc): create it again
                if stored == digest:
                    return digest, "verified"
                try:
                    self._commit(key, target, tmp, IfMatch(_etag(current)))
                    return digest, "replaced"
                except PreconditionFailedError:
                    continue  # changed meanwhile: look again
            raise PreconditionFailedError(
                f"{key!r} kept changing in {self.uri} while it was stored"
            )
        finally:
            tmp.unlink(missing_ok=True)

    def _stage(self, path: Path, progress: ProgressCallback | None) -> tuple[Path, str]:
        """Copy ``path`` into a temp file (fsynced) and hash the copy in the same pass."""
        fd, tmp = self._tempfile()
        try:
            with open(path, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                # The fsync runs as soon as the copy is done, while the hash catches up.
                sync = (lambda: os.fsync(fd)) if self._fsync else None
                digest = copy_and_hash(src.fileno(), fd, size, progress=progress, after_copy=sync)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return tmp, digest

    def _commit(self, key: str, path: Path, tmp: Path, mode: PutMode) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == CREATE:
            for attempt in range(10):
                try:
                    os.link(tmp, path)
                    break
                except FileExistsError as exc:
                    raise PreconditionFailedError(f"{key!r} already exists in {self.uri}") from exc
                except FileNotFoundError:
                    # A delete of the last key in the folder removed it between our mkdir
                    # and the link (gc deleting a blob): make it again.
                    if attempt == 9 or not tmp.exists():
                        raise
                    path.parent.mkdir(parents=True, exist_ok=True)
        elif mode == OVERWRITE:
            os.replace(tmp, path)
        elif isinstance(mode, IfMatch):
            with self._lock(key):
                try:
                    current = _etag(path.stat())
                except FileNotFoundError as exc:
                    raise PreconditionFailedError(
                        f"{key!r} does not exist in {self.uri}; cannot replace it by etag"
                    ) from exc
                if current != mode.etag:
                    raise PreconditionFailedError(
                        f"{key!r} changed in {self.uri} (etag {current}, expected {mode.etag})"
                    )
                os.replace(tmp, path)
        else:  # pragma: no cover - guarded by the type
            raise TypeError(f"unknown put mode {mode!r}")
        if self._fsync:
            _fsync_dir(path.parent)
        return _etag(path.stat())

    @_translated("deleting")
    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._lock(key):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # no object under this key (a folder is not an object)
        # Drop empty parent folders so listings and walks stay fast.
        parent = path.parent
        while parent != self._root:
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            parent = parent.parent


def _infos(found: list[tuple[str, Path]], limit: int | None = None) -> Iterator[ObjectInfo]:
    given = 0
    for key, path in found:
        if limit is not None and given >= limit:
            return
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # deleted while we listed
        if not stat.S_ISREG(st.st_mode):
            continue  # a planted link is not an object (and reading it is refused)
        given += 1
        yield ObjectInfo(key, st.st_size, _etag(st), datetime.fromtimestamp(st.st_mtime, UTC))


def _copy_fd(src: int, dst: int, size: int, progress: ProgressCallback | None) -> None:
    # In-kernel copy in chunks, so progress can be reported without bytes through Python.
    offset = 0
    while offset < size:
        sent = copy_range(src, dst, offset, min(_CHUNK, size - offset))
        if sent == 0:
            break
        offset += sent
        if progress is not None:
            progress(sent)
