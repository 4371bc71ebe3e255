"""The alias state a serving fleet polls, and the history records of its changes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._card import canonical_json
from .._errors import InvalidAliasesError, InvalidVersionError, validation_message
from .._refs import parse_version

__all__ = [
    "AliasAction",
    "Aliases",
    "HistoryRecord",
    "ServedVersion",
    "SupersededRecord",
    "parse_aliases",
]

AliasAction = Literal[
    "set_active", "start_canary", "set_ratio", "promote", "abort_canary", "rollback"
]


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
    # The back-pointer of rollback (docs/design.md, "Scale: indexes and hints"): the
    # generation whose change made ``active`` what it is. Trusted only when
    # ``active_since_at == generation``: a writer that does not maintain it copies both
    # fields forward unchanged, which this equality exposes.
    active_since: int | None = Field(default=None, ge=1)
    active_since_at: int | None = Field(default=None, ge=1)

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

    def declared(self) -> dict[str, object]:
        """The declared fields only: what a new state is built from (unknown fields of a
        hand-edited object are not carried into every later state)."""
        return self.model_dump(include=set(type(self).model_fields))

    def trusted_active_since(self) -> int | None:
        """``active_since`` when this state's writer maintained it, else ``None``."""
        if self.active_since is None or self.active_since_at != self.generation:
            return None
        return self.active_since if self.active_since <= self.generation else None


def parse_aliases(data: bytes, source: str = "aliases.json") -> Aliases:
    """Validate stored aliases bytes.

    Raises:
        InvalidAliasesError: Corrupt JSON or a state that breaks a rule.
    """
    try:
        return Aliases.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidAliasesError(
            f"invalid aliases object {source}: {validation_message(exc.errors()[0])}"
        ) from exc


class SupersededRecord(BaseModel):
    """A claimed history record that was never installed, and why (docs/design.md,
    invariant 3)."""

    model_config = ConfigDict(frozen=True)

    generation: int
    problem: str


class HistoryRecord(BaseModel):
    """One alias change: who, when, why, and the state before and after.

    ``supersedes`` lists the unsound claimed records this change skipped over.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    generation: int
    action: str
    previous: Aliases | None
    state: Aliases
    who: str
    when: datetime
    reason: str | None = None
    # Structured fields behind the reason (the promoter's numbers): the reason stays a
    # sentence a person reads, these stay data a program reads. Left out when unset.
    details: dict[str, Any] | None = None
    txn: str = Field(default_factory=lambda: uuid.uuid4().hex)
    supersedes: list[SupersededRecord] = Field(default_factory=list)

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys); ``details`` only when set."""
        data = self.model_dump(mode="json")
        if data.get("details") is None:
            data.pop("details", None)
        return canonical_json(data)


class ServedVersion(BaseModel):
    """A version that could have answered a request at some instant."""

    version: str
    role: Literal["active", "canary"]
    generation: int
    ratio: float
