"""A local registry reports operating-system failures as modelshelf errors, like S3 does.

The failures are injected at the system call (``os.link``, ``os.copy_file_range``) because
the conditions behind them (a full disk, a folder the process may not write) cannot be
produced portably by a test running as root; everything above the call is the real store.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelshelf import AccessDeniedError, ModelshelfError, Registry, StoreError
from modelshelf._cli import cli

REAL_LINK = os.link
REAL_COPY = os.copy_file_range


def _leftovers(root: Path) -> list[str]:
    """Files a failed operation left behind (temp files, blobs, records)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and ".modelshelf-locks" not in path.parts:
            found.append(str(path.relative_to(root)))
    return sorted(found)


def _no_space(*args: Any, **kwargs: Any) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_push_is_a_store_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(256 * 1024))
    monkeypatch.setattr(os, "copy_file_range", _no_space)
    monkeypatch.setattr(os, "pwrite", _no_space)
    with pytest.raises(StoreError) as caught:
        registry.push("iris", model)
    assert not isinstance(caught.value, AccessDeniedError), "a full disk is not a refusal"
    assert "No space left" in str(caught.value), f"the cause must be named: {caught.value}"
    assert caught.value.exit_code == 60
    monkeypatch.setattr(os, "copy_file_range", REAL_COPY)
    assert registry.versions("iris") == [], "a failed push must commit no version"
    assert _leftovers(tmp_path / "reg") == [], "a failed push must leave no file behind"


def test_a_full_disk_during_push_exits_with_the_store_error_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    monkeypatch.setattr(os, "copy_file_range", _no_space)
    monkeypatch.setattr(os, "pwrite", _no_space)
    result = CliRunner().invoke(
        cli, ["--registry", str(tmp_path / "reg"), "push", "iris", str(model)]
    )
    assert result.exit_code == 60, f"exit {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output, "an OS error must not escape as a traceback"


def test_permission_denied_on_an_alias_change_is_access_denied_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="alice")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    registry.push("iris", model)
    registry.set_active("iris", "1.0.0")
    registry.push("iris", model, version="1.1.0", card={"description": "retrained"})

    def refuse_history(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if "/history/" in os.fspath(dst):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(dst))
        REAL_LINK(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", refuse_history)
    with pytest.raises(AccessDeniedError) as caught:
        registry.set_active("iris", "1.1.0", reason="flip")
    assert caught.value.exit_code == 63
    assert "permission" in str(caught.value).lower(), f"say what to check: {caught.value}"
    monkeypatch.setattr(os, "link", REAL_LINK)
    assert registry.aliases("iris").active == "1.0.0", "a refused change must not apply"
    assert len(registry.history("iris")) == 1, "a refused change must leave no record"
    tmp_files = list((tmp_path / "reg" / ".modelshelf-tmp").iterdir())
    assert tmp_files == [], f"temp files left behind: {tmp_files}"


def test_permission_denied_exits_with_the_access_denied_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    registry.push("iris", model)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "link", refuse)
    result = CliRunner().invoke(
        cli, ["--registry", str(tmp_path / "reg"), "alias", "set", "iris", "1.0.0"]
    )
    assert result.exit_code == 63, f"exit {result.exit_code}: {result.output}"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EACCES, AccessDeniedError),
        (errno.EPERM, AccessDeniedError),
        (errno.EROFS, AccessDeniedError),
        (errno.ENOSPC, StoreError),
        (errno.EIO, StoreError),
        (errno.EDQUOT, StoreError),
    ],
)
def test_every_os_error_is_translated_once_at_the_store_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, expected: type[ModelshelfError]
) -> None:
    from modelshelf import LocalStore

    store = LocalStore(tmp_path / "reg")
    store.put("a/b", b"x")

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", fail)
    with pytest.raises(expected) as caught:
        store.put("a/c", b"y")
    assert type(caught.value) is expected, f"{errno.errorcode[code]} became {caught.value!r}"
    assert isinstance(caught.value.__cause__, OSError), "raise ... from the OS error"
