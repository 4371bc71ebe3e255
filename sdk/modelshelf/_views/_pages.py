"""What the report and the UI show of one model, read from a registry, and the templates.

:func:`collect_model` reads everything a page of one model needs (manifests, aliases,
history, decision records, canary metrics) once; :func:`environment` is the Jinja2
environment both the report and the UI render with (autoescaped: user data is shown
literally, never as markup).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .._aliases import Aliases, HistoryRecord
from .._card import ModelVersion, utcnow
from .._errors import ConfigurationError, ModelNotFoundError
from .._versions import Comparison, compare_versions
from ._canary import CanarySeries, read_canary_series
from ._decisions import DecisionView, read_decisions
from ._timeline import Timeline, build_timeline

if TYPE_CHECKING:
    import jinja2

    from .._registry import Registry

__all__ = [
    "ModelPage",
    "collect_model",
    "compare_with_roles",
    "environment",
    "format_value",
    "select_versions",
]


class ModelPage(BaseModel):
    """Everything the report (and the UI's model pages) shows of one model."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model: str
    registry: str
    generated_at: datetime
    aliases: Aliases
    manifests: list[ModelVersion]
    all_versions: list[str]
    comparison: Comparison
    timeline: Timeline
    decisions: list[DecisionView]
    decision_problems: list[str]
    canaries: list[CanarySeries]


def select_versions(
    available: Sequence[str], versions: Sequence[str] | None = None, last: int | None = None
) -> list[str]:
    """The versions to compare: those named (in semver order), the last N, or all.

    Raises:
        VersionNotFoundError: A named version is not committed (via the caller's ``get``).
    """
    if versions:
        wanted = list(dict.fromkeys(versions))
        order = {v: i for i, v in enumerate(available)}
        return sorted(wanted, key=lambda v: order.get(v, len(order)))
    chosen = list(available)
    if last is not None:
        chosen = chosen[-last:] if last > 0 else []
    return chosen


def read_manifests(registry: Registry, name: str, versions: Sequence[str]) -> list[ModelVersion]:
    """Manifests of several versions, read in parallel, in the order given."""
    if len(versions) <= 1:
        return [registry.get(f"{name}:{v}") for v in versions]
    with ThreadPoolExecutor(max_workers=min(16, len(versions))) as pool:
        return list(pool.map(lambda v: registry.get(f"{name}:{v}"), versions))


def collect_model(
    registry: Registry,
    name: str,
    *,
    versions: Sequence[str] | None = None,
    last: int | None = None,
    now: datetime | None = None,
    canaries: int | None = None,
) -> ModelPage:
    """Read what a page of ``name`` shows.

    Args:
        registry: The registry.
        name: The model.
        versions: Compare only these versions.
        last: Compare only the newest ``last`` versions.
        now: The end of a canary still running (default: the clock).
        canaries: Read metrics of only the newest ``canaries`` canary runs (default all).

    Raises:
        ModelNotFoundError: The model has no versions.
    """
    now = now or utcnow()
    available = registry.versions(name)
    if not available:
        raise ModelNotFoundError(f"model {name!r} has no versions in {registry.uri}")
    chosen = select_versions(available, versions, last)
    manifests = read_manifests(registry, name, chosen)
    history = registry.history(name)
    aliases = registry.aliases(name)
    timeline = build_timeline(history)
    decisions, problems = read_decisions(registry.store, name)
    runs = timeline.canaries if canaries is None else timeline.canaries[-canaries:]
    series = [read_canary_series(registry.store, name, run, now=now) for run in reversed(runs)]
    return ModelPage(
        model=name,
        registry=registry.uri,
        generated_at=now,
        aliases=aliases,
        manifests=manifests,
        all_versions=available,
        comparison=compare_with_roles(manifests, history, aliases) if manifests else _empty(name),
        timeline=timeline,
        decisions=decisions,
        decision_problems=problems,
        canaries=series,
    )


def compare_with_roles(
    manifests: Sequence[ModelVersion], history: Sequence[HistoryRecord], aliases: Aliases
) -> Comparison:
    """:func:`compare_versions` with the alias roles taken from the history."""
    return compare_versions(
        manifests,
        ever_active={r.state.active for r in history if r.state.active},
        ever_canary={r.state.canary for r in history if r.state.canary},
        now={"active": aliases.active, "canary": aliases.canary},
    )


def _empty(name: str) -> Comparison:
    return Comparison(model=name, versions=[], rows=[])


def format_value(value: Any) -> str:
    """A cell's value as text: numbers to 4 significant digits, JSON for lists and maps."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def format_brief(value: Any, items: int = 8) -> str:
    """:func:`format_value`, with a long list cut to its first items and its length."""
    if isinstance(value, list) and len(value) > items:
        head = json.dumps(value[:items], sort_keys=True, ensure_ascii=False)[:-1]
        return f"{head}, … ({len(value)} items)]"
    return format_value(value)


def format_delta(delta: float | None) -> str:
    """``+0.01`` / ``-3``; empty for no change or no number."""
    if delta is None or delta == 0:
        return ""
    return f"{delta:+.3g}"


def format_time(when: datetime | None) -> str:
    """UTC to the second."""
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def format_size(size: int) -> str:
    """Bytes in binary units."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def format_percent(rate: float | None) -> str:
    """An error rate as a percentage."""
    return "—" if rate is None else f"{rate:.2%}"


def short_reason(reason: str | None) -> str:
    """A promoter's reason (``promoter ACTION: {json}``) as its one-line "why"; others as is."""
    if not reason:
        return ""
    if reason.startswith("promoter ") and ": {" in reason:
        head, _, body = reason.partition(": ")
        try:
            why = json.loads(body).get("why")
        except (ValueError, AttributeError):
            why = None
        if isinstance(why, str):
            return f"{head}: {why}"
    return reason


def script_json(data: Any) -> str:
    """JSON safe to place inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report and the UI.

    Raises:
        ConfigurationError: Jinja2 is not installed.
    """
    try:
        import jinja2
    except ImportError as exc:
        raise ConfigurationError(
            "pages need Jinja2, part of the 'ui' extra: pip install 'modelshelf[ui]'"
        ) from exc
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelshelf", "_views/templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        value=format_value,
        brief=format_brief,
        delta=format_delta,
        time=format_time,
        size=format_size,
        percent=format_percent,
        short_reason=short_reason,
    )
    return env
