"""Push never follows a link out of its folder and never drops an entry silently."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry, SourceError


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="alice")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"weights")
    (src / "sub" / "config.json").write_text("{}")
    return src


def _written(registry: Registry) -> list[str]:
    return [info.key for info in registry.store.list("")]


def _refused(registry: Registry, folder: Path, *words: str) -> SourceError:
    with pytest.raises(SourceError) as caught:
        registry.push("iris", folder)
    for word in words:
        assert word in str(caught.value), f"the error does not say {word!r}: {caught.value}"
    assert _written(registry) == [], f"a refused source wrote {_written(registry)}"
    return caught.value


def test_a_link_to_a_file_outside_the_folder_is_refused_naming_it(
    registry: Registry, folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2")
    (folder / "sub" / "creds").symlink_to(secret)
    _refused(registry, folder, "sub/creds", "outside the folder")


def test_a_relative_link_climbing_out_is_refused(
    registry: Registry, folder: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("private")
    (folder / "up").symlink_to("../notes.txt")
    _refused(registry, folder, "'up'", "outside the folder")


def test_a_link_inside_the_folder_is_stored_as_the_file_it_points_to(
    registry: Registry, folder: Path, tmp_path: Path
) -> None:
    (folder / "latest.bin").symlink_to("weights.bin")
    version = registry.push("iris", folder)
    paths = {f.path: f for f in version.files}
    assert set(paths) == {"latest.bin", "sub/config.json", "weights.bin"}, f"{sorted(paths)}"
    assert paths["latest.bin"].sha256 == paths["weights.bin"].sha256, "the link's content"
    out = tmp_path / "out"
    registry.pull("iris:1.0.0", out)
    assert not (out / "latest.bin").is_symlink(), "a pulled link must be a plain file"
    assert (out / "latest.bin").read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        ("dangling", ("'gone'", "dangling")),
        ("loop", ("'loop'", "cannot be followed")),
        ("folder-link", ("'alias'", "not a regular file")),
    ],
)
def test_links_that_cannot_be_stored_as_files_are_refused(
    registry: Registry, folder: Path, make: str, words: tuple[str, ...]
) -> None:
    if make == "dangling":
        (folder / "gone").symlink_to(folder / "nowhere")
    elif make == "loop":
        (folder / "loop").symlink_to("loop2")
        (folder / "loop2").symlink_to("loop")
    else:
        (folder / "alias").symlink_to("sub")
    _refused(registry, folder, *words)


def test_a_fifo_is_refused(registry: Registry, folder: Path) -> None:
    os.mkfifo(folder / "sub" / "pipe")
    _refused(registry, folder, "sub/pipe", "FIFO")


def test_a_socket_is_refused(registry: Registry, tmp_path: Path) -> None:
    # AF_UNIX paths are limited to ~108 bytes: keep this folder short.
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        src = Path(short) / "m"
        src.mkdir()
        (src / "w.bin").write_bytes(b"w")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(src / "s.sock"))
            _refused(registry, src, "s.sock", "socket")
        finally:
            sock.close()


def test_an_unreadable_sub_folder_is_refused(
    registry: Registry, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = folder / "sub"
    if os.geteuid() != 0:
        locked.chmod(0)
    else:
        # root reads any folder; refuse at the system call, as the kernel would for others.
        real = os.scandir

        def scandir(path: Any = ".") -> Any:
            if isinstance(path, str | os.PathLike) and Path(path) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        _refused(registry, folder, "sub", "Permission denied")
    finally:
        locked.chmod(0o755)


def test_a_name_that_is_not_utf8_is_refused(registry: Registry, folder: Path) -> None:
    bad = os.fsencode(folder) + b"/caf\xe9.bin"
    with open(bad, "wb") as fh:
        fh.write(b"x")
    _refused(registry, folder, "caf\\xe9.bin", "UTF-8")


def test_a_file_that_grows_during_the_push_is_refused_before_the_commit(
    registry: Registry, folder: Path
) -> None:
    target = folder / "weights.bin"
    grown = []

    def progress(n: int) -> None:
        if not grown:
            grown.append(n)
            with open(target, "ab") as fh:
                fh.write(b"more bytes written by a training job still running")

    with pytest.raises(SourceError, match="changed during the push"):
        registry.push("iris", folder, progress=progress)
    assert grown, "the push never reported progress, so nothing was changed"
    assert registry.versions("iris") == [], "a file that changed became a version"


def test_a_file_replaced_during_the_push_is_refused(registry: Registry, tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"a" * 1000)
    swapped = []

    def progress(n: int) -> None:
        if not swapped:
            swapped.append(n)
            replacement = tmp_path / "other.bin"
            replacement.write_bytes(b"b" * 1000)  # same size, other file
            replacement.replace(target)

    with pytest.raises(SourceError, match="changed during the push"):
        registry.push("iris", target, progress=progress)
    assert registry.versions("iris") == []
