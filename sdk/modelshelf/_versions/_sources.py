"""Collecting a push source: a file, a folder, or a Python object serialized with joblib."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import SourceError

__all__ = ["JOBLIB_NAME", "SourceFile", "collect_source"]

JOBLIB_NAME = "model.joblib"


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
