"""The registry facade: one object composing the stores, versions and aliases wings.

It holds no workflow of its own: pushing lives in ``_versions/_push.py``, downloads in
``_versions/_fetch.py``, retention in ``_versions/_gc.py`` and alias changes in
``_aliases/`` (docs/design.md, "Layers").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._aliases import (
    AliasAction,
    Aliases,
    AliasOperations,
    HistoryRecord,
    ever_aliased,
    read_aliases,
    read_history,
)
from ._card import FileEntry, ModelCard, ModelVersion
from ._errors import InvalidBundleError, InvalidInputError, ModelNotFoundError
from ._loaders import LoadOptions, choose_loader
from ._refs import ModelRef, check_name, parse_ref
from ._settings import cache_dir_setting, gc_grace_setting, user_setting
from ._stores import Store, open_store
from ._trust import CARD_PATH, RESERVED_PATHS, SIGNATURE_FILE, PolicyInput, TrustOperations
from ._versions import (
    BlobCache,
    Comparison,
    Fetcher,
    GcPlan,
    Pusher,
    VersionDiff,
    collected_versions,
    compare_versions,
    diff_versions,
    list_versions,
    missing_blobs,
    model_summaries,
    plan_gc,
    read_head,
    read_manifest,
    run_gc,
)

__all__ = ["Registry"]

Progress = Callable[[int], None]


class Registry(AliasOperations, TrustOperations):
    """A model registry rooted at an S3 prefix or a local folder.

    Args:
        uri: ``s3://bucket/prefix``, ``file:///path``, a folder path, or a ready store.
            ``None`` reads ``MODELSHELF_REGISTRY``, else uses ``./.modelshelf``.
        cache_dir: The local blob cache; default ``MODELSHELF_CACHE`` or ``~/.cache/modelshelf``.
        user: Recorded as ``created_by`` and on alias changes; default ``MODELSHELF_USER``
            or ``user@host``.
        max_workers: Parallel blob transfers.
        trust_policy: A pinned trust policy (a :class:`TrustPolicy` or a policy file) that
            replaces the registry's ``trust.json``; default ``MODELSHELF_TRUST_POLICY``,
            else the registry's own.
        gc_grace: Seconds between a gc run's condemnation and its re-read; pushes and alias
            changes commit within half of it after checking for condemnations
            (docs/design.md, "Retention"). Default ``MODELSHELF_GC_GRACE`` or 60.
        **store_options: For ``s3://`` URIs: ``client``, ``endpoint_url``, ``profile``...
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] | Store | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        user: str | None = None,
        max_workers: int = 8,
        trust_policy: PolicyInput = None,
        gc_grace: float | None = None,
        **store_options: Any,
    ) -> None:
        self.store: Store = open_store(uri, **store_options)
        self.cache = BlobCache(cache_dir_setting(cache_dir))
        self.user = user_setting(user)
        self.max_workers = max_workers
        self._trust_pin = trust_policy
        self.gc_grace = gc_grace_setting(gc_grace)

    @property
    def uri(self) -> str:
        """The registry root."""
        return self.store.uri

    def __repr__(self) -> str:
        return f"Registry({self.uri!r})"

    # -- reading -----------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of every model with at least one committed version, sorted.

        One delimiter listing of the root, then one bounded listing per model, in parallel.
        """
        return [summary.name for summary in model_summaries(self.store)]

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
        latest = read_head(self.store, check_name(parsed.name)).latest
        if latest is None:
            raise ModelNotFoundError(f"model {parsed.name!r} has no versions in {self.uri}")
        return ModelRef(parsed.name, version=latest)

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
        sign_key: str | os.PathLike[str] | bytes | None = None,
        key_password: str | None = None,
    ) -> ModelVersion:
        """Push a new immutable version.

        Blobs go up first (skipped when the store already holds them); the manifest is
        committed last with create-if-absent, so a version is visible whole or not at all.

        Args:
            name: The model name.
            source: A file, a folder (every file under it), or a Python object (joblib).
            version: An explicit ``MAJOR.MINOR.PATCH``.
            bump: ``"major"``, ``"minor"`` or ``"patch"`` above the highest committed version.
                A model's first version is ``1.0.0`` whatever the bump; with neither
                ``version`` nor ``bump`` later ones bump MINOR. A card that states a
                ``version`` asks for exactly that version: it must agree with ``version``
                and cannot be combined with ``bump``.
            card: The model card (a :class:`ModelCard` or a mapping).
            allow_schema_change: Accept a schema change without a MAJOR bump (recorded).
            progress: Called with byte counts while hashing and uploading.
            sign_key: Sign the committed version with this EC private key (PEM path or
                bytes), as :meth:`sign` does; the key is loaded before anything is uploaded.
            key_password: The key's password, if it is encrypted.

        Returns:
            The committed version, or the existing one when an identical push is repeated.

        Raises:
            VersionExistsError: ``version`` is taken by different content.
            SchemaChangeError: The card's schema changed without a MAJOR bump.
            InvalidSigningKeyError: ``sign_key`` cannot be used (nothing was pushed).
        """
        from ._trust import load_private_key

        private = load_private_key(sign_key, key_password) if sign_key is not None else None
        if private is not None and isinstance(source, str | os.PathLike):
            self._refuse_reserved(source)
        pusher = Pusher(
            self.store, user=self.user, max_workers=self.max_workers, gc_grace=self.gc_grace
        )
        pushed = pusher.push(
            name,
            source,
            version=version,
            bump=bump,
            card=card,
            allow_schema_change=allow_schema_change,
            progress=progress,
        )
        if private is not None:
            self.sign_manifest(pushed, private)
        return pushed

    def apply_alias_change(
        self,
        name: str,
        action: AliasAction,
        change: Callable[[Aliases], dict[str, Any]],
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
        allow_major: bool = False,
    ) -> HistoryRecord:
        """As :meth:`AliasOperations.apply_alias_change`, behind the trust policy's checks.

        A change that makes a version active or canary needs, when the policy says so, a
        trusted signature of it and the approvals of its gate (``promote`` for active,
        ``canary`` for canary): every named alias method and the promoter come through here.

        Raises:
            UntrustedVersionError / ApprovalRequiredError: Nothing was changed.
        """
        return super().apply_alias_change(
            name,
            action,
            self.guard_alias_change(name, change),
            reason=reason,
            details=details,
            expect_generation=expect_generation,
            allow_major=allow_major,
        )

    @staticmethod
    def _refuse_reserved(source: str | os.PathLike[str]) -> None:
        root = Path(source)
        clash = [n for n in sorted(RESERVED_PATHS) if root.is_dir() and (root / n).exists()]
        if clash:
            raise InvalidBundleError(
                f"{root} holds {', '.join(clash)}, names a signed pull writes itself; move "
                "them away to push a signed version (nothing was pushed)"
            )

    # -- comparing ---------------------------------------------------------------------

    def compare(
        self,
        name: str,
        versions: Sequence[str] | None = None,
        *,
        last: int | None = None,
    ) -> Comparison:
        """Versions of ``name`` side by side, each field against the previous version.

        Args:
            name: The model.
            versions: The versions to compare (shown in semver order); default every one.
            last: Only the newest ``last`` versions (when ``versions`` is not given).

        Returns:
            The comparison: one column per version (who, when, size, alias roles ever and
            now) and one row per card field, flattened (``performance.accuracy``...), with
            the change against the previous column. ``.diff_only()`` keeps differing rows.

        Raises:
            ModelNotFoundError: The model has no versions.
            VersionNotFoundError: A named version is not committed.
            InvalidInputError: ``last`` below 1.
        """
        available = self.versions(name)
        if not available:
            raise ModelNotFoundError(f"model {name!r} has no versions in {self.uri}")
        if last is not None and (isinstance(last, bool) or last < 1):
            raise InvalidInputError(f"last must be a whole number >= 1, not {last!r}")
        if versions:
            order = {v: i for i, v in enumerate(available)}
            chosen = sorted(dict.fromkeys(versions), key=lambda v: order.get(v, len(order)))
        else:
            chosen = available[-last:] if last is not None else available
        manifests = [self.get(ModelRef(name, version=v)) for v in chosen]
        ever_active: set[str] = set()
        ever_canary: set[str] = set()
        for record in read_history(self.store, name):
            if record.state.active:
                ever_active.add(record.state.active)
            if record.state.canary:
                ever_canary.add(record.state.canary)
        current, _ = read_aliases(self.store, name)
        return compare_versions(
            manifests,
            ever_active=ever_active,
            ever_canary=ever_canary,
            now={"active": current.active, "canary": current.canary},
        )

    def diff(self, old: str | ModelRef, new: str | ModelRef) -> VersionDiff:
        """What changed from ``old`` to ``new``: card fields (flattened) and files by path.

        Raises:
            VersionNotFoundError / ModelNotFoundError: A reference resolves to nothing.
        """
        return diff_versions(self.get(old), self.get(new))

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
            UntrustedVersionError: Given a reference, the policy requires a signature for
                ``pull`` and none is trusted (a manifest passed in was checked by the caller).
            IntegrityError: A blob is corrupt; nothing corrupt is cached.
        """
        manifest = ref if isinstance(ref, ModelVersion) else self.trusted_manifest(ref, "pull")
        return self._fetcher().fetch(manifest, progress)

    def pull(
        self,
        ref: str | ModelRef,
        dest: str | os.PathLike[str],
        progress: Progress | None = None,
        *,
        card: bool | None = None,
        overwrite: bool = False,
    ) -> ModelVersion:
        """Download a version's files into ``dest`` (a folder, created if needed).

        Every blob is verified against its sha256 before anything is placed: files are
        written to a staging folder beside ``dest`` and moved into ``dest`` only once every
        one of them checked out. Blobs already in the local cache are copied from it; the
        others come straight from the store and are not added to the cache (``load`` and
        ``fetch`` fill it).

        When a signature by a key the trust policy trusts covers the version, it is written
        as ``model.sig`` with the card as ``modelshelf-card.json``: the folder stock
        ``model_signing verify key`` checks.

        Args:
            ref: The version.
            dest: The folder.
            progress: Called with byte counts.
            card: Write ``modelshelf-card.json`` even without a signature (``True``; the
                folder stock ``model_signing sign`` signs), or never (``False``).
            overwrite: Replace files in ``dest`` whose content differs from the version's;
                by default such a file is refused before anything is downloaded. Files with
                the same content are always kept (a pull can be repeated).

        Raises:
            DestinationExistsError: ``dest`` holds a different file (or a folder) where a
                file of the version goes, and ``overwrite`` is off; nothing was written.
            UntrustedVersionError: The policy requires a signature for pull and none is
                trusted; nothing was downloaded.
            IntegrityError: A blob is corrupt, or the manifest names a path outside the
                folder; ``dest`` is left untouched.
        """
        trusted = self.trusted_version(ref, "pull")
        manifest = trusted.manifest
        extras: dict[str, bytes] = {}
        if not {f.path for f in manifest.files} & RESERVED_PATHS:
            bundle = trusted.trusted_bundle()
            if bundle is not None:
                extras[SIGNATURE_FILE] = bundle
            if card or (card is None and bundle is not None):
                from ._trust import card_bytes

                extras[CARD_PATH] = card_bytes(trusted.manifest_json)
        self._fetcher().pull(manifest, Path(dest), progress, extras=extras, overwrite=overwrite)
        return manifest

    def load(
        self,
        ref: str | ModelRef,
        *,
        trusted_types: list[str] | tuple[str, ...] = (),
    ) -> tuple[Any, ModelCard]:
        """Load a version as a model, with the loader its files (or its card) call for.

        skops, ONNX and safetensors files load without pickle; joblib / ``.pkl`` files load
        only when the trust policy allows pickle. The signature (when the policy requires
        one) and the loader are checked before any byte is downloaded.

        Args:
            ref: The version.
            trusted_types: Types a skops file may hold beyond skops' safe defaults, such
                as ``["sklearn.tree._tree.Tree"]``: your decision, never the file's.

        Returns:
            ``(model, card)``.

        Raises:
            UntrustedVersionError: No trusted signature covers the version.
            PickleNotAllowedError: It needs the joblib loader and the policy forbids pickle.
            UntrustedTypesError: The skops file holds types not in ``trusted_types``.
            SourceError: No loader fits its files, or several do and the card names none.
            IntegrityError: A blob is corrupt; nothing was loaded.
        """
        trusted = self.trusted_version(ref, "load")
        manifest = trusted.manifest
        options = LoadOptions(
            allow_pickle=trusted.policy.allow_pickle, trusted_types=tuple(trusted_types)
        )
        loader = choose_loader(manifest, options)
        files = self.fetch(manifest)
        return loader.load(manifest, files, options), manifest.card

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
        grace: float | None = None,
    ) -> GcPlan:
        """Delete blobs that no kept version references (a dry run unless ``dry_run=False``).

        A version is kept when it is among the ``keep_last`` newest, or younger than
        ``older_than``, or was ever active or canary. Manifests are never deleted. Deleting
        condemns the candidates first, waits ``grace`` seconds, re-reads and deletes only
        what is still unneeded (docs/design.md, "Retention"), so it takes at least a grace.

        Args:
            name: The model.
            keep_last: The newest versions always kept.
            older_than: Only versions older than this expire (``None``: any age).
            orphan_grace: Unreferenced blobs younger than this are left alone.
            dry_run: Only plan.
            grace: Default the registry's ``gc_grace``.

        Returns:
            The plan: kept, protected and expired versions, blobs deleted and bytes freed.
        """
        if keep_last < 0:
            # Refused before _ever_aliased may write its index (invariant 10).
            raise InvalidInputError(f"--keep-last must be 0 or more, not {keep_last}")
        condemn_grace = gc_grace_setting(grace) if grace is not None else self.gc_grace
        if dry_run:
            return plan_gc(
                self.store,
                name,
                protected=self._ever_aliased(name),
                keep_last=keep_last,
                older_than=older_than,
                orphan_grace=orphan_grace,
            )
        return run_gc(
            self.store,
            name,
            protected=lambda: self._ever_aliased(name),
            keep_last=keep_last,
            older_than=older_than,
            orphan_grace=orphan_grace,
            grace=condemn_grace,
            who=self.user,
        )

    def missing_blobs(self, ref: str | ModelRef | ModelVersion) -> list[FileEntry]:
        """The files of a version whose blobs are gone (collected by gc), one HEAD each."""
        manifest = ref if isinstance(ref, ModelVersion) else self.get(ref)
        return missing_blobs(self.store, manifest)

    def collected(self, name: str, manifests: Sequence[ModelVersion] | None = None) -> set[str]:
        """Versions of ``name`` with at least one blob gone, from one listing of its blobs.

        Args:
            name: The model.
            manifests: Its manifests when already read (saves reading them again).
        """
        check_name(name)
        if manifests is None:
            manifests = [read_manifest(self.store, name, v) for v in self.versions(name)]
        return collected_versions(self.store, name, manifests)

    def _ever_aliased(self, name: str) -> set[str]:
        """Every version that was ever ``active`` or ``canary`` (gc keeps them)."""
        return ever_aliased(self.store, name)
