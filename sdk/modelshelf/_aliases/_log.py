"""Aliases (``active``, ``canary``, ``ratio``) with a write-ahead history.

Protocol (docs/design.md, invariant 3). The alias state of a model lives in
``{model}/aliases.json``; each change is first *claimed* as
``{model}/history/{generation:012d}.json`` with create-if-absent, then ``aliases.json`` is
swapped with If-Match. The claim is the commit point: exactly one writer gets generation
N+1, and a writer that finds N+1 claimed but ``aliases.json`` still at N rolls the claimed
record forward before doing anything else (so a writer that died between the two steps
leaves nothing half-done). Hence history has no gaps, record N+1's ``previous`` is record
N's ``state``, and every state a server could ever read from ``aliases.json`` has a record.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .._card import utcnow
from .._errors import (
    AccessDeniedError,
    AliasNotSetError,
    CommitStateUnknownError,
    InvalidAliasesError,
    KeyNotFoundError,
    PreconditionFailedError,
    PromotionConflictError,
    StoreError,
)
from .._refs import check_name, version_sort_key
from .._stores import CREATE, IfMatch, Store
from ..layout import aliases_key, history_key, history_prefix, manifest_key
from ._state import AliasAction, Aliases, HistoryRecord, ServedVersion, parse_aliases

__all__ = [
    "apply_change",
    "iter_history_newest_first",
    "read_aliases",
    "read_history",
    "resolve_alias",
    "rollback_target",
    "served_at",
]

_MAX_ATTEMPTS = 200


def read_aliases(store: Store, name: str) -> tuple[Aliases, str | None]:
    """The current aliases and their etag (``None`` etag when never set)."""
    try:
        obj = store.get(aliases_key(name))
    except KeyNotFoundError:
        return Aliases(), None
    assert obj is not None
    return parse_aliases(obj.data, f"{store.uri}/{aliases_key(name)}"), obj.etag


def _read_record(store: Store, name: str, generation: int) -> HistoryRecord | None:
    try:
        obj = store.get(history_key(name, generation))
    except KeyNotFoundError:
        return None
    assert obj is not None
    return HistoryRecord.model_validate_json(obj.data)


def _swap(store: Store, name: str, state: Aliases, etag: str | None) -> None:
    """Install ``state`` as aliases.json if it still is at ``etag``; losing is fine."""
    try:
        store.put(
            aliases_key(name), state.to_json(), mode=CREATE if etag is None else IfMatch(etag)
        )
    except PreconditionFailedError:
        pass  # someone else moved it forward; the caller re-reads


def apply_change(
    store: Store,
    name: str,
    action: AliasAction,
    change: Callable[[Aliases], dict[str, Any]],
    *,
    user: str,
    reason: str | None,
    allow_major: bool = False,
    expect_generation: int | None = None,
) -> HistoryRecord:
    """Apply one alias change linearizably and return its history record.

    ``change`` gets the current state and returns the fields to update; it may raise
    ``InvalidAliasesError`` to refuse. It may be called again if another writer wins.

    Args:
        store: The registry's store.
        name: The model.
        action: Recorded as the history record's action.
        change: Computes the update from the current state.
        user: Recorded as who made the change.
        reason: Recorded as why.
        allow_major: Let canary and active differ in MAJOR version.
        expect_generation: Apply only if the aliases are still at this generation (what
            the caller looked at); otherwise raise ``PromotionConflictError`` and change
            nothing. Checked on every attempt, so a writer that wins the race in between
            makes this change refuse rather than land on top of it.

    Raises:
        PromotionConflictError: ``expect_generation`` no longer holds.
    """
    check_name(name)
    for _ in range(_MAX_ATTEMPTS):
        current, etag = read_aliases(store, name)
        claimed = _read_record(store, name, current.generation + 1)
        if claimed is not None:
            _swap(store, name, claimed.state, etag)  # roll a half-done change forward
            continue
        if expect_generation is not None and current.generation != expect_generation:
            raise PromotionConflictError(
                f"{name!r} moved to generation {current.generation} (by "
                f"{current.updated_by or 'someone'}) after generation {expect_generation} "
                f"was read; {action} was not applied. Read the aliases again and decide anew"
            )
        updates = change(current)
        now = utcnow()
        try:
            state = Aliases.model_validate(
                {
                    **current.model_dump(),
                    **updates,
                    "generation": current.generation + 1,
                    "salt": current.salt or secrets.token_hex(8),
                    "updated_at": now,
                    "updated_by": user,
                    "reason": reason,
                }
            )
        except ValidationError as exc:
            raise InvalidAliasesError(
                f"refused alias change on {name!r}: {exc.errors()[0]['msg']}"
            ) from exc
        _check_versions(store, name, state, allow_major)
        record = HistoryRecord(
            generation=state.generation,
            action=action,
            previous=current if etag is not None else None,
            state=state,
            who=user,
            when=now,
            reason=reason,
        )
        key = history_key(name, record.generation)
        try:
            store.put(key, record.to_json(), mode=CREATE)
        except PreconditionFailedError:
            continue  # another writer claimed this generation; roll it forward and retry
        except AccessDeniedError:
            raise  # a refusal is definite: nothing was written
        except StoreError as exc:
            # The claim may have landed; only its content tells whether it is ours.
            landed = _read_record(store, name, record.generation)
            if landed is None or landed.txn != record.txn:
                if landed is None:
                    raise CommitStateUnknownError(
                        f"could not tell whether alias change {action} on {name!r} was "
                        f"recorded: {exc}; read the aliases again before retrying"
                    ) from exc
                continue
        _swap(store, name, state, etag)
        return record
    raise CommitStateUnknownError(
        f"alias change on {name!r} kept losing races after {_MAX_ATTEMPTS} attempts"
    )


def _check_versions(store: Store, name: str, state: Aliases, allow_major: bool) -> None:
    for role in ("active", "canary"):
        version = getattr(state, role)
        if version is None:
            continue
        try:
            store.head(manifest_key(name, version))
        except KeyNotFoundError as exc:
            raise InvalidAliasesError(
                f"cannot make {name}:{version} {role}: that version is not committed "
                f"(push it first; 'modelshelf list {name}' shows the versions)"
            ) from exc
    if (
        state.canary
        and state.active
        and not allow_major
        and version_sort_key(state.canary)[0] != version_sort_key(state.active)[0]
    ):
        raise InvalidAliasesError(
            f"canary {state.canary} has another MAJOR version than active {state.active}; "
            "a schema change cannot share traffic safely (pass allow_major=True / "
            "--allow-major if the server handles both)"
        )


def read_history(store: Store, name: str) -> list[HistoryRecord]:
    """Every alias change of ``name``, oldest first."""
    check_name(name)
    prefix = history_prefix(name)
    records = []
    for info in store.list(prefix):
        obj = store.get(info.key)
        assert obj is not None
        records.append(HistoryRecord.model_validate_json(obj.data))
    return sorted(records, key=lambda r: r.generation)


def resolve_alias(store: Store, name: str, alias: str) -> str:
    """The version an alias points at.

    Raises:
        AliasNotSetError: The alias points at nothing.
    """
    state, _ = read_aliases(store, check_name(name))
    version = getattr(state, alias, None)
    if version is None:
        raise AliasNotSetError(
            f"{name}@{alias} is not set in {store.uri} "
            f"({'set it with modelshelf alias set' if alias == 'active' else 'no canary running'})"
        )
    return str(version)


def iter_history_newest_first(store: Store, name: str) -> Iterator[HistoryRecord]:
    """History records newest first, read lazily (rollback rarely looks far back)."""
    keys = [info.key for info in store.list(history_prefix(check_name(name)))]
    for key in reversed(keys):
        obj = store.get(key)
        assert obj is not None
        yield HistoryRecord.model_validate_json(obj.data)


def rollback_target(records_newest_first: Iterable[HistoryRecord], current: Aliases) -> str:
    """The version that was active before the current active one took over.

    Raises:
        InvalidAliasesError: Nothing was active before.
    """
    for record in records_newest_first:
        before = record.previous.active if record.previous else None
        if record.state.active == current.active and before != current.active:
            if before is None:
                break
            return before
    raise InvalidAliasesError(
        f"nothing to roll back to: {current.active} is the first active version"
    )


def served_at(
    records: list[HistoryRecord], when: datetime, grace: timedelta
) -> list[ServedVersion]:
    """Versions that could have served at ``when``.

    A state is live from its record's time until the next record's time plus ``grace``
    (the fleet's poll interval plus load time: a server keeps the old state that long).
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    found: dict[tuple[str, str], ServedVersion] = {}
    for i, record in enumerate(records):
        start = record.when
        end = records[i + 1].when + grace if i + 1 < len(records) else None
        if start <= when and (end is None or when < end):
            state = record.state
            if state.active:
                found.setdefault(
                    (state.active, "active"),
                    ServedVersion(
                        version=state.active,
                        role="active",
                        generation=state.generation,
                        ratio=1.0 - state.ratio,
                    ),
                )
            if state.canary and state.ratio > 0:
                found.setdefault(
                    (state.canary, "canary"),
                    ServedVersion(
                        version=state.canary,
                        role="canary",
                        generation=state.generation,
                        ratio=state.ratio,
                    ),
                )
    return list(found.values())
