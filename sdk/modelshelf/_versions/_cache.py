"""The local blob cache: content-addressed, filled only with verified bytes.

A hit is verified too (docs/design.md, invariant 2): beside each blob the cache keeps an
integrity record ``{hex}.ok`` written when the blob was verified (digest, size, inode,
``mtime_ns``, ``ctime_ns``); a hit whose ``stat`` no longer matches is hashed again.
Writing, replacing or chmod-ing the file moves its ``ctime``, which only the kernel sets.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .._errors import IntegrityError
from .._hashing import copy_file, sha256_file
from .._settings import cache_dir_setting
from .._stores import ObjectInfo, Store, SupportsHashedGet

__all__ = ["BlobCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``MODELSHELF_CACHE``, else ``$XDG_CACHE_HOME/modelshelf``, else ``~/.cache/modelshelf``."""
    return cache_dir_setting()


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

    def _record_path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / f"{sha256}.ok"

    @staticmethod
    def _fingerprint(sha256: str, st: os.stat_result) -> dict[str, object]:
        return {
            "sha256": sha256,
            "size": st.st_size,
            "ino": st.st_ino,
            "dev": st.st_dev,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
        }

    def _record(self, sha256: str, path: Path) -> None:
        """Write the integrity record of a blob just verified at ``path``."""
        record = self._record_path(sha256)
        fd, tmp_name = tempfile.mkstemp(dir=record.parent, prefix=".ok-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self._fingerprint(sha256, path.stat()), out, sort_keys=True)
            os.chmod(tmp_name, 0o444)  # read-only like the blob it vouches for
            os.replace(tmp_name, record)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _hit(self, sha256: str, size: int) -> Path | None:
        """The cached blob if it is still the verified one: by its record, else re-hashed."""
        final = self.path_for(sha256)
        try:
            st = final.stat()
        except FileNotFoundError:
            return None
        if not final.is_file() or st.st_size != size:
            return None
        try:
            recorded = json.loads(self._record_path(sha256).read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded == self._fingerprint(sha256, st):
            return final
        # No record, or the file changed since it was verified: hash it again.
        if sha256_file(final) == sha256:
            self._record(sha256, final)
            return final
        final.unlink(missing_ok=True)
        self._record_path(sha256).unlink(missing_ok=True)
        return None

    def fetch(
        self,
        store: Store,
        key: str,
        sha256: str,
        size: int,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """The cached path of a blob, downloading and verifying it first when needed.

        Args:
            store: Where the blob lives.
            key: Its key in the store.
            sha256: The digest its bytes must have.
            size: Its size; a cached file of another size is fetched again.
            progress: Called with byte counts.

        Raises:
            IntegrityError: The downloaded bytes do not hash to ``sha256``; nothing is cached.
        """
        final = self.path_for(sha256)
        if self._hit(sha256, size) is not None:
            if progress is not None:
                progress(size)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            info, actual = self._download(store, key, tmp, size, progress)
            if actual != sha256:
                raise IntegrityError(
                    f"blob {key!r} in {store.uri} is corrupt: its bytes hash to {actual}, "
                    f"not {sha256}; nothing was loaded (run 'modelshelf verify' and re-push)"
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            self._record(sha256, final)
        finally:
            tmp.unlink(missing_ok=True)
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
        cached = self._hit(sha256, size)
        if cached is not None:
            copy_file(cached, dest)
            if progress is not None:
                progress(size)
            return
        verified = False
        try:
            info, actual = self._download(store, key, dest, size, progress)
            if actual != sha256:
                raise IntegrityError(
                    f"blob {key!r} in {store.uri} is corrupt: its bytes hash to {actual}, "
                    f"not {sha256}; nothing was placed (run 'modelshelf verify' and re-push)"
                )
            verified = True
        finally:
            if not verified:
                dest.unlink(missing_ok=True)

    def _download(
        self,
        store: Store,
        key: str,
        dest: Path,
        size: int,
        progress: Callable[[int], None] | None,
    ) -> tuple[ObjectInfo, str]:
        """Download at most ``size`` bytes (the manifest's) into ``dest``, hashing them."""
        # A store that can hash while it copies (LocalStore) saves a second pass.
        if isinstance(store, SupportsHashedGet):
            info, actual = store.get_file_hashed(key, dest, progress=progress, expected_size=size)
        else:
            info = store.get_file(key, dest, progress=progress, expected_size=size)
            actual = sha256_file(dest)
        with self._lock:
            self.bytes_downloaded += info.size
        return info, actual

    def clear(self) -> None:
        """Remove every cached blob."""
        shutil.rmtree(self.root / "sha256", ignore_errors=True)
