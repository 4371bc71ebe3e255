"""Which blobs a store already holds, from one listing instead of a HEAD per file.

A push of many small files to S3 used to cost a HEAD and a PUT per file. For a push of
:data:`BATCH_FROM` files or more, one listing of the model's blob prefix (started at once,
while the files are hashed) answers the existence checks, within a budget of one page per
:data:`FILES_PER_PAGE` files pushed; a model with more blobs than that falls back to HEADs,
so a small push into a large model never pages through every blob (docs/design.md, "Put
modes", S3).

The listing is a hint: a blob it misses is uploaded with create-if-absent (a 412 there is
harmless), and a blob it shows is reused exactly as one a HEAD found.
"""

from __future__ import annotations

import threading

from .._errors import KeyNotFoundError, ModelshelfError
from .._stores import ObjectInfo, Store
from ..layout import blob_prefix

__all__ = ["BATCH_FROM", "FILES_PER_PAGE", "BlobPresence"]

BATCH_FROM = 16
"""Pushes of at least this many files check existence with one listing."""
FILES_PER_PAGE = 250
"""The listing may take one page (1,000 keys) per this many files pushed."""
_PAGE = 1000


class BlobPresence:
    """Answers "is this blob there?" like ``store.head``, from one listing where it pays.

    Args:
        store: The store the push writes to.
        model: The model whose blobs are checked.
        files: How many files the push holds.
    """

    def __init__(self, store: Store, model: str, files: int) -> None:
        self._store = store
        self._prefix = blob_prefix(model)
        self._listed: dict[str, ObjectInfo] | None = None
        self._thread: threading.Thread | None = None
        if files >= BATCH_FROM:
            budget = max(1, -(-files // FILES_PER_PAGE)) * _PAGE
            self._thread = threading.Thread(
                target=self._list, args=(budget,), name="modelshelf-blob-listing", daemon=True
            )
            self._thread.start()

    def _list(self, budget: int) -> None:
        try:
            found = {info.key: info for info in self._store.list(self._prefix, limit=budget + 1)}
        except ModelshelfError:
            return  # no hint: the HEADs will meet the same problem and report it
        if len(found) <= budget:
            self._listed = found  # complete: every blob of the model is in it

    def head(self, key: str) -> ObjectInfo:
        """Like :meth:`Store.head` for a blob key of this model.

        Raises:
            KeyNotFoundError: The blob is not there (as far as the listing knows).
        """
        if self._thread is not None:
            self._thread.join()
        listed = self._listed
        if listed is None or not key.startswith(self._prefix):
            return self._store.head(key)
        info = listed.get(key)
        if info is None:
            raise KeyNotFoundError(f"no blob {key!r} in {self._store.uri} (listing)")
        return info
