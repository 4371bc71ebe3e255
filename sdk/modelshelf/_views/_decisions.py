"""Past promoter decisions, read back readably from ``{model}/promoter/decisions/``.

The promoter writes one record per decision with every statistic behind it, whole latency
sketches included. This module reads the part a person looks at: what was decided, why, the
headline numbers of both arms and the judge's bounds at that look. It validates that part
and ignores the rest, so a record is readable here as long as those fields keep their
meaning (fields are only ever added). A record that does not parse is reported by key.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import KeyNotFoundError
from .._refs import check_name
from .._stores import Store
from ..layout import decision_prefix

__all__ = ["ArmNumbers", "DecisionView", "JudgeBounds", "decisions_prefix", "read_decisions"]


def decisions_prefix(model: str) -> str:
    """Where a model's decision records live."""
    return decision_prefix(check_name(model))


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ArmNumbers(_Loose):
    """One arm's requests, errors and latency quantiles at a look (cumulative)."""

    requests: int
    errors: int
    error_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class _ErrorTest(_Loose):
    tolerated_rate: float | None = None
    e_value: float | None = None
    alpha: float | None = None
    alarm: bool = False


class JudgeBounds(_Loose):
    """The latency test of one quantile: the canary's lower and active's upper bound."""

    quantile: float
    tolerance: float
    active_upper: float | None = None
    canary_lower: float | None = None
    checked: bool = False
    alarm: bool = False

    @property
    def alarm_line(self) -> float | None:
        """``tolerance x active's upper bound``: the canary's lower bound above it alarms."""
        return None if self.active_upper is None else self.tolerance * self.active_upper


class _Decision(_Loose):
    action: str
    reason: str
    decided_at: datetime
    ratio: float
    next_ratio: float | None = None
    canary_seconds: float | None = None
    step_seconds: float | None = None
    active: ArmNumbers
    canary: ArmNumbers
    errors: _ErrorTest
    latency_p95: JudgeBounds
    latency_p99: JudgeBounds


class DecisionView(_Loose):
    """One decision record, as a person reads it."""

    key: str = ""
    model: str
    generation: int
    active: str
    canary: str
    decision: _Decision
    outcome: str
    alias_action: str | None = None
    new_generation: int | None = None
    conflict: str | None = None
    decided_by: str | None = None
    written_at: datetime | None = None

    @property
    def action(self) -> str:
        """advance, promote, rollback, hold or abort."""
        return self.decision.action

    @property
    def when(self) -> datetime:
        """When the judge looked."""
        return self.decision.decided_at


def _read(store: Store, key: str) -> DecisionView | str | None:
    try:
        obj = store.get(key)
    except KeyNotFoundError:
        return None
    assert obj is not None
    try:
        view = DecisionView.model_validate_json(obj.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return f"{key}: {where}: {first['msg']}"
    return view.model_copy(update={"key": key})


def read_decisions(
    store: Store, model: str, *, last: int | None = None, max_workers: int = 16
) -> tuple[list[DecisionView], list[str]]:
    """The model's decision records, oldest first, and the problems of unreadable ones.

    Args:
        store: The registry's store.
        model: The model.
        last: Only the newest ``last`` records (keys sort by time).
        max_workers: Parallel GETs.
    """
    keys = sorted(info.key for info in store.list(decisions_prefix(model)))
    if last is not None:
        keys = keys[-last:] if last > 0 else []
    workers = max(1, min(max_workers, len(keys)))
    if workers == 1:
        results = [_read(store, key) for key in keys]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="views-get") as pool:
            results = list(pool.map(lambda key: _read(store, key), keys))
    views = [r for r in results if isinstance(r, DecisionView)]
    problems = [r for r in results if isinstance(r, str)]
    views.sort(key=lambda v: (v.when, v.key))
    return views, problems
