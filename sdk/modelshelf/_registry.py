"""The registry facade: one object composing the stores, versions and aliases wings.

It holds no workflow of its own: pushing lives in ``_versions/_push.py``, downloads in
``_versions/_fetch.py``, retention in ``_versions/_gc.py`` and alias changes in
``_aliases/`` (docs/design.md, "Layers").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._aliases import AliasOperations, read_aliases, read_history
from ._card import ModelCard, ModelVersion
from ._errors import InvalidInputError, ModelNotFoundError
from ._refs import ModelRef, check_name, parse_ref
from ._settings import cache_dir_setting, user_setting
from ._stores import Store, SupportsListFolders, open_store
from ._versions import (
    BlobCache,
    Fetcher,
    GcPlan,
    Pusher,
    joblib_entry,
    list_versions,
    plan_gc,
    read_manifest,
    run_gc,
)
from .layout import version_of_manifest_key

__all__ = ["Registry"]

Progress = Callable[[int], None]


class Registry(AliasOperations):
    """A model registry rooted at an S3 prefix or a local folder.

    Args:
        uri: ``s3://bucket/prefix``, ``file:///path``, a folder path, or a ready store.
            ``None`` reads ``MODELSHELF_REGISTRY``, else uses ``./.modelshelf``.
        cache_dir: The local blob cache; default ``MODELSHELF_CACHE`` or ``~/.cache/modelshelf``.
        user: Recorded as ``created_by`` and on alias changes; default ``MODELSHELF_USER``
            or ``user@host``.
        max_workers: Parallel blob transfers.
        **store_options: For ``s3://`` URIs: ``client``, ``endpoint_url``, ``profile``...
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] | Store | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        user: str | None = None,
        max_workers: int = 8,
        **store_options: Any,
    ) -> None:
        self.store: Store = open_store(uri, **store_options)
        self.cache = BlobCache(cache_dir_setting(cache_dir))
        self.user = user_setting(user)
        self.max_workers = max_workers

    @property
    def uri(self) -> str:
        """The registry root."""
        return self.store.uri

    def __repr__(self) -> str:
        return f"Registry({self.uri!r})"

    # -- reading -----------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of every model with at least one committed version, sorted."""
        if not isinstance(self.store, SupportsListFolders):
            found = set()
            for info in self.store.list(""):
                name = info.key.split("/", 1)[0]
                if version_of_manifest_key(name, info.key) is not None:
                    found.add(name)
            return sorted(found)
        names = []
        for folder in self.store.list_folders(""):
            try:
                check_name(folder)
            except InvalidInputError:
                continue  # scratch folders such as _doctor/ are never models
            if self.versions(folder):
                names.append(folder)
        return names

    def versions(self, name: str) -> list[str]:
        """Committed versions of ``name`` in semver order (empty when none)."""
        return list_versions(self.store, name)

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        """Turn a reference into ``name:version``.

        Raises:
            InvalidReferenceError: It does not parse.
            ModelNotFoundError / VersionNotFoundError / AliasNotSetError: Nothing to resolve to.
        """
        parsed = parse_ref(ref)
        if parsed.version:
            return parsed
        if parsed.alias:
            return ModelRef(parsed.name, version=self.resolve_alias(parsed.name, parsed.alias))
        versions = self.versions(parsed.name)
        if not versions:
            raise ModelNotFoundError(f"model {parsed.name!r} has no versions in {self.uri}")
        return ModelRef(parsed.name, version=versions[-1])

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The manifest of a version (card and files).

        Raises:
            VersionNotFoundError: The version is not committed.
        """
        resolved = self.resolve(ref)
        assert resolved.version is not None
        return read_manifest(self.store, resolved.name, resolved.version)

    # -- pushing -----------------------------------------------------------------------

    def push(
        self,
        name: str,
        source: Any,
        *,
        version: str | None = None,
        bump: str | None = None,
        card: ModelCard | dict[str, Any] | None = None,
        allow_schema_change: bool = False,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Push a new immutable version.

        Blobs go up first (skipped when the store already holds them); the manifest is
        committed last with create-if-absent, so a version is visible whole or not at all.

        Args:
            name: The model name.
            source: A file, a folder (every file under it), or a Python object (joblib).
            version: An explicit ``MAJOR.MINOR.PATCH``.
            bump: ``"major"``, ``"minor"`` or ``"patch"`` above the highest committed version.
                With neither ``version`` nor ``bump`` the first version is ``1.0.0`` and later
                ones bump MINOR.
            card: The model card (a :class:`ModelCard` or a mapping).
            allow_schema_change: Accept a schema change without a MAJOR bump (recorded).
            progress: Called with byte counts while hashing and uploading.

        Returns:
            The committed version, or the existing one when an identical push is repeated.

        Raises:
            VersionExistsError: ``version`` is taken by different content.
            SchemaChangeError: The card's schema changed without a MAJOR bump.
        """
        pusher = Pusher(self.store, user=self.user, max_workers=self.max_workers)
        return pusher.push(
            name,
            source,
            version=version,
            bump=bump,
            card=card,
            allow_schema_change=allow_schema_change,
            progress=progress,
        )

    # -- downloading -------------------------------------------------------------------

    def _fetcher(self) -> Fetcher:
        return Fetcher(self.store, self.cache, max_workers=self.max_workers)

    def fetch(
        self, ref: str | ModelRef | ModelVersion, progress: Progress | None = None
    ) -> dict[str, Path]:
        """Make sure every blob of a version is in the local cache, verified.

        Args:
            ref: A reference, or a manifest already read (saves reading it again).
            progress: Called with byte counts.

        Returns:
            ``{file path in the version: verified file in the cache}``, in manifest order.
            The cached files are read-only; copy them before changing them.

        Raises:
            IntegrityError: A blob is corrupt; nothing corrupt is cached.
        """
        manifest = ref if isinstance(ref, ModelVersion) else self.get(ref)
        return self._fetcher().fetch(manifest, progress)

    def pull(
        self, ref: str | ModelRef, dest: str | os.PathLike[str], progress: Progress | None = None
    ) -> ModelVersion:
        """Download a version's files into ``dest`` (a folder, created if needed).

        Every blob is verified against its sha256 before anything is placed: files are
        written to a staging folder beside ``dest`` and moved into ``dest`` only once every
        one of them checked out. Blobs already in the local cache are copied from it; the
        others come straight from the store and are not added to the cache (``load`` and
        ``fetch`` fill it).

        Raises:
            IntegrityError: A blob is corrupt, or the manifest names a path outside the
                folder; ``dest`` is left untouched.
        """
        manifest = self.get(ref)
        self._fetcher().pull(manifest, Path(dest), progress)
        return manifest

    def load(self, ref: str | ModelRef) -> tuple[Any, ModelCard]:
        """Load a joblib artifact and its card.

        Raises:
            SourceError: The version holds no single ``.joblib`` / ``.pkl`` file.
            IntegrityError: The blob is corrupt; nothing was unpickled.
        """
        manifest = self.get(ref)
        entry = joblib_entry(manifest)
        files = self.fetch(manifest)
        import joblib

        return joblib.load(files[entry.path]), manifest.card

    def verify(self, ref: str | ModelRef, progress: Progress | None = None) -> ModelVersion:
        """Re-download and re-hash every blob of a version, bypassing the cache.

        Raises:
            IntegrityError: Naming the first corrupt or missing blob.
        """
        manifest = self.get(ref)
        self._fetcher().verify(manifest, progress)
        return manifest

    # -- retention ---------------------------------------------------------------------

    def gc(
        self,
        name: str,
        *,
        keep_last: int = 10,
        older_than: timedelta | None = None,
        orphan_grace: timedelta = timedelta(hours=1),
        dry_run: bool = True,
    ) -> GcPlan:
        """Delete blobs that no kept version references (a dry run unless ``dry_run=False``).

        A version is kept when it is among the ``keep_last`` newest, or younger than
        ``older_than``, or was ever active or canary. Manifests are never deleted.

        Returns:
            The plan: kept, protected and expired versions, blobs deleted and bytes freed.
        """
        plan = plan_gc(
            self.store,
            name,
            protected=self._ever_aliased(name),
            keep_last=keep_last,
            older_than=older_than,
            orphan_grace=orphan_grace,
        )
        if dry_run:
            return plan
        return run_gc(self.store, plan, orphan_grace=orphan_grace)

    def _ever_aliased(self, name: str) -> set[str]:
        """Every version that was ever ``active`` or ``canary`` (gc keeps them)."""
        check_name(name)
        found: set[str] = set()
        for record in read_history(self.store, name):
            found.update(v for v in (record.state.active, record.state.canary) if v)
        current, _ = read_aliases(self.store, name)
        found.update(v for v in (current.active, current.canary) if v)
        return found
