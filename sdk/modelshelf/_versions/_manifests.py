"""Reading committed versions: the manifests under ``{model}/versions/``.

A manifest is checked against its key before it is used (docs/design.md, "Reading stored
objects"); a bad one is a :class:`CorruptObjectError`, never a validation dump.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from .._card import ModelVersion
from .._errors import (
    CorruptObjectError,
    InvalidInputError,
    KeyNotFoundError,
    ModelNotFoundError,
    VersionNotFoundError,
)
from .._refs import check_name, parse_version, version_sort_key
from .._stores import Store, check_key
from ..layout import manifest_key, version_of_manifest_key, versions_prefix

__all__ = [
    "SKIPPED",
    "digests_in",
    "list_versions",
    "parse_manifest",
    "read_manifest",
    "read_manifest_json",
    "read_manifests",
]

_PARALLEL_READS = 16  # manifest GETs in flight at once when reading many

SKIPPED = logging.getLogger("modelshelf.skipped")
"""Where readers of many objects say which corrupt one they skipped (the CLI prints it)."""

_HEX64 = re.compile(rb"[0-9a-f]{64}")


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


def parse_manifest(data: bytes, name: str, version: str, source: str) -> ModelVersion:
    """Validate a stored manifest against the key it was read from.

    Raises:
        CorruptObjectError: It does not parse, names another model or version, or lists a
            path that is unsafe, repeated, or both a file and a folder.
    """
    try:
        manifest = ModelVersion.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise CorruptObjectError(
            f"the manifest {source} is corrupt ({where}: {first['msg']}); "
            "it cannot be used; push the model again as a new version"
        ) from None
    problem = _problem(manifest, name, version)
    if problem is not None:
        raise CorruptObjectError(
            f"the manifest {source} is corrupt: {problem}; it cannot be used; "
            "push the model again as a new version"
        )
    return manifest


def _problem(manifest: ModelVersion, name: str, version: str) -> str | None:
    for field, expected in (("name", name), ("version", version)):
        if getattr(manifest, field) != expected:
            return f"its {field} is {getattr(manifest, field)!r}, its key says {expected!r}"
        card_value = getattr(manifest.card, field)
        if card_value is not None and card_value != expected:
            return f"its card's {field} is {card_value!r}, its key says {expected!r}"
    seen: set[str] = set()
    for entry in manifest.files:
        try:
            check_key(entry.path)
        except InvalidInputError:
            return f"it names the unsafe path {entry.path!r}"
        if entry.path in seen:
            return f"it names the path {entry.path!r} twice"
        seen.add(entry.path)
    for path in seen:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                return f"{'/'.join(parts[:i])!r} is both a file and the folder of {path!r}"
    return None


def read_manifest(store: Store, name: str, version: str) -> ModelVersion:
    """The manifest of ``name:version``, checked against its key.

    Raises:
        ModelNotFoundError: The model has no versions at all.
        VersionNotFoundError: This version is not committed (the message lists the newest).
        CorruptObjectError: The stored manifest does not validate.
    """
    return read_manifest_json(store, name, version)[0]


def read_manifest_json(store: Store, name: str, version: str) -> tuple[ModelVersion, bytes]:
    """The manifest of ``name:version`` and the bytes it was parsed from (what is signed).

    Raises:
        ModelNotFoundError: The model has no versions at all.
        VersionNotFoundError: This version is not committed (the message lists the newest).
        CorruptObjectError: The stored manifest does not validate.
    """
    key = manifest_key(name, version)
    try:
        obj = store.get(key)
    except KeyNotFoundError as exc:
        known = list_versions(store, name)
        if not known:
            raise ModelNotFoundError(f"model {name!r} has no versions in {store.uri}") from exc
        raise VersionNotFoundError(
            f"{name}:{version} does not exist in {store.uri}; "
            f"known versions: {', '.join(known[-5:])}"
        ) from exc
    assert obj is not None
    return parse_manifest(obj.data, name, version, f"{store.uri}/{key}"), obj.data


def digests_in(store: Store, name: str, version: str) -> set[str]:
    """Every sha256-looking string in a manifest's raw bytes (for a corrupt one)."""
    try:
        obj = store.get(manifest_key(name, version))
    except KeyNotFoundError:
        return set()
    assert obj is not None
    return {m.decode() for m in _HEX64.findall(obj.data)}


def read_manifests(
    store: Store, name: str, versions: list[str]
) -> tuple[dict[str, ModelVersion], dict[str, CorruptObjectError]]:
    """Read many manifests, skipping (and logging to :data:`SKIPPED`) corrupt ones.

    The reads run in parallel: each is one small GET whose time is the store's latency, and
    gc reads every manifest of a model on every run.
    """

    def one(version: str) -> ModelVersion | CorruptObjectError:
        try:
            return read_manifest(store, name, version)
        except CorruptObjectError as exc:
            return exc

    if len(versions) <= 1:
        results = [one(v) for v in versions]
    else:
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_READS, len(versions))) as pool:
            results = list(pool.map(one, versions))
    good: dict[str, ModelVersion] = {}
    bad: dict[str, CorruptObjectError] = {}
    for version, result in zip(versions, results, strict=True):
        if isinstance(result, CorruptObjectError):
            bad[version] = result
            SKIPPED.warning("skipped %s:%s: %s", name, version, result)
        else:
            good[version] = result
    return good, bad
