"""A local registry shared by a group: modes follow the umask, setgid folders work, links are
refused as keys, permission errors are AccessDeniedError.

The second user is a real process: the test forks (the interpreter is already loaded, so the
child needs nothing under the owner's home) and drops to uid/gid ``nobody`` before touching
the registry, so the kernel applies the permissions it would to a colleague.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelshelf import AccessDeniedError, InvalidKeyError, LocalStore, Registry

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder outside root's private tmp, reachable by other users."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="modelshelf-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _push_and_flip(root: Path, source: Path, cache: Path) -> None:
    registry = Registry(root, cache_dir=cache, user="colleague")
    registry.push("iris", source, card={"description": str(os.getuid())})
    registry.set_active("iris", registry.versions("iris")[-1])


def _as_user(uid: int, gid: int, work: Callable[[], None], mask: int = 0o002) -> tuple[int, str]:
    """Run ``work`` in a child process as ``uid``/``gid``; (exit status, error text)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        code, text = 0, ""
        try:
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(mask)
            work()
        except BaseException as exc:
            code, text = 1, f"{type(exc).__name__}: {exc}"
        os.write(write, text.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        text = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".modelshelf-locks" not in p.parts]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_objects_get_the_mode_the_umask_says(tmp_path: Path, mask: int, mode: int) -> None:
    source = tmp_path / "m.bin"
    source.write_bytes(b"weights")
    with umask(mask):
        registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
        registry.push("iris", source)
        registry.set_active("iris", "1.0.0")
        registry.fetch("iris:1.0.0")
    files = _files(tmp_path / "reg")
    assert len(files) >= 4, f"expected blob, manifest, aliases and history: {files}"
    for path in files:
        got = stat.S_IMODE(path.stat().st_mode)
        assert got == mode, f"{path.relative_to(tmp_path)} is {oct(got)}, umask gives {oct(mode)}"
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert cached and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in cached), (
        "cached blobs must stay read-only"
    )


@root_only
def test_a_group_shares_a_setgid_registry(shared: Path) -> None:
    group = NOBODY  # nogroup: the colleague's group, not root's
    registry_root = shared / "reg"
    registry_root.mkdir()
    os.chown(registry_root, 0, group)
    registry_root.chmod(0o2775)
    source = shared / "m.bin"
    source.write_bytes(b"first")
    source.chmod(0o644)
    with umask(0o002):
        _push_and_flip(registry_root, source, shared / "cache-root")

    colleague_source = shared / "m2.bin"
    colleague_source.write_bytes(b"second, by a colleague")
    colleague_source.chmod(0o644)
    code, error = _as_user(
        NOBODY,
        group,
        lambda: _push_and_flip(registry_root, colleague_source, shared / "cache-nobody"),
    )
    assert code == 0, f"the colleague could not push and flip: {error}"
    registry = Registry(registry_root, cache_dir=shared / "cache-check")
    assert registry.versions("iris") == ["1.0.0", "1.1.0"]
    assert registry.aliases("iris").active == "1.1.0"
    for path in [p for p in registry_root.rglob("*") if p.is_dir()]:
        st = path.stat()
        assert st.st_gid == group and st.st_mode & stat.S_ISGID, (
            f"{path} lost the shared group or its setgid bit: {oct(st.st_mode)} gid {st.st_gid}"
        )
    for path in _files(registry_root):
        assert path.stat().st_gid == group, f"{path} is not in the shared group"


@root_only
def test_a_user_outside_the_group_gets_access_denied(shared: Path) -> None:
    registry_root = shared / "reg"
    source = shared / "m.bin"
    source.write_bytes(b"weights")
    source.chmod(0o644)
    with umask(0o022):
        _push_and_flip(registry_root, source, shared / "cache-root")

    def push() -> None:
        try:
            _push_and_flip(registry_root, source, shared / "cache-nobody")
        except AccessDeniedError as exc:
            raise SystemExit(f"denied: {exc}") from exc

    code, error = _as_user(NOBODY, NOBODY, push, mask=0o022)
    assert code == 1 and "denied:" in error, f"expected AccessDeniedError, got: {error}"
    assert "permissions" in error, f"the error should say what to check: {error}"


@pytest.mark.parametrize("planted", ["object", "folder", "inside"])
def test_a_symlink_planted_as_a_key_is_refused(tmp_path: Path, planted: str) -> None:
    store = LocalStore(tmp_path / "reg")
    store.put("iris/aliases.json", b"{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (tmp_path / "elsewhere").mkdir()
    if planted == "object":
        (tmp_path / "reg" / "iris" / "creds.json").symlink_to(secret)
        key = "iris/creds.json"
    elif planted == "folder":
        (tmp_path / "reg" / "iris" / "history").symlink_to(tmp_path / "elsewhere")
        key = "iris/history/000000000001.json"
    else:
        (tmp_path / "reg" / "iris" / "copy.json").symlink_to("aliases.json")
        key = "iris/copy.json"
    for attempt in (
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.put(key, b"x"),
        lambda: store.delete(key),
    ):
        with pytest.raises(InvalidKeyError, match="symbolic link"):
            attempt()
    assert secret.read_text() == "private"
    assert not list((tmp_path / "elsewhere").iterdir()), "a write went through the link"
    assert key not in [info.key for info in store.list("iris/")], "a link listed as an object"
