"""Optional store capabilities are named protocols: declared, checked, and never required."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from modelshelf import (
    CREATE,
    LocalStore,
    ObjectInfo,
    Registry,
    Store,
    StoredObject,
    SupportsContentAddressedPut,
    SupportsHashedGet,
    SupportsListFolders,
    SupportsStaleUploads,
)
from modelshelf._stores import ProgressCallback, PutMode


class PlainStore:
    """Wraps a store and forwards the required protocol only, no capability."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        self.calls.append("get")
        return self.inner.get(key, if_none_match=if_none_match)

    def head(self, key: str) -> ObjectInfo:
        self.calls.append("head")
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        self.calls.append("put")
        return self.inner.put(key, data, mode=mode)

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        mode: PutMode = CREATE,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> str:
        self.calls.append("put_file")
        return self.inner.put_file(key, path, mode=mode, sha256=sha256, progress=progress)

    def get_file(
        self,
        key: str,
        dest: Path,
        *,
        progress: ProgressCallback | None = None,
        expected_size: int | None = None,
    ) -> ObjectInfo:
        self.calls.append("get_file")
        return self.inner.get_file(key, dest, progress=progress, expected_size=expected_size)

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        self.calls.append("list")
        return self.inner.list(prefix, start_after=start_after, limit=limit)

    def delete(self, key: str) -> None:
        self.calls.append("delete")
        self.inner.delete(key)


def test_the_local_store_declares_every_capability(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for capability in (
        SupportsListFolders,
        SupportsContentAddressedPut,
        SupportsHashedGet,
        SupportsStaleUploads,
    ):
        assert isinstance(store, capability), f"LocalStore lost {capability.__name__}"


def test_a_wrapper_without_capabilities_is_a_store_and_declares_none(tmp_path: Path) -> None:
    wrapper = PlainStore(LocalStore(tmp_path))
    assert isinstance(wrapper, Store)
    for capability in (
        SupportsListFolders,
        SupportsContentAddressedPut,
        SupportsHashedGet,
        SupportsStaleUploads,
    ):
        assert not isinstance(wrapper, capability), f"{capability.__name__} was not forwarded"


def test_a_registry_over_a_plain_wrapper_uses_the_required_protocol_only(tmp_path: Path) -> None:
    wrapper = PlainStore(LocalStore(tmp_path / "reg"))
    registry = Registry(wrapper, cache_dir=tmp_path / "cache")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 100)
    registry.push("iris", model)
    assert registry.models() == ["iris"], "models() must fall back to a listing"
    files = registry.fetch("iris")
    assert files["model.bin"].read_bytes() == model.read_bytes()
    plan = registry.gc("iris", dry_run=False)
    assert plan.stale_uploads == 0
    assert "put_file" in wrapper.calls, "without the capability the blob goes up with put_file"
