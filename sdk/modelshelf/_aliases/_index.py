"""The objects behind gc's record of the history: ``{model}/index/ever-aliased.json`` and
``{model}/index/times/{chapter:08d}.json``.

Read by gc (``_ever``), which keeps them, and by ``served_at`` (``_history``), which starts
its search from their record times; neither trusts them beyond what it checks
(docs/design.md, "Scale: indexes and hints").
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from .._card import canonical_json
from .._errors import KeyNotFoundError, StoreError
from .._stores import Store
from ..layout import ever_aliased_key, times_chapter_key

__all__ = [
    "CHAPTER",
    "STRIDE",
    "HistoryIndex",
    "anchor_generations",
    "chapter_body",
    "chapter_of",
    "deltas_of",
    "history_anchors",
    "read_chapter",
    "read_index",
    "to_ms",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# The index keeps every STRIDE-th record's time (and the last one's); a chapter object
# keeps every record's time of CHAPTER records, so a search reads the index, then the
# chapter around its instant, then only the records that hold its answer. One object
# with every time was 75 KB at 10,000 records and cost more to read than it saved
# (docs/design.md, "Scale: indexes and hints").
STRIDE = 64
CHAPTER = 64


def anchor_generations(through: int, stride: int = STRIDE) -> list[int]:
    """The generations whose times the index keeps: 1, 1 + stride, ... and ``through``."""
    generations = list(range(1, through + 1, stride))
    if generations and generations[-1] != through:
        generations.append(through)
    return generations


class HistoryIndex(BaseModel):
    """Versions ever live and the times of some of history records 1..``through``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    through: int
    txn: str
    versions: list[str]
    stride: int
    # Times of anchor_generations(through, stride) in ms since the epoch: the first
    # absolute, then differences.
    times: list[int]
    digest: str

    @staticmethod
    def body_digest(
        through: int, txn: str, versions: list[str], stride: int, times: list[int]
    ) -> str:
        body = canonical_json(
            {
                "through": through,
                "txn": txn,
                "versions": versions,
                "stride": stride,
                "times": times,
            }
        )
        return hashlib.sha256(body).hexdigest()

    def intact(self) -> bool:
        digest = self.body_digest(self.through, self.txn, self.versions, self.stride, self.times)
        return (
            self.digest == digest
            and self.stride >= 1
            and len(self.times) == len(anchor_generations(self.through, self.stride))
        )

    def anchors(self) -> list[tuple[int, int]]:
        """``(generation, ms since the epoch)`` of each kept time, oldest first."""
        return list(
            zip(
                anchor_generations(self.through, self.stride),
                itertools.accumulate(self.times),
                strict=True,
            )
        )


def to_ms(when: datetime) -> int:
    """``when`` in whole milliseconds since the Unix epoch (floored)."""
    return (when - _EPOCH) // _MS


def deltas_of(times: list[int]) -> list[int]:
    """Absolute times as the index stores them: the first, then each difference."""
    return [t - (times[i - 1] if i else 0) for i, t in enumerate(times)]


def read_index(store: Store, name: str) -> tuple[HistoryIndex | None, str | None]:
    """The index when it parses and its digest matches (else ``None``), and its etag
    (``None``: absent), for replacing it."""
    try:
        obj = store.get(ever_aliased_key(name))
    except KeyNotFoundError:
        return None, None
    assert obj is not None
    try:
        index = HistoryIndex.model_validate_json(obj.data)
    except ValidationError:
        return None, obj.etag  # corrupt: rebuilt, and replaced at this etag
    return (index if index.intact() else None), obj.etag


def history_anchors(store: Store, name: str) -> list[tuple[int, int]] | None:
    """``(generation, ms since the epoch)`` of every STRIDE-th record of ``name`` and the
    last, as gc last saw them (``None``: no usable index, or it cannot be read).

    Only a hint: the reader checks it against the records it reads, so this neither
    validates the model nor checks the digest (a search pays for that at 10,000 records);
    it takes the times when they have the shape the generations need.
    """
    try:
        obj = store.get(ever_aliased_key(name))
    except (KeyNotFoundError, StoreError):  # absent or unreadable: search without it
        return None
    assert obj is not None
    try:
        data = json.loads(obj.data)
        through, stride, times = data["through"], data["stride"], data["times"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(through, int) and isinstance(stride, int) and stride >= 1):
        return None
    generations = anchor_generations(through, stride)
    if not isinstance(times, list) or len(times) != len(generations):
        return None
    if not all(type(t) is int for t in times):
        return None
    return list(zip(generations, itertools.accumulate(times), strict=True))


def chapter_of(generation: int) -> int:
    """The chapter holding ``generation``'s time."""
    return (generation - 1) // CHAPTER


def chapter_body(chapter: int, times: list[int]) -> bytes:
    """A chapter object: its first generation and its records' times (ms, as deltas)."""
    return canonical_json({"first": chapter * CHAPTER + 1, "times": deltas_of(times)})


def read_chapter(
    store: Store, name: str, chapter: int
) -> tuple[list[tuple[int, int]] | None, str | None]:
    """``(generation, ms since the epoch)`` of the records a chapter object holds (``None``:
    absent, unreadable or not a chapter of this number) and its etag (``None``: absent).

    Only a hint, read on a search's path: shape checks, no model.
    """
    try:
        obj = store.get(times_chapter_key(name, chapter))
    except (KeyNotFoundError, StoreError):
        return None, None
    assert obj is not None
    first = chapter * CHAPTER + 1
    try:
        data = json.loads(obj.data)
        stored_first, times = data["first"], data["times"]
    except (ValueError, TypeError, KeyError):
        return None, obj.etag
    if stored_first != first or not isinstance(times, list) or not 1 <= len(times) <= CHAPTER:
        return None, obj.etag
    if not all(type(t) is int for t in times):
        return None, obj.etag
    generations = range(first, first + len(times))
    return list(zip(generations, itertools.accumulate(times), strict=True)), obj.etag
