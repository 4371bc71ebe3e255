"""The local blob cache: content-addressed, filled only with verified bytes."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .._errors import IntegrityError
from .._hashing import copy_file, sha256_file
from .._settings import cache_dir_setting
from .._stores import Store, SupportsHashedGet

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
        if final.is_file() and final.stat().st_size == size:
            if progress is not None:
                progress(size)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            # A store that can hash while it copies (LocalStore) saves a second pass.
            if isinstance(store, SupportsHashedGet):
                info, actual = store.get_file_hashed(key, tmp, progress=progress)
            else:
                info = store.get_file(key, tmp, progress=progress)
                actual = sha256_file(tmp)
            with self._lock:
                self.bytes_downloaded += info.size
            if actual != sha256:
                raise IntegrityError(
                    f"blob {key!r} in {store.uri} is corrupt: its bytes hash to {actual}, "
                    f"not {sha256}; nothing was loaded (run 'modelshelf verify' and re-push)"
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
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
        cached = self.path_for(sha256)
        if cached.is_file() and cached.stat().st_size == size:
            copy_file(cached, dest)
            if progress is not None:
                progress(size)
            return
        verified = False
        try:
            if isinstance(store, SupportsHashedGet):
                info, actual = store.get_file_hashed(key, dest, progress=progress)
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
