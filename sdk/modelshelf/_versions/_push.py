"""The push workflow: blobs first, the manifest last, with create-if-absent.

A version is visible whole or not at all (docs/design.md, invariant 1): every blob is
written before the manifest that names it, and the manifest is committed with
create-if-absent, so exactly one writer gets each version number. Before the commit the
push checks that no gc run has condemned a blob it needs (invariant 13), and a blob the
store already held is verified, and replaced when it is bad, before it is reused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from .._card import FileEntry, ModelCard, ModelVersion, card_from_input, utcnow
from .._errors import (
    CorruptObjectError,
    IntegrityError,
    InvalidCardError,
    InvalidVersionError,
    KeyNotFoundError,
    PreconditionFailedError,
    SchemaChangeError,
    SourceError,
    VersionExistsError,
)
from .._hashing import sha256_file
from .._refs import bump_version, check_name, parse_version, version_sort_key
from .._stores import (
    CREATE,
    IfMatch,
    ObjectInfo,
    Store,
    SupportsContentAddressedPut,
    SupportsUploadDigest,
)
from ..layout import blob_key, manifest_key
from ._head import Head, claim_head, manifest_exists, read_head
from ._manifests import SKIPPED, list_versions, read_manifest
from ._pool import map_files
from ._presence import BlobPresence
from ._retention import CondemnationGuard
from ._sources import SourceFile, check_unchanged, collect_source

__all__ = ["Pusher"]

Progress = Callable[[int], None]
_MAX_BUMP_ATTEMPTS = 64
_MAX_REPLACE_ATTEMPTS = 3
logger = logging.getLogger("modelshelf")


def _reconcile_card(
    name: str, card: ModelCard, version: str | None, bump: str | None
) -> str | None:
    """The explicit version of this push, after checking the card's ``name`` and ``version``.

    The registry fills both in, so a card may leave them out. A card that states them must
    agree with the push; each disagreement says which field to drop or which argument
    matches, all of them in one error.
    """
    problems = []
    if card.name is not None and card.name != name:
        problems.append(
            f'the card\'s "name" is {card.name!r} but the push is for {name!r}: drop '
            f'"name" from the card (the registry fills it in), or push as {card.name!r}'
        )
    if card.version is not None:
        try:
            parse_version(card.version)
        except InvalidVersionError as exc:
            raise InvalidCardError(f"invalid model card: version: {exc}") from exc
        if bump is not None:
            problems.append(
                f'the card\'s "version" is {card.version} but the push asks for a {bump} '
                f'bump: drop "version" from the card to bump, or push with '
                f"version={card.version!r} / --version {card.version} instead of the bump"
            )
        elif version is not None and version != card.version:
            problems.append(
                f'the card\'s "version" is {card.version} but the push asks for {version}: '
                f'drop "version" from the card (the registry fills it in), or push with '
                f"version={card.version!r} / --version {card.version}"
            )
    if problems:
        raise InvalidCardError("; ".join(problems))
    # A card that states its version asks for exactly that version (README, "push").
    return version if version is not None or bump is not None else card.version


class Pusher:
    """Pushes new versions into one store on behalf of one user.

    Args:
        store: Where the versions go.
        user: Recorded as the manifest's ``created_by``.
        max_workers: Parallel blob uploads.
        gc_grace: The grace gc runs use; the manifest is committed within half of it after
            checking for condemnations (docs/design.md, "Retention").
    """

    def __init__(
        self, store: Store, *, user: str, max_workers: int = 8, gc_grace: float = 60.0
    ) -> None:
        self.store = store
        self.user = user
        self.max_workers = max_workers
        self.gc_grace = gc_grace

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
        """Push a new immutable version; the arguments are documented on ``Registry.push``.

        Raises:
            VersionExistsError: ``version`` is taken by different content.
            SchemaChangeError: The card's schema changed without a MAJOR bump.
        """
        check_name(name)
        the_card = card_from_input(card)
        if version is not None and bump is not None:
            raise InvalidVersionError("give either an explicit version or a bump, not both")
        version = _reconcile_card(name, the_card, version, bump)
        if version is not None:
            parse_version(version)
        if bump is not None:
            bump_version("0.0.0", bump)  # validates the bump word before any work

        with tempfile.TemporaryDirectory(prefix="modelshelf-push-") as workdir:
            files = collect_source(source, Path(workdir))
            existing, head = self._precheck(
                name, the_card, files, version, bump, allow_schema_change
            )
            if existing is not None:
                return existing
            entries, repaired = self._upload_blobs(name, files, progress)
            check_unchanged(files)  # a file written to meanwhile never becomes a version
            local = {entry.sha256: f.local for f, entry in zip(files, entries, strict=True)}

            def put_back(digests: Collection[str]) -> None:
                self._put_back(name, local, digests)

            # Invariant 13: commit only blobs no gc run in progress has condemned and that
            # are there after looking (the upload's checks came before it), within half a
            # grace of looking; a slower commit looks again and puts back.
            guard = CondemnationGuard(self.store, name, self.gc_grace)
            guard.before_commit(set(local), put_back)
            manifest = self._commit(
                name, the_card, entries, version, bump, allow_schema_change, head
            )
            guard.after_commit(set(local), put_back)
            if repaired:
                logger.warning(
                    "%s: replaced %d stored blob(s) whose bytes did not match their digest: %s",
                    manifest.ref,
                    len(repaired),
                    ", ".join(sorted(repaired)),
                )
            return manifest.model_copy(update={"repaired_blobs": sorted(repaired)})

    def _put_back(self, name: str, local: dict[str, Path], digests: Collection[str]) -> None:
        """Upload again every blob of ``digests`` that is gone (a gc run deleted it)."""
        presence = BlobPresence(self.store, name, len(digests))  # many files: one listing
        for digest in digests:
            key = blob_key(name, digest)
            try:
                presence.head(key)
            except KeyNotFoundError:
                try:
                    self.store.put_file(key, local[digest], mode=CREATE, sha256=digest)
                except PreconditionFailedError:
                    pass  # another writer put the same bytes back

    def _precheck(
        self,
        name: str,
        card: ModelCard,
        files: list[SourceFile],
        version: str | None,
        bump: str | None,
        allow_schema_change: bool,
    ) -> tuple[ModelVersion | None, Head]:
        """Refuse a taken version or a schema change before any blob is written.

        The commit checks again (another writer may race us); this pass only makes sure
        that input we can already tell is bad leaves nothing behind. It reads the version
        head (docs/design.md, "Scale: indexes and hints"), not the list of versions.
        """
        head = read_head(self.store, name)
        if version is not None and manifest_exists(self.store, name, version):
            entries = [
                FileEntry(path=f.path, size=f.size, sha256=sha256_file(f.local)) for f in files
            ]
            same = self._identical(name, version, card, entries)
            if same is not None:
                return same, head
            raise self._exists_error(name, version, head.latest)
        target = version or bump_version(head.latest, bump or ("minor" if head.latest else "major"))
        self._check_schema(name, target, card, head, allow_schema_change)
        return None, head

    def _upload_blobs(
        self, name: str, files: list[SourceFile], progress: Progress | None
    ) -> tuple[list[FileEntry], set[str]]:
        """Store every blob (or verify the stored one); returns the entries and the digests
        of stored blobs that were bad and replaced."""
        seen_paths = set()
        for f in files:
            if f.path in seen_paths:
                raise SourceError(f"two files map to the same path {f.path!r}")
            seen_paths.add(f.path)

        repaired: set[str] = set()

        # A store that can hash a file while it stores it (LocalStore) reads it only once.
        store = self.store
        batched = 0 if isinstance(store, SupportsContentAddressedPut) else len(files)
        presence = BlobPresence(store, name, batched)  # one listing, not a HEAD per file

        def one(f: SourceFile) -> FileEntry:
            if isinstance(store, SupportsContentAddressedPut):
                digest, outcome = store.put_file_content_addressed(
                    lambda d: blob_key(name, d), f.local, progress=progress
                )
                if outcome == "replaced":
                    repaired.add(digest)
                return FileEntry(path=f.path, size=f.size, sha256=digest)
            # A store that needs more than the digest for the upload (S3: each part's sha256)
            # takes it from the same read.
            if isinstance(store, SupportsUploadDigest):
                digest = store.digest_for_upload(f.local)
            else:
                digest = sha256_file(f.local)
            if self._store_verified(blob_key(name, digest), f, digest, progress, presence):
                repaired.add(digest)
            return FileEntry(path=f.path, size=f.size, sha256=digest)

        return map_files(one, files, lambda f: f.size, self.max_workers), repaired

    def _store_verified(
        self,
        key: str,
        f: SourceFile,
        digest: str,
        progress: Progress | None,
        presence: BlobPresence,
    ) -> bool:
        """Make ``key`` hold ``f``'s bytes; returns whether a bad stored object was replaced.

        A stored object is reused only when the digest the store vouches for (its HEAD: a
        listing says nothing about content) equals the key (invariant 1); otherwise it is
        replaced by our bytes, which hash to the key, with If-Match on the bad object so a
        concurrent repair is not undone.
        """
        replaced = False
        try:
            presence.head(key)  # absent per the listing: upload without a HEAD
        except KeyNotFoundError:
            try:
                self.store.put_file(key, f.local, mode=CREATE, sha256=digest, progress=progress)
                return False
            except PreconditionFailedError:
                pass  # another writer stored it first: verify theirs
        for _ in range(_MAX_REPLACE_ATTEMPTS):
            try:
                info = self.store.head(key)
            except KeyNotFoundError:
                try:
                    self.store.put_file(key, f.local, mode=CREATE, sha256=digest, progress=progress)
                    return replaced
                except PreconditionFailedError:
                    continue  # another writer stored it first: verify theirs
            if _vouched(info) == digest and info.size == f.size:
                if progress is not None and not replaced:
                    progress(f.size)
                return replaced
            try:
                self.store.put_file(
                    key, f.local, mode=IfMatch(info.etag), sha256=digest, progress=progress
                )
                replaced = True
            except PreconditionFailedError:
                continue  # it changed meanwhile: look again
        raise IntegrityError(
            f"{key!r} in {self.store.uri} kept changing while this push tried to store a "
            f"verified copy ({_MAX_REPLACE_ATTEMPTS} attempts); nothing was committed, try again"
        )

    def _commit(
        self,
        name: str,
        card: ModelCard,
        files: list[FileEntry],
        version: str | None,
        bump: str | None,
        allow_schema_change: bool,
        head: Head,
    ) -> ModelVersion:
        for attempt in range(_MAX_BUMP_ATTEMPTS):
            if attempt:
                head = read_head(self.store, name)
            if version is not None:
                target = version
            else:
                step = bump or ("minor" if head.latest else "major")
                target = bump_version(head.latest, step)
            self._check_schema(name, target, card, head, allow_schema_change)
            if not claim_head(self.store, name, head, target):
                continue  # another pusher raised the head first: read it again
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
                self.store.put(manifest_key(name, target), manifest.to_json(), mode=CREATE)
                return manifest
            except PreconditionFailedError:
                if version is None:
                    # A bump asks for a new number: another writer took this one, so take
                    # the next, even when its content equals ours. Only our own earlier
                    # attempt (byte-identical manifest, after an ambiguous retry) counts.
                    if self._stored_bytes(name, target) == manifest.to_json():
                        return manifest
                    continue
                same = self._identical(name, target, card, files)
                if same is not None:
                    return same
                raise self._exists_error(name, target, read_head(self.store, name).latest) from None
        raise VersionExistsError(
            f"could not allocate a new version of {name!r} after {_MAX_BUMP_ATTEMPTS} attempts; "
            "too many concurrent pushes, try again"
        )

    def _stored_bytes(self, name: str, version: str) -> bytes | None:
        try:
            obj = self.store.get(manifest_key(name, version))
        except KeyNotFoundError:
            return None
        return None if obj is None else obj.data

    def _identical(
        self, name: str, version: str, card: ModelCard, files: list[FileEntry]
    ) -> ModelVersion | None:
        try:
            existing = read_manifest(self.store, name, version)
        except CorruptObjectError:
            return None  # a corrupt manifest holds nothing we could be identical to
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

    def _exists_error(self, name: str, version: str, latest: str | None) -> VersionExistsError:
        try:
            current = read_manifest(self.store, name, version)
            by = f"pushed by {current.created_by} at {current.created_at.isoformat()}"
        except CorruptObjectError:
            by = "and its manifest is corrupt"
        highest = latest or version
        free = ", ".join(_free_bumps(highest))
        return VersionExistsError(
            f"{name}:{version} already exists with other content, {by}; versions are "
            f"immutable. Next free versions: {free} (or push with --bump)"
        )

    def _check_schema(
        self,
        name: str,
        target: str,
        card: ModelCard,
        head: Head,
        allow_schema_change: bool,
    ) -> None:
        declared = [f for f in ("input_schema", "output_schema") if getattr(card, f) is not None]
        if head.latest is None or not declared or allow_schema_change:
            return
        major = version_sort_key(target)[0]
        # A card that declares no schema makes no claim about it (README, "Schema rule"): a
        # declared schema is compared with the nearest lower version of the same MAJOR that
        # declared one, so a first declaration is no change. Another MAJOR may change it.
        changed: list[tuple[str, str]] = []
        pending = set(declared)
        checked: set[str] = set()

        def compare(version: str, previous: ModelCard) -> None:
            checked.add(version)
            for field in sorted(pending):
                if getattr(previous, field) is None:
                    continue
                pending.discard(field)
                if getattr(previous, field) != getattr(card, field):
                    changed.append((field, version))

        walk = True
        if version_sort_key(target) > version_sort_key(head.latest) and head.manifest:
            # The usual case: the head is the predecessor, and it declares the schemas, so
            # no listing is needed.
            if version_sort_key(head.latest)[0] != major:
                walk = False
            else:
                compare(head.latest, head.manifest.card)
                walk = bool(pending)
        below: list[str] = []
        if walk:
            # A backport, a corrupt newest manifest, or schemas the head does not declare.
            below = [
                v
                for v in list_versions(self.store, name)
                if version_sort_key(v) < version_sort_key(target) and v not in checked
            ]
        for older in reversed(below):
            if not pending or version_sort_key(older)[0] != major:
                break
            try:
                previous = read_manifest(self.store, name, older).card
            except CorruptObjectError as exc:
                # Compare with the versions that can be read, and say so.
                SKIPPED.warning("skipped %s:%s for the schema check: %s", name, older, exc)
                continue
            compare(older, previous)
        if not changed:
            return
        what = " and ".join(f"{field} (declared otherwise in {older})" for field, older in changed)
        raise SchemaChangeError(
            f"{name}:{target} changes {what}; a schema change needs a MAJOR bump "
            f"({bump_version(head.latest, 'major')}, or --bump major), "
            "or pass allow_schema_change / --allow-schema-change to record an exception"
        )


def _free_bumps(highest: str) -> list[str]:
    free = []
    for bump in ("patch", "minor", "major"):
        try:
            free.append(bump_version(highest, bump))
        except InvalidVersionError:
            continue  # that part is at the grammar's end
    return free or ["none above " + highest]


def _vouched(info: ObjectInfo) -> str | None:
    """The digest a store vouches for: its own checksum when it has one, else the metadata."""
    return info.checksum_sha256 or info.sha256
