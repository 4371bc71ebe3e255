"""Moving files: collecting a push source, hashing, and the verified local blob cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import IntegrityError, SourceError
from ._store import Store

__all__ = ["BlobCache", "SourceFile", "collect_source", "default_cache_dir", "sha256_file"]

_CHUNK = 8 * 1024 * 1024
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
            info = store.get_file(key, tmp, progress=progress)
            self.bytes_downloaded += info.size
            actual = sha256_file(tmp)
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

    def clear(self) -> None:
        """Remove every cached blob."""
        shutil.rmtree(self.root / "sha256", ignore_errors=True)
