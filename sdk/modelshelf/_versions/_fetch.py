"""Getting versions out: verified downloads into the cache or a folder, and re-verification.

Every byte that reaches a caller hashed to the manifest's sha256 first (docs/design.md,
invariant 2): the cache holds only verified blobs and a pull moves files into place only
once every one of them checked out.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from .._card import FileEntry, ModelVersion
from .._errors import (
    DestinationExistsError,
    IntegrityError,
    InvalidKeyError,
    KeyNotFoundError,
    SourceError,
)
from .._hashing import sha256_file
from .._stores import Store, check_key
from ..layout import blob_key
from ._cache import BlobCache
from ._pool import map_files

__all__ = ["Fetcher", "joblib_entry"]

Progress = Callable[[int], None]
JOBLIB_SUFFIXES = (".joblib", ".pkl")


def joblib_entry(manifest: ModelVersion) -> FileEntry:
    """The version's single ``.joblib`` / ``.pkl`` file, the one ``load`` unpickles.

    Raises:
        SourceError: The version holds no such file, or several.
    """
    candidates = [f for f in manifest.files if f.path.endswith(JOBLIB_SUFFIXES)]
    if len(candidates) != 1:
        raise SourceError(
            f"{manifest.ref} holds {len(candidates)} .joblib/.pkl files; loading needs exactly "
            "one (use pull to get the files, or pass loader= to ModelServer for other layouts)"
        )
    return candidates[0]


def _check_destination(
    ref: str, dest: Path, wanted: Mapping[str, tuple[int, str]], overwrite: bool
) -> None:
    """Refuse, before any download, to replace a file in ``dest`` that holds other bytes."""
    for path, (size, digest) in wanted.items():
        out = dest / path
        if not out.exists() and not out.is_symlink():
            continue
        if out.is_file() and not out.is_symlink():
            if overwrite:
                continue
            try:
                same = out.stat().st_size == size and sha256_file(out) == digest
            except OSError:
                same = False
            if same:
                continue
            what = "a different file"
        else:
            what = "a folder" if out.is_dir() else "something that is not a regular file"
            if overwrite and not out.is_dir():
                continue
        raise DestinationExistsError(
            f"cannot pull {ref} into {dest}: {out} is {what}, not the version's {path!r}; "
            "nothing was written. Pull into another folder"
            + ("" if out.is_dir() else ", or pass --force / overwrite=True to replace it")
        )


class Fetcher:
    """Downloads versions from one store through one local blob cache.

    Args:
        store: Where the blobs live.
        cache: The verified local cache.
        max_workers: Parallel blob downloads.
    """

    def __init__(self, store: Store, cache: BlobCache, *, max_workers: int = 8) -> None:
        self.store = store
        self.cache = cache
        self.max_workers = max_workers

    def _parallel(self, manifest: ModelVersion, one: Callable[[FileEntry], object]) -> None:
        map_files(one, manifest.files, lambda entry: entry.size, self.max_workers)

    def fetch(self, manifest: ModelVersion, progress: Progress | None = None) -> dict[str, Path]:
        """Every blob of a version in the cache, verified: ``{file path: cached file}``."""
        found: dict[str, Path] = {}

        def one(entry: FileEntry) -> None:
            found[entry.path] = self.cache.fetch(
                self.store,
                blob_key(manifest.name, entry.sha256),
                entry.sha256,
                entry.size,
                progress,
            )

        self._parallel(manifest, one)
        return {entry.path: found[entry.path] for entry in manifest.files}

    def pull(
        self,
        manifest: ModelVersion,
        dest: Path,
        progress: Progress | None = None,
        *,
        extras: Mapping[str, bytes] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write a version's files into ``dest``, each verified before any is placed.

        ``extras`` are more files (the signature and the card beside a signed version's
        files), placed with them.

        Raises:
            DestinationExistsError: ``dest`` holds other content where a file goes and
                ``overwrite`` is off; nothing was written.
            IntegrityError: A blob is corrupt, or the manifest names a path outside the
                folder; ``dest`` is left untouched.
        """
        for entry in manifest.files:
            try:
                check_key(entry.path)
            except InvalidKeyError as exc:
                raise IntegrityError(
                    f"{manifest.ref}: the manifest names the unsafe path {entry.path!r}; "
                    "nothing was written"
                ) from exc
        wanted = {entry.path: (entry.size, entry.sha256) for entry in manifest.files}
        for name, data in (extras or {}).items():
            wanted[name] = (len(data), hashlib.sha256(data).hexdigest())
        _check_destination(manifest.ref, dest, wanted, overwrite)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.pull-"))
        try:

            def one(entry: FileEntry) -> None:
                out = staging / entry.path
                out.parent.mkdir(parents=True, exist_ok=True)
                key = blob_key(manifest.name, entry.sha256)
                self.cache.fetch_into(self.store, key, entry.sha256, entry.size, out, progress)

            self._parallel(manifest, one)
            for name, data in (extras or {}).items():
                (staging / name).write_bytes(data)
            dest.mkdir(parents=True, exist_ok=True)
            for path in [*(entry.path for entry in manifest.files), *(extras or {})]:
                out = dest / path
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staging / path, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def verify(self, manifest: ModelVersion, progress: Progress | None = None) -> None:
        """Re-download and re-hash every blob, bypassing the cache.

        Raises:
            IntegrityError: Naming the first corrupt or missing blob.
        """
        with tempfile.TemporaryDirectory(prefix="modelshelf-verify-") as tmp:
            scratch = BlobCache(Path(tmp))
            for entry in manifest.files:
                key = blob_key(manifest.name, entry.sha256)
                try:
                    scratch.fetch(self.store, key, entry.sha256, entry.size, progress)
                except KeyNotFoundError as exc:
                    raise IntegrityError(
                        f"{manifest.ref}: blob for {entry.path!r} ({key}) is missing"
                    ) from exc
                scratch.path_for(entry.sha256).unlink()
