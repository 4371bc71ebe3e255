"""gc's record of every version ever ``active`` or ``canary``, kept up to date incrementally.

``{model}/index/ever-aliased.json`` holds the versions seen in history records 1..``through``,
the ``txn`` of record ``through`` and the sha256 of its own content. It is a hint
(docs/design.md, "Scale: indexes and hints"): trusted only when its digest matches, record
``through`` exists with that ``txn`` and ``through`` is not above the newest generation; then
only the records after ``through`` are read. Anything else rebuilds it from every record.
Writing it back is best effort: a lost race or a refused write leaves the next run to do it.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, ValidationError

from .._card import canonical_json
from .._errors import KeyNotFoundError, PreconditionFailedError, StoreError
from .._refs import check_name
from .._stores import CREATE, IfMatch, Store
from ..layout import ever_aliased_key
from ._history import newest_generation, read_record, read_records
from ._log import read_aliases
from ._state import Aliases

__all__ = ["ever_aliased"]


class _Index(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    through: int
    txn: str
    versions: list[str]
    digest: str

    @staticmethod
    def body_digest(through: int, txn: str, versions: list[str]) -> str:
        body = canonical_json({"through": through, "txn": txn, "versions": versions})
        return hashlib.sha256(body).hexdigest()

    def intact(self) -> bool:
        return self.digest == self.body_digest(self.through, self.txn, self.versions)


def _roles(state: Aliases) -> set[str]:
    return {v for v in (state.active, state.canary) if v}


def _read_index(store: Store, name: str) -> tuple[_Index | None, str | None]:
    try:
        obj = store.get(ever_aliased_key(name))
    except KeyNotFoundError:
        return None, None
    assert obj is not None
    try:
        index = _Index.model_validate_json(obj.data)
    except ValidationError:
        return None, obj.etag  # corrupt: rebuilt, and replaced at this etag
    return (index if index.intact() else None), obj.etag


def ever_aliased(store: Store, name: str) -> set[str]:
    """Every version that was ever ``active`` or ``canary`` of ``name``.

    Raises:
        InvalidAliasesError: ``aliases.json`` or a history record is corrupt.
    """
    check_name(name)
    current, _ = read_aliases(store, name)
    newest = newest_generation(store, name, installed=current.generation)
    index, etag = _read_index(store, name)
    found: set[str] = set()
    start = 1
    trusted = False
    if index is not None and 1 <= index.through <= newest:
        anchor = read_record(store, name, index.through)
        if anchor is not None and anchor.txn == index.txn:
            found = set(index.versions)
            start = index.through + 1
            trusted = True
    records = read_records(store, name, range(start, newest + 1))
    for record in records.values():
        # previous too: a record that cannot be read still has its state in the next
        # record's previous (docs/design.md, invariant 3).
        found |= _roles(record.state)
        if record.previous is not None:
            found |= _roles(record.previous)
    stale = not trusted or index is None or newest != index.through
    if stale and newest in records:
        versions = sorted(found)
        txn = records[newest].txn
        fresh = _Index(
            through=newest,
            txn=txn,
            versions=versions,
            digest=_Index.body_digest(newest, txn, versions),
        )
        try:
            store.put(
                ever_aliased_key(name),
                canonical_json(fresh.model_dump(mode="json")),
                mode=CREATE if etag is None else IfMatch(etag),
            )
        except (PreconditionFailedError, StoreError):
            pass  # only a hint: another run wrote one, or this role may not write index/
    return found | _roles(current)
