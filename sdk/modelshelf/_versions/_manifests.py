"""Reading committed versions: the manifests under ``{model}/versions/``."""

from __future__ import annotations

from .._card import ModelVersion
from .._errors import (
    InvalidInputError,
    KeyNotFoundError,
    ModelNotFoundError,
    VersionNotFoundError,
)
from .._refs import check_name, parse_version, version_sort_key
from .._stores import Store
from ..layout import manifest_key, version_of_manifest_key, versions_prefix

__all__ = ["list_versions", "read_manifest", "read_manifest_json"]


def list_versions(store: Store, name: str) -> list[str]:
    """Committed versions of ``name`` in semver order (empty when none)."""
    check_name(name)
    found = []
    for info in store.list(versions_prefix(name)):
        text = version_of_manifest_key(name, info.key)
        if text is None:
            continue
        try:
            parse_version(text)
        except InvalidInputError:
            continue  # a stray object is not a version
        found.append(text)
    return sorted(found, key=version_sort_key)


def read_manifest(store: Store, name: str, version: str) -> ModelVersion:
    """The manifest of ``name:version``.

    Raises:
        ModelNotFoundError: The model has no versions at all.
        VersionNotFoundError: This version is not committed (the message lists the newest).
    """
    return read_manifest_json(store, name, version)[0]


def read_manifest_json(store: Store, name: str, version: str) -> tuple[ModelVersion, bytes]:
    """The manifest of ``name:version`` and the bytes it was parsed from (what is signed).

    Raises:
        ModelNotFoundError: The model has no versions at all.
        VersionNotFoundError: This version is not committed (the message lists the newest).
    """
    try:
        obj = store.get(manifest_key(name, version))
    except KeyNotFoundError as exc:
        known = list_versions(store, name)
        if not known:
            raise ModelNotFoundError(f"model {name!r} has no versions in {store.uri}") from exc
        raise VersionNotFoundError(
            f"{name}:{version} does not exist in {store.uri}; "
            f"known versions: {', '.join(known[-5:])}"
        ) from exc
    assert obj is not None
    return ModelVersion.model_validate_json(obj.data), obj.data
