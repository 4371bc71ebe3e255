"""The models of a registry and a one-line summary of each, with one bounded request per model.

A model is a folder at the root with at least one committed manifest. The root's folders
come from one delimiter listing per 1,000 names; each candidate is then asked for one page
of its versions, in parallel, which also gives its count and newest version (docs/design.md,
"Scale: indexes and hints"). Only a model with a full page (1,000 versions or more) is
listed further.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .._errors import InvalidInputError
from .._refs import check_name, parse_version, version_sort_key
from .._stores import ObjectInfo, Store, SupportsListFolders
from ..layout import version_of_manifest_key, versions_prefix
from ._manifests import list_versions

__all__ = ["ModelSummary", "model_summaries"]

_PAGE = 1000
_WORKERS = 16


@dataclass(frozen=True)
class ModelSummary:
    """A model's name, how many committed versions it has, and the newest."""

    name: str
    versions: int
    latest: str


def _versions_in(name: str, infos: Iterable[ObjectInfo]) -> list[str]:
    found = []
    for info in infos:
        text = version_of_manifest_key(name, info.key)
        if text is None:
            continue
        try:
            parse_version(text)
        except InvalidInputError:
            continue  # a stray object is not a version
        found.append(text)
    return sorted(found, key=version_sort_key)


def _summary(store: Store, name: str) -> ModelSummary | None:
    page = list(store.list(versions_prefix(name), limit=_PAGE))
    versions = list_versions(store, name) if len(page) >= _PAGE else _versions_in(name, page)
    return ModelSummary(name, len(versions), versions[-1]) if versions else None


def _candidates(store: Store) -> list[str]:
    if isinstance(store, SupportsListFolders):
        folders = store.list_folders("")
    else:
        folders = sorted({info.key.split("/", 1)[0] for info in store.list("") if "/" in info.key})
    names = []
    for folder in folders:
        try:
            names.append(check_name(folder))
        except InvalidInputError:
            continue  # scratch folders such as _doctor/ are never models
    return names


def model_summaries(store: Store, *, workers: int = _WORKERS) -> list[ModelSummary]:
    """Every model with at least one committed version, sorted by name."""
    names = _candidates(store)
    if not names:
        return []
    with ThreadPoolExecutor(max(1, min(workers, len(names)))) as pool:
        found = list(pool.map(lambda n: _summary(store, n), names))
    return [s for s in found if s is not None]
