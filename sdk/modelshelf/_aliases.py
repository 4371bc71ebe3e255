"""Aliases (``active``, ``canary``, ``ratio``) with a write-ahead history.

Protocol (DESIGN.md, invariant 3). The alias state of a model lives in
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
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._card import canonical_json, utcnow
from ._errors import (
    AccessDeniedError,
    AliasNotSetError,
    CommitStateUnknownError,
    InvalidAliasesError,
    InvalidVersionError,
    KeyNotFoundError,
    PreconditionFailedError,
    StoreError,
)
from ._refs import check_name, parse_version, version_key
from ._store import CREATE, IfMatch, Store

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = [
    "AliasAction",
    "Aliases",
    "HistoryRecord",
    "ServedVersion",
    "aliases_key",
    "history_key",
    "parse_aliases",
]

AliasAction = Literal[
    "set_active", "start_canary", "set_ratio", "promote", "abort_canary", "rollback"
]
_MAX_ATTEMPTS = 200


def aliases_key(name: str) -> str:
    """Key of a model's aliases object."""
    return f"{name}/aliases.json"


def history_key(name: str, generation: int) -> str:
    """Key of the history record for one generation."""
    return f"{name}/history/{generation:012d}.json"


class Aliases(BaseModel):
    """The routing state a serving fleet polls.

    ``ratio`` is the canary's share of traffic; ``salt`` keeps key-based routing sticky
    across ratio changes and different between models.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    active: str | None = None
    canary: str | None = None
    ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    generation: int = Field(default=0, ge=0)
    salt: str = ""
    canary_started_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Aliases:
        for field in ("active", "canary"):
            value = getattr(self, field)
            if value is not None:
                try:
                    parse_version(value)
                except InvalidVersionError as exc:
                    raise ValueError(f"{field}: {exc}") from None
        if self.canary is not None and self.active is None:
            raise ValueError("a canary needs an active version")
        if self.canary is not None and self.canary == self.active:
            raise ValueError(f"canary and active are both {self.canary}")
        if self.canary is None and self.ratio != 0.0:
            raise ValueError("ratio must be 0 when there is no canary")
        return self

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys)."""
        return canonical_json(self.model_dump(mode="json"))


def parse_aliases(data: bytes, source: str = "aliases.json") -> Aliases:
    """Validate stored aliases bytes.

    Raises:
        InvalidAliasesError: Corrupt JSON or a state that breaks a rule.
    """
    try:
        return Aliases.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidAliasesError(
            f"invalid aliases object {source}: {exc.errors()[0]['msg']}"
        ) from exc


class HistoryRecord(BaseModel):
    """One alias change: who, when, why, and the state before and after."""

    model_config = ConfigDict(extra="allow", frozen=True)

    generation: int
    action: str
    previous: Aliases | None
    state: Aliases
    who: str
    when: datetime
    reason: str | None = None
    txn: str = Field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys)."""
        return canonical_json(self.model_dump(mode="json"))


class ServedVersion(BaseModel):
    """A version that could have answered a request at some instant."""

    version: str
    role: Literal["active", "canary"]
    generation: int
    ratio: float


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
    registry: Registry,
    name: str,
    action: AliasAction,
    change: Callable[[Aliases], dict[str, Any]],
    *,
    reason: str | None,
    allow_major: bool = False,
) -> HistoryRecord:
    """Apply one alias change linearizably and return its history record.

    ``change`` gets the current state and returns the fields to update; it may raise
    ``InvalidAliasesError`` to refuse. It may be called again if another writer wins.
    """
    check_name(name)
    store = registry.store
    for _ in range(_MAX_ATTEMPTS):
        current, etag = read_aliases(store, name)
        claimed = _read_record(store, name, current.generation + 1)
        if claimed is not None:
            _swap(store, name, claimed.state, etag)  # roll a half-done change forward
            continue
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
                    "updated_by": registry.user,
                    "reason": reason,
                }
            )
        except ValidationError as exc:
            raise InvalidAliasesError(
                f"refused alias change on {name!r}: {exc.errors()[0]['msg']}"
            ) from exc
        _check_versions(registry, name, state, allow_major)
        record = HistoryRecord(
            generation=state.generation,
            action=action,
            previous=current if etag is not None else None,
            state=state,
            who=registry.user,
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


def _check_versions(registry: Registry, name: str, state: Aliases, allow_major: bool) -> None:
    for role in ("active", "canary"):
        version = getattr(state, role)
        if version is None:
            continue
        try:
            registry.store.head(f"{name}/versions/{version}.json")
        except KeyNotFoundError as exc:
            raise InvalidAliasesError(
                f"cannot make {name}:{version} {role}: that version is not committed "
                f"(push it first; 'modelshelf list {name}' shows the versions)"
            ) from exc
    if (
        state.canary
        and state.active
        and not allow_major
        and version_key(state.canary)[0] != version_key(state.active)[0]
    ):
        raise InvalidAliasesError(
            f"canary {state.canary} has another MAJOR version than active {state.active}; "
            "a schema change cannot share traffic safely (pass allow_major=True / "
            "--allow-major if the server handles both)"
        )


def read_history(store: Store, name: str) -> list[HistoryRecord]:
    """Every alias change of ``name``, oldest first."""
    check_name(name)
    prefix = f"{name}/history/"
    records = []
    for info in store.list(prefix):
        obj = store.get(info.key)
        assert obj is not None
        records.append(HistoryRecord.model_validate_json(obj.data))
    return sorted(records, key=lambda r: r.generation)


def resolve_alias(registry: Registry, name: str, alias: str) -> str:
    """The version an alias points at.

    Raises:
        AliasNotSetError: The alias points at nothing.
    """
    state, _ = read_aliases(registry.store, check_name(name))
    version = getattr(state, alias, None)
    if version is None:
        raise AliasNotSetError(
            f"{name}@{alias} is not set in {registry.uri} "
            f"({'set it with modelshelf alias set' if alias == 'active' else 'no canary running'})"
        )
    return str(version)


def iter_history_newest_first(store: Store, name: str) -> Iterator[HistoryRecord]:
    """History records newest first, read lazily (rollback rarely looks far back)."""
    keys = [info.key for info in store.list(f"{check_name(name)}/history/")]
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
