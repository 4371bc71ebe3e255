"""Collecting a push source: a file, a folder, or a Python object serialized with joblib.

A folder is walked without following links out of it and without dropping anything
silently (docs/design.md, "Push sources"): every entry is a regular file, a folder, or a
link to a regular file inside the folder (stored as the file it points to); anything else
(a link out of the folder or to a folder, a dangling or looping link, a FIFO, a socket, a
device, an unreadable folder, a name that is not valid UTF-8) is a :class:`SourceError`
naming the entry. Each file's identity (inode, size, mtime) is recorded here so the push
can refuse a file that changed before its manifest is committed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import SourceError

__all__ = ["JOBLIB_NAME", "SourceFile", "check_unchanged", "collect_source"]

JOBLIB_NAME = "model.joblib"


@dataclass(frozen=True)
class SourceFile:
    """A file to push: its path inside the version and where it is on disk.

    ``identity`` is ``(device, inode, size, mtime_ns)`` of the file read when the source
    was collected (``None`` for files the push made itself).
    """

    path: str
    local: Path
    size: int
    identity: tuple[int, int, int, int] | None = None


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _shown(path: str | Path) -> str:
    # Names that are not UTF-8 arrive as lone surrogates; show their bytes escaped.
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def collect_source(source: Any, workdir: Path) -> list[SourceFile]:
    """Turn a push source into the files of a version.

    A file is pushed under its own name; a directory contributes every file below it with
    its relative path; any other Python object is serialized with joblib as ``model.joblib``.

    Raises:
        SourceError: A path that does not exist, cannot be read, or holds no files; in a
            folder, any entry that is not a regular file, a folder, or a link to a regular
            file inside the folder, and any name that is not valid UTF-8.
    """
    if isinstance(source, str | os.PathLike):
        given = Path(source).expanduser()
        try:
            st = given.stat()  # the path the user named may itself be a link
        except FileNotFoundError:
            raise SourceError(
                f"source {_shown(given)!r} does not exist; give a file or a folder"
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot read source {_shown(given)!r}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode):
            _check_utf8(given.name, given)
            return [_readable(given.name, given)]
        if stat.S_ISDIR(st.st_mode):
            root = given.resolve()
            files: list[SourceFile] = []
            _walk(root, root, "", files)
            if not files:
                raise SourceError(f"source folder {_shown(given)!r} holds no files to push")
            return files
        raise SourceError(f"source {_shown(given)!r} is neither a regular file nor a folder")
    import joblib

    target = workdir / JOBLIB_NAME
    try:
        joblib.dump(source, target)
    except Exception as exc:  # joblib raises whatever pickling raised
        raise SourceError(
            f"cannot serialize the {type(source).__name__} object with joblib: {exc}"
        ) from exc
    return [SourceFile(JOBLIB_NAME, target, target.stat().st_size)]


def _walk(root: Path, folder: Path, rel: str, files: list[SourceFile]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        raise SourceError(
            f"cannot read the folder {_shown(folder)!r} inside the source: {exc.strerror}; "
            "nothing was pushed (fix its permissions or remove it)"
        ) from exc
    for entry in entries:
        path = f"{rel}{entry.name}"
        local = Path(entry.path)
        _check_utf8(path, local)
        try:
            st = local.lstat()
        except OSError as exc:
            raise SourceError(f"cannot read {_shown(local)!r}: {exc.strerror}") from exc
        if stat.S_ISDIR(st.st_mode):
            _walk(root, local, f"{path}/", files)
        elif stat.S_ISREG(st.st_mode):
            files.append(_readable(path, local))
        elif stat.S_ISLNK(st.st_mode):
            files.append(_link(root, path, local))
        else:
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "a device"
            )
            raise SourceError(
                f"source entry {path!r} is {kind}, not a regular file; nothing was pushed "
                "(remove it from the folder)"
            )


def _link(root: Path, path: str, local: Path) -> SourceFile:
    """A link is stored as the file it points to, if that file is inside the folder."""
    shown = _shown(path)
    try:
        target = Path(os.path.realpath(local, strict=True))
    except FileNotFoundError:
        raise SourceError(
            f"source entry {shown!r} is a dangling link ({_shown(os.readlink(local))!r}); "
            "nothing was pushed"
        ) from None
    except OSError as exc:  # ELOOP and friends
        raise SourceError(
            f"source entry {shown!r} is a link that cannot be followed ({exc.strerror}); "
            "nothing was pushed"
        ) from exc
    if not target.is_relative_to(root):
        raise SourceError(
            f"source entry {shown!r} links to {_shown(target)!r}, outside the folder being "
            "pushed; links are never followed out of it (copy the file in if it belongs)"
        )
    if not target.is_file():
        raise SourceError(
            f"source entry {shown!r} links to {_shown(target)!r}, which is not a regular "
            "file; only links to files inside the folder are pushed (as those files)"
        )
    return _readable(path, target)


def _check_utf8(path: str, local: Path) -> None:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(
            f"source entry '{_shown(local)}' has a name that is not valid UTF-8; "
            "rename it (paths in a version are UTF-8)"
        ) from None


def _readable(rel: str, local: Path) -> SourceFile:
    try:
        with open(local, "rb") as fh:
            st = os.fstat(fh.fileno())
    except OSError as exc:
        raise SourceError(f"cannot read source file {_shown(local)!r}: {exc.strerror}") from exc
    return SourceFile(rel, local, st.st_size, _identity(st))


def check_unchanged(files: list[SourceFile]) -> None:
    """Refuse the push if a source file changed since it was collected.

    Called after the blobs are stored and before the manifest is committed, so a file
    written to during the push never becomes a version (its blob is an orphan for gc).

    Raises:
        SourceError: Naming the file and what changed.
    """
    for f in files:
        if f.identity is None:
            continue
        try:
            now = _identity(f.local.stat())
        except OSError as exc:
            raise SourceError(
                f"source file {_shown(f.local)!r} disappeared during the push "
                f"({exc.strerror}); nothing was committed"
            ) from exc
        if now != f.identity:
            what = (
                f"its size went from {f.identity[2]} to {now[2]} bytes"
                if now[2] != f.identity[2]
                else "it was modified or replaced"
            )
            raise SourceError(
                f"source file {_shown(f.local)!r} changed during the push ({what}); "
                "nothing was committed; push again once it is complete"
            )
