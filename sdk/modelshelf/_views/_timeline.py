"""The alias history as a timeline: which version was active / canary when, who and why.

Pure: history records in, events and segments out. Promoter decisions are recognised by
the record's ``details`` (``by``, ``action``, ``decision``, written by the promoter's runner),
or in records written before ``details`` existed by their reason (``promoter ACTION: {json}``),
so the timeline can annotate them without reading the decision records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .._aliases import HistoryRecord

__all__ = ["CanaryRun", "Segment", "Timeline", "TimelineEvent", "build_timeline", "canary_runs"]

_PROMOTER_PREFIX = "promoter "


class TimelineEvent(BaseModel):
    """One history record, flattened for a table row."""

    model_config = ConfigDict(frozen=True)

    generation: int
    when: datetime
    who: str
    action: str
    reason: str | None
    before_active: str | None
    before_canary: str | None
    before_ratio: float | None
    active: str | None
    canary: str | None
    ratio: float
    promoter_action: str | None = None
    decision_key: str | None = None


class Segment(BaseModel):
    """A stretch of time during which one version held one role."""

    model_config = ConfigDict(frozen=True)

    role: Literal["active", "canary"]
    version: str
    start: datetime
    end: datetime | None
    start_generation: int
    who: str
    reason: str | None


class CanaryRun(BaseModel):
    """One canary from its start to its end (or now), with its steps.

    Attributes:
        outcome: ``running``, ``promoted``, ``aborted`` (by a person), ``rolled back``
            (by the promoter's judge), ``abandoned`` (the promoter's time limit) or
            ``replaced`` (another canary or a blue-green flip took its place).
        steps: ``(when, ratio, who)`` for the start and every ratio change.
    """

    model_config = ConfigDict(frozen=True)

    canary: str
    active: str
    started_at: datetime
    ended_at: datetime | None
    start_generation: int
    end_generation: int | None
    outcome: Literal["running", "promoted", "aborted", "rolled back", "abandoned", "replaced"]
    steps: list[tuple[datetime, float, str]]


class Timeline(BaseModel):
    """Every history record as an event, and the segments they imply."""

    model_config = ConfigDict(frozen=True)

    events: list[TimelineEvent]
    segments: list[Segment]
    canaries: list[CanaryRun]


def _promoter_decision(record: HistoryRecord) -> tuple[str | None, str | None]:
    """The promoter's action and decision key behind a history record, if it made it."""
    details = record.details or {}
    if details.get("by") == "modelshelf-promoter":
        action, key = details.get("action"), details.get("decision")
        return (
            action if isinstance(action, str) else None,
            key if isinstance(key, str) else None,
        )
    return _promoter_reason(record.reason)


def _promoter_reason(reason: str | None) -> tuple[str | None, str | None]:
    if not reason or not reason.startswith(_PROMOTER_PREFIX):
        return None, None
    head, sep, body = reason.partition(": ")
    action = head[len(_PROMOTER_PREFIX) :].strip() or None
    key = None
    if sep:
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("decision"), str):
            key = payload["decision"]
    return action, key


def _event(record: HistoryRecord) -> TimelineEvent:
    action, key = _promoter_decision(record)
    before = record.previous
    return TimelineEvent(
        generation=record.generation,
        when=record.when,
        who=record.who,
        action=record.action,
        reason=record.reason,
        before_active=before.active if before else None,
        before_canary=before.canary if before else None,
        before_ratio=before.ratio if before else None,
        active=record.state.active,
        canary=record.state.canary,
        ratio=record.state.ratio,
        promoter_action=action,
        decision_key=key,
    )


def _segments(records: Sequence[HistoryRecord]) -> list[Segment]:
    out: list[Segment] = []
    open_: dict[str, Segment] = {}
    for record in records:
        for role in ("active", "canary"):
            version = getattr(record.state, role)
            current = open_.get(role)
            if current is not None and current.version == version:
                continue
            if current is not None:
                out.append(current.model_copy(update={"end": record.when}))
                del open_[role]
            if version is not None:
                open_[role] = Segment(
                    role=role,
                    version=version,
                    start=record.when,
                    end=None,
                    start_generation=record.generation,
                    who=record.who,
                    reason=record.reason,
                )
    out.extend(open_.values())
    return sorted(out, key=lambda s: (s.start, s.role))


def canary_runs(records: Sequence[HistoryRecord]) -> list[CanaryRun]:
    """Each canary run in the history, oldest first."""
    runs: list[CanaryRun] = []
    current: dict[str, Any] | None = None
    for record in records:
        state = record.state
        same = (
            current is not None
            and state.canary == current["canary"]
            and state.active == current["active"]
            and state.canary_started_at == current["started_key"]
        )
        if current is not None and same:
            if state.ratio != current["steps"][-1][1]:
                current["steps"].append((record.when, state.ratio, record.who))
            continue
        if current is not None:
            promoter_action, _ = _promoter_decision(record)
            if record.action == "promote" and state.active == current["canary"]:
                outcome = "promoted"
            elif promoter_action == "rollback":
                outcome = "rolled back"
            elif promoter_action == "abort":
                outcome = "abandoned"
            elif record.action == "abort_canary":
                outcome = "aborted"
            else:
                outcome = "replaced"
            runs.append(
                CanaryRun(
                    canary=current["canary"],
                    active=current["active"],
                    started_at=current["started_at"],
                    ended_at=record.when,
                    start_generation=current["generation"],
                    end_generation=record.generation,
                    outcome=outcome,  # type: ignore[arg-type]
                    steps=current["steps"],
                )
            )
            current = None
        if state.canary is not None and state.active is not None:
            current = {
                "canary": state.canary,
                "active": state.active,
                "started_key": state.canary_started_at,
                "started_at": state.canary_started_at or record.when,
                "generation": record.generation,
                "steps": [(record.when, state.ratio, record.who)],
            }
    if current is not None:
        runs.append(
            CanaryRun(
                canary=current["canary"],
                active=current["active"],
                started_at=current["started_at"],
                ended_at=None,
                start_generation=current["generation"],
                end_generation=None,
                outcome="running",
                steps=current["steps"],
            )
        )
    return runs


def build_timeline(records: Sequence[HistoryRecord]) -> Timeline:
    """The timeline of a model's alias history (records oldest first)."""
    ordered = sorted(records, key=lambda r: r.generation)
    return Timeline(
        events=[_event(r) for r in ordered],
        segments=_segments(ordered),
        canaries=canary_runs(ordered),
    )
