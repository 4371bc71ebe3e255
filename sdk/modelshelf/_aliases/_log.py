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

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .._card import utcnow
from .._errors import (
    AccessDeniedError,
    AliasNotSetError,
    CommitStateUnknownError,
    CorruptObjectError,
    InvalidAliasesError,
    KeyNotFoundError,
    NotFoundError,
    PreconditionFailedError,
    PromotionConflictError,
    StoreError,
    validation_message,
)
from .._refs import check_name, version_sort_key
from .._stores import CREATE, IfMatch, Store
from .._versions import BlobCheck, read_manifest
from ..layout import aliases_key, history_key, history_prefix, manifest_key
from ._history import read_record
from ._state import AliasAction, Aliases, HistoryRecord, SupersededRecord, parse_aliases

__all__ = ["apply_change", "next_state", "read_aliases", "resolve_alias"]

_MAX_ATTEMPTS = 200
_MAX_SUPERSEDED = 64
# Where a change says which unsound claimed records it superseded (the CLI prints it).
_SKIPPED = logging.getLogger("modelshelf.skipped")


def read_aliases(store: Store, name: str) -> tuple[Aliases, str | None]:
    """The current aliases and their etag (``None`` etag when never set)."""
    try:
        obj = store.get(aliases_key(name))
    except KeyNotFoundError:
        return Aliases(), None
    assert obj is not None
    return parse_aliases(obj.data, f"{store.uri}/{aliases_key(name)}"), obj.etag


def _claim(
    store: Store, name: str, generation: int, current: Aliases, skipped: list[SupersededRecord]
) -> tuple[HistoryRecord | None, str | None]:
    """Read the claimed record at ``generation`` (invariant 3, step 1).

    Returns ``(record, None)`` when it is sound and may be installed, ``(None, problem)``
    when it must be superseded, ``(None, None)`` when there is none.
    """
    try:
        record = read_record(store, name, generation)
    except CorruptObjectError as exc:
        return None, str(exc)
    if record is None:
        return None, None
    if record.previous is not None and record.previous.generation != current.generation:
        return None, (
            f"its previous state is generation {record.previous.generation}, "
            f"the installed one {current.generation}"
        )
    if [s.generation for s in record.supersedes] != [s.generation for s in skipped]:
        return None, "it supersedes other records than the unsound ones before it"
    for role in ("active", "canary"):
        version = getattr(record.state, role)
        if version is None:
            continue
        try:
            store.head(manifest_key(name, version))
        except KeyNotFoundError:
            return None, f"it makes {name}:{version} {role}, which is not committed"
    return record, None


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
    details: Mapping[str, Any] | None = None,
    allow_major: bool = False,
    expect_generation: int | None = None,
    gc_grace: float = 60.0,
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
        reason: Recorded as why (a sentence; also kept in ``aliases.json``).
        details: Structured fields behind the reason, kept in the history record only.
        allow_major: Let canary and active differ in MAJOR version.
        expect_generation: Apply only if the aliases are still at this generation (what
            the caller looked at); otherwise raise ``PromotionConflictError`` and change
            nothing. Checked on every attempt, so a writer that wins the race in between
            makes this change refuse rather than land on top of it.
        gc_grace: The grace gc runs use; the claim follows the blob check within half of
            it (invariant 14).

    Raises:
        PromotionConflictError: ``expect_generation`` no longer holds.
        BlobsMissingError: A version the change newly names has blobs gc collected.
    """
    check_name(name)
    for _ in range(_MAX_ATTEMPTS):
        current, etag = read_aliases(store, name)
        # Roll a sound claimed record forward; supersede unsound ones (invariant 3, step 1).
        skipped: list[SupersededRecord] = []
        target = current.generation + 1
        while True:
            claimed, problem = _claim(store, name, target, current, skipped)
            if problem is None:
                break
            skipped.append(SupersededRecord(generation=target, problem=problem))
            if len(skipped) > _MAX_SUPERSEDED:
                raise CorruptObjectError(
                    f"{name!r} has more than {_MAX_SUPERSEDED} unsound history records after "
                    f"generation {current.generation} ({problem}); someone is writing under "
                    f"{history_prefix(name)}: find out who before changing the aliases"
                )
            target += 1
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
        state = next_state(
            name, current, updates, user=user, reason=reason, now=now, generation=target
        )
        blobs = _check_versions(store, name, state, current, allow_major, gc_grace)
        blobs.before_claim()
        record = HistoryRecord(
            generation=state.generation,
            action=action,
            previous=current if etag is not None else None,
            state=state,
            who=user,
            when=now,
            reason=reason,
            supersedes=skipped,
            details=dict(details) if details is not None else None,
        )
        for superseded in skipped:
            _SKIPPED.warning(
                "superseded the unsound history record %s of %s: %s",
                superseded.generation,
                name,
                superseded.problem,
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
            try:
                landed = read_record(store, name, record.generation)
            except CorruptObjectError:
                continue  # not ours; the next attempt supersedes it
            if landed is None or landed.txn != record.txn:
                if landed is None:
                    raise CommitStateUnknownError(
                        f"could not tell whether alias change {action} on {name!r} was "
                        f"recorded: {exc}; read the aliases again before retrying"
                    ) from exc
                continue
        _swap(store, name, state, etag)
        blobs.after_claim()
        return record
    raise CommitStateUnknownError(
        f"alias change on {name!r} kept losing races after {_MAX_ATTEMPTS} attempts"
    )


def next_state(
    name: str,
    current: Aliases,
    updates: dict[str, Any],
    *,
    user: str,
    reason: str | None,
    now: datetime,
    generation: int | None = None,
) -> Aliases:
    """The state generation N+1 installs: ``current`` with ``updates``, stamped.

    Built from ``current``'s declared fields only (unknown fields of a hand-edited
    aliases object are not carried forward). ``generation`` is N+1 unless the change
    superseded unsound claimed records (invariant 3).

    Pure, so that tools building a history (the scale benchmark) write exactly the states
    this log writes. Maintains the rollback back-pointer ``active_since``
    (docs/design.md, "Scale: indexes and hints"): the new generation when ``active``
    changes, else the trusted pointer carried forward, else none (a walk finds it).

    Raises:
        InvalidAliasesError: The new state breaks a rule.
    """
    generation = current.generation + 1 if generation is None else generation
    try:
        state = Aliases.model_validate(
            {
                **current.declared(),
                **updates,
                "generation": generation,
                "salt": current.salt or secrets.token_hex(8),
                "updated_at": now,
                "updated_by": user,
                "reason": reason,
            }
        )
    except ValidationError as exc:
        raise InvalidAliasesError(
            f"refused alias change on {name!r}: {validation_message(exc.errors()[0])}"
        ) from exc
    if state.active is None:
        since = None
    elif state.active != current.active:
        since = generation
    else:
        since = current.trusted_active_since()
    return state.model_copy(
        update={"active_since": since, "active_since_at": generation if since else None}
    )


def _check_versions(
    store: Store, name: str, state: Aliases, current: Aliases, allow_major: bool, grace: float
) -> BlobCheck:
    """Refuse versions that are not committed; return the blob check of the versions the
    change newly names (a new active; the canary, whenever there is one; invariant 14)."""
    manifests = []
    for role in ("active", "canary"):
        version = getattr(state, role)
        if version is None:
            continue
        try:
            manifest = read_manifest(store, name, version)
        except NotFoundError as exc:
            raise InvalidAliasesError(
                f"cannot make {name}:{version} {role}: that version is not committed "
                f"(push it first; 'modelshelf list {name}' shows the versions)"
            ) from exc
        if role == "canary" or version != current.active:
            manifests.append(manifest)
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
    return BlobCheck(store, name, manifests, grace)


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
