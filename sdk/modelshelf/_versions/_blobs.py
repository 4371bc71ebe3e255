"""Whether a version's blobs are all there: for alias changes (invariant 14), list and show."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .._card import FileEntry, ModelVersion
from .._errors import BlobsMissingError, KeyNotFoundError
from .._stores import Store
from ..layout import blob_key, blob_prefix
from ._retention import CondemnationGuard

__all__ = ["BlobCheck", "collected_versions", "missing_blobs"]


def missing_blobs(store: Store, manifest: ModelVersion) -> list[FileEntry]:
    """The files of ``manifest`` whose blobs the store does not hold (one HEAD each)."""
    missing = []
    for entry in manifest.files:
        try:
            store.head(blob_key(manifest.name, entry.sha256))
        except KeyNotFoundError:
            missing.append(entry)
    return missing


def collected_versions(store: Store, name: str, manifests: Iterable[ModelVersion]) -> set[str]:
    """Versions with at least one blob gone, from one listing of the model's blobs."""
    present = {info.key.rsplit("/", 1)[-1] for info in store.list(blob_prefix(name))}
    return {m.version for m in manifests if any(entry.sha256 not in present for entry in m.files)}


class BlobCheck:
    """The check an alias change makes around its claim (docs/design.md, invariant 14).

    Args:
        store: The registry's store.
        name: The model.
        manifests: The versions the change newly names.
        gc_grace: The grace gc runs use (the claim follows the check within half of it).
    """

    def __init__(
        self, store: Store, name: str, manifests: list[ModelVersion], gc_grace: float
    ) -> None:
        self.store = store
        self.manifests = manifests
        self.digests = {entry.sha256 for m in manifests for entry in m.files}
        self.guard = CondemnationGuard(store, name, gc_grace)

    def before_claim(self) -> None:
        """Wait out any gc run that condemned a blob, then HEAD every blob.

        Raises:
            BlobsMissingError: A blob is gone; nothing was written.
        """
        self.guard.before_commit(self.digests, lambda _: self._require(recorded=False))

    def after_claim(self) -> None:
        """After a claim slower than half a grace: check again.

        Raises:
            BlobsMissingError: A gc run deleted a blob meanwhile; the change is recorded.
        """
        self.guard.after_commit(self.digests, lambda _: self._require(recorded=True))

    def _require(self, *, recorded: bool) -> None:
        for manifest in self.manifests:
            missing = missing_blobs(self.store, manifest)
            if missing:
                raise BlobsMissingError(_message(manifest, missing, recorded))


def _message(manifest: ModelVersion, missing: Collection[FileEntry], recorded: bool) -> str:
    files = ", ".join(repr(entry.path) for entry in list(missing)[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    what = (
        "the alias change was recorded while gc deleted them; roll it back "
        f"('modelshelf rollback {manifest.name}' or 'canary abort')"
        if recorded
        else "no alias was changed"
    )
    return (
        f"{manifest.ref} cannot serve: the blobs of {files}{more} are gone (collected by gc); "
        f"{what}. Push the files again as a new version and point the alias at that"
    )
