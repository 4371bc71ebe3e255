"""The registry: push immutable versions, list, resolve, pull and load them."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._alias_ops import AliasOperations
from ._card import FileEntry, ModelCard, ModelVersion, card_from_input, utcnow
from ._errors import (
    IntegrityError,
    InvalidCardError,
    InvalidInputError,
    InvalidKeyError,
    InvalidVersionError,
    KeyNotFoundError,
    ModelNotFoundError,
    PreconditionFailedError,
    SchemaChangeError,
    SourceError,
    VersionExistsError,
    VersionNotFoundError,
)
from ._gc import GcPlan, plan_gc, run_gc
from ._refs import ModelRef, bump_version, check_name, parse_ref, parse_version, version_key
from ._store import CREATE, Store, check_key
from ._transfer import BlobCache, SourceFile, collect_source, default_cache_dir, sha256_file
from ._uri import open_store

__all__ = ["Registry"]

Progress = Callable[[int], None]
_MAX_BUMP_ATTEMPTS = 64


def blob_key(name: str, sha256: str) -> str:
    """Key of a content-addressed blob."""
    return f"{name}/blobs/sha256/{sha256}"


def version_key_path(name: str, version: str) -> str:
    """Key of a version manifest."""
    return f"{name}/versions/{version}.json"


def default_user() -> str:
    """``MODELSHELF_USER``, else ``user@host``."""
    if env := os.environ.get("MODELSHELF_USER"):
        return env
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


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
        self.cache = BlobCache(Path(cache_dir) if cache_dir else default_cache_dir())
        self.user = user or default_user()
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
        list_folders = getattr(self.store, "list_folders", None)
        if list_folders is None:
            found = set()
            for info in self.store.list(""):
                parts = info.key.split("/")
                if len(parts) == 3 and parts[1] == "versions" and parts[2].endswith(".json"):
                    found.add(parts[0])
            return sorted(found)
        names = []
        for folder in list_folders(""):
            try:
                check_name(folder)
            except InvalidInputError:
                continue  # scratch folders such as _doctor/ are never models
            if self.versions(folder):
                names.append(folder)
        return names

    def versions(self, name: str) -> list[str]:
        """Committed versions of ``name`` in semver order (empty when none)."""
        check_name(name)
        prefix = f"{name}/versions/"
        found = []
        for info in self.store.list(prefix):
            stem = info.key[len(prefix) :]
            if stem.endswith(".json"):
                text = stem[: -len(".json")]
                try:
                    parse_version(text)
                except InvalidInputError:
                    continue  # a stray object is not a version
                found.append(text)
        return sorted(found, key=version_key)

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
            return ModelRef(parsed.name, version=self._resolve_alias(parsed.name, parsed.alias))
        versions = self.versions(parsed.name)
        if not versions:
            raise ModelNotFoundError(f"model {parsed.name!r} has no versions in {self.uri}")
        return ModelRef(parsed.name, version=versions[-1])

    def _resolve_alias(self, name: str, alias: str) -> str:
        from ._aliases import resolve_alias

        return resolve_alias(self, name, alias)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The manifest of a version (card and files).

        Raises:
            VersionNotFoundError: The version is not committed.
        """
        resolved = self.resolve(ref)
        assert resolved.version is not None
        return self._read_manifest(resolved.name, resolved.version)

    def _read_manifest(self, name: str, version: str) -> ModelVersion:
        try:
            obj = self.store.get(version_key_path(name, version))
        except KeyNotFoundError as exc:
            if not self.versions(name):
                raise ModelNotFoundError(f"model {name!r} has no versions in {self.uri}") from exc
            raise VersionNotFoundError(
                f"{name}:{version} does not exist in {self.uri}; "
                f"known versions: {', '.join(self.versions(name)[-5:])}"
            ) from exc
        assert obj is not None
        return ModelVersion.model_validate_json(obj.data)

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
        check_name(name)
        the_card = card_from_input(card)
        if the_card.name is not None and the_card.name != name:
            raise InvalidCardError(
                f"the card names model {the_card.name!r} but the push is for {name!r}"
            )
        if version is not None and bump is not None:
            raise InvalidVersionError("give either an explicit version or a bump, not both")
        if the_card.version is not None:
            try:
                parse_version(the_card.version)
            except InvalidVersionError as exc:
                raise InvalidCardError(f"invalid model card: version: {exc}") from exc
            if version is None and bump is None:
                version = the_card.version
            elif version != the_card.version:
                raise InvalidCardError(
                    f"the card says version {the_card.version} but the push asks for "
                    f"{version or 'a ' + str(bump) + ' bump'}"
                )
        if version is not None:
            parse_version(version)
        if bump is not None:
            bump_version("0.0.0", bump)  # validates the bump word before any work

        with tempfile.TemporaryDirectory(prefix="modelshelf-push-") as workdir:
            files = collect_source(source, Path(workdir))
            existing = self._precheck(name, the_card, files, version, bump, allow_schema_change)
            if existing is not None:
                return existing
            entries, reused = self._upload_blobs(name, files, progress)
            manifest = self._commit(name, the_card, entries, version, bump, allow_schema_change)
            self._repair_reused(name, files, entries, reused)
            return manifest

    def _repair_reused(
        self, name: str, files: list[SourceFile], entries: list[FileEntry], reused: set[str]
    ) -> None:
        # A concurrent gc may have deleted a blob this push found and reused; put it back so
        # the committed version is whole (gc only deletes blobs no committed version needs).
        for f, entry in zip(files, entries, strict=True):
            if entry.sha256 not in reused:
                continue
            key = blob_key(name, entry.sha256)
            try:
                self.store.head(key)
            except KeyNotFoundError:
                try:
                    self.store.put_file(key, f.local, mode=CREATE, sha256=entry.sha256)
                except PreconditionFailedError:
                    pass

    def _precheck(
        self,
        name: str,
        card: ModelCard,
        files: list[SourceFile],
        version: str | None,
        bump: str | None,
        allow_schema_change: bool,
    ) -> ModelVersion | None:
        """Refuse a taken version or a schema change before any blob is written.

        The commit checks again (another writer may race us); this pass only makes sure
        that input we can already tell is bad leaves nothing behind.
        """
        existing = self.versions(name)
        if version is not None and version in existing:
            entries = [
                FileEntry(path=f.path, size=f.size, sha256=sha256_file(f.local)) for f in files
            ]
            same = self._identical(name, version, card, entries)
            if same is not None:
                return same
            raise self._exists_error(name, version, existing)
        target = version or bump_version(
            existing[-1] if existing else None, bump or ("minor" if existing else "major")
        )
        self._check_schema(name, target, card, existing, allow_schema_change)
        return None

    def _upload_blobs(
        self, name: str, files: list[SourceFile], progress: Progress | None
    ) -> tuple[list[FileEntry], set[str]]:
        seen_paths = set()
        for f in files:
            if f.path in seen_paths:
                raise SourceError(f"two files map to the same path {f.path!r}")
            seen_paths.add(f.path)

        reused: set[str] = set()

        # A store that can hash a file while it stores it (LocalStore) reads it only once.
        put_content_addressed = getattr(self.store, "put_file_content_addressed", None)

        def one(f: SourceFile) -> FileEntry:
            if put_content_addressed is not None:
                digest, created = put_content_addressed(
                    lambda d: blob_key(name, d), f.local, progress=progress
                )
                if not created:
                    reused.add(digest)
                return FileEntry(path=f.path, size=f.size, sha256=digest)
            digest = sha256_file(f.local)
            key = blob_key(name, digest)
            try:
                self.store.head(key)
                reused.add(digest)
                if progress is not None:
                    progress(f.size)
            except KeyNotFoundError:
                try:
                    self.store.put_file(key, f.local, mode=CREATE, sha256=digest, progress=progress)
                except PreconditionFailedError:
                    pass  # another writer stored the same bytes under the same digest
            return FileEntry(path=f.path, size=f.size, sha256=digest)

        workers = max(1, min(self.max_workers, len(files)))
        if workers == 1:
            return [one(f) for f in files], reused
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, files)), reused

    def _commit(
        self,
        name: str,
        card: ModelCard,
        files: list[FileEntry],
        version: str | None,
        bump: str | None,
        allow_schema_change: bool,
    ) -> ModelVersion:
        for _ in range(_MAX_BUMP_ATTEMPTS):
            existing = self.versions(name)
            if version is not None:
                target = version
            else:
                step = bump or ("minor" if existing else "major")
                target = bump_version(existing[-1] if existing else None, step)
            if target in existing:
                same = self._identical(name, target, card, files)
                if same is not None:
                    return same
                if version is not None:
                    raise self._exists_error(name, target, existing)
                continue  # a bump raced with another writer: take the next number
            self._check_schema(name, target, card, existing, allow_schema_change)
            now = utcnow()
            manifest = ModelVersion(
                name=name,
                version=target,
                card=card.model_copy(
                    update={
                        "name": name,
                        "version": target,
                        "created_at": card.created_at or now,
                        "updated_at": now,
                    }
                ),
                files=sorted(files, key=lambda f: f.path),
                created_at=now,
                created_by=self.user,
                schema_change_allowed=allow_schema_change,
            )
            try:
                self.store.put(version_key_path(name, target), manifest.to_json(), mode=CREATE)
                return manifest
            except PreconditionFailedError:
                if version is None:
                    # A bump asks for a new number: another writer took this one, so take
                    # the next, even when its content equals ours. Only our own earlier
                    # attempt (byte-identical manifest, after an ambiguous retry) counts.
                    if self._read_manifest(name, target).to_json() == manifest.to_json():
                        return manifest
                    continue
                same = self._identical(name, target, card, files)
                if same is not None:
                    return same
                raise self._exists_error(name, target, self.versions(name)) from None
        raise VersionExistsError(
            f"could not allocate a new version of {name!r} after {_MAX_BUMP_ATTEMPTS} attempts; "
            "too many concurrent pushes, try again"
        )

    def _identical(
        self, name: str, version: str, card: ModelCard, files: list[FileEntry]
    ) -> ModelVersion | None:
        existing = self._read_manifest(name, version)
        probe = ModelVersion(
            name=name,
            version=version,
            card=card,
            files=files,
            created_at=existing.created_at,
            created_by=existing.created_by,
        )
        if (
            existing.files_digest() == probe.files_digest()
            and existing.card.content_digest() == card.content_digest()
        ):
            return existing
        return None

    def _exists_error(self, name: str, version: str, existing: list[str]) -> VersionExistsError:
        current = self._read_manifest(name, version)
        highest = existing[-1] if existing else version
        free = ", ".join(bump_version(highest, b) for b in ("patch", "minor", "major"))
        return VersionExistsError(
            f"{name}:{version} already exists with other content, pushed by "
            f"{current.created_by} at {current.created_at.isoformat()}; versions are immutable. "
            f"Next free versions: {free} (or push with --bump)"
        )

    def _check_schema(
        self,
        name: str,
        target: str,
        card: ModelCard,
        existing: list[str],
        allow_schema_change: bool,
    ) -> None:
        below = [v for v in existing if version_key(v) < version_key(target)]
        if not below:
            return
        previous = self._read_manifest(name, below[-1])
        changed = [
            field
            for field in ("input_schema", "output_schema")
            # A card that does not declare a schema makes no claim about it; only a declared
            # schema that differs is a change (a card-less retrain must not need a MAJOR).
            if getattr(card, field) is not None
            and getattr(previous.card, field) != getattr(card, field)
        ]
        if not changed or allow_schema_change:
            return
        if version_key(target)[0] > version_key(previous.version)[0]:
            return
        raise SchemaChangeError(
            f"{name}:{target} changes {' and '.join(changed)} compared with "
            f"{previous.version}; a schema change needs a MAJOR bump "
            f"({bump_version(existing[-1], 'major')}, or --bump major), "
            "or pass allow_schema_change / --allow-schema-change to record an exception"
        )

    # -- downloading -------------------------------------------------------------------

    def fetch(self, ref: str | ModelRef, progress: Progress | None = None) -> ModelVersion:
        """Make sure every blob of a version is in the local cache, verified."""
        manifest = self.get(ref)

        def one(entry: FileEntry) -> None:
            self.cache.fetch(
                self.store,
                blob_key(manifest.name, entry.sha256),
                entry.sha256,
                entry.size,
                progress,
            )

        workers = max(1, min(self.max_workers, len(manifest.files)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, manifest.files))
        return manifest

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
        for entry in manifest.files:
            try:
                check_key(entry.path)
            except InvalidKeyError as exc:
                raise IntegrityError(
                    f"{manifest.ref}: the manifest names the unsafe path {entry.path!r}; "
                    "nothing was written"
                ) from exc
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.pull-"))
        try:

            def one(entry: FileEntry) -> None:
                out = staging / entry.path
                out.parent.mkdir(parents=True, exist_ok=True)
                key = blob_key(manifest.name, entry.sha256)
                self.cache.fetch_into(self.store, key, entry.sha256, entry.size, out, progress)

            workers = max(1, min(self.max_workers, len(manifest.files)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, manifest.files))
            target.mkdir(parents=True, exist_ok=True)
            for entry in manifest.files:
                out = target / entry.path
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staging / entry.path, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest

    def load(self, ref: str | ModelRef) -> tuple[Any, ModelCard]:
        """Load a joblib artifact and its card.

        Raises:
            SourceError: The version holds no single ``.joblib`` / ``.pkl`` file.
            IntegrityError: The blob is corrupt; nothing was unpickled.
        """
        manifest = self.get(ref)
        candidates = [f for f in manifest.files if f.path.endswith((".joblib", ".pkl"))]
        if len(candidates) != 1:
            raise SourceError(
                f"{manifest.ref} holds {len(candidates)} .joblib/.pkl files; load needs exactly "
                "one (use pull to get the files)"
            )
        entry = candidates[0]
        path = self.cache.fetch(
            self.store, blob_key(manifest.name, entry.sha256), entry.sha256, entry.size
        )
        import joblib

        return joblib.load(path), manifest.card

    def verify(self, ref: str | ModelRef, progress: Progress | None = None) -> ModelVersion:
        """Re-download and re-hash every blob of a version, bypassing the cache.

        Raises:
            IntegrityError: Naming the first corrupt or missing blob.
        """
        manifest = self.get(ref)
        with tempfile.TemporaryDirectory(prefix="modelshelf-verify-") as tmp:
            scratch = BlobCache(Path(tmp))
            for entry in manifest.files:
                key = blob_key(manifest.name, entry.sha256)
                try:
                    scratch.fetch(self.store, key, entry.sha256, entry.size, progress)
                except KeyNotFoundError as exc:
                    raise IntegrityError(
                        f"{manifest.ref}: blob for {entry.path!r} ({key}) is missing"
                    ) from exc
                (scratch.path_for(entry.sha256)).unlink()
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
            self, name, keep_last=keep_last, older_than=older_than, orphan_grace=orphan_grace
        )
        if dry_run:
            return plan
        return run_gc(self, plan, orphan_grace=orphan_grace)
