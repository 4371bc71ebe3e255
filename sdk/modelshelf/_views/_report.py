"""``modelshelf report``: one self-contained HTML page of a model.

Everything is inside the file: the tables, the charts as inline SVG (rendered here from
Vega-Lite specs), and the data as JSON in a ``<script type="application/json">`` element.
The page has no script to run and a Content-Security-Policy that forbids every fetch, so it
opens the same from ``file://``, a presigned URL or an e-mail attachment.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._charts import canary_spec, render_svg, timeline_spec, versions_spec
from ._pages import ModelPage, collect_model, environment, script_json

if TYPE_CHECKING:
    from .._registry import Registry

__all__ = ["build_report", "render_report", "report_data"]


def _version() -> str:
    try:
        return version("modelshelf")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def report_data(page: ModelPage) -> dict[str, Any]:
    """The JSON embedded in the report (also what ``--json`` tools can read back out)."""
    return {
        "format": 1,
        "model": page.model,
        "registry": page.registry,
        "generated_at": page.generated_at.isoformat(),
        "aliases": page.aliases.model_dump(mode="json"),
        "comparison": page.comparison.to_dict(),
        "history": [e.model_dump(mode="json") for e in page.timeline.events],
        "canaries": [
            {
                "run": s.run.model_dump(mode="json"),
                "points": [p.model_dump(mode="json") for p in s.points],
                "corrupt": s.corrupt,
            }
            for s in page.canaries
        ],
        "decisions": [
            {
                "key": d.key,
                "when": d.when.isoformat(),
                "generation": d.generation,
                "action": d.action,
                "outcome": d.outcome,
                "reason": d.decision.reason,
                "ratio": d.decision.ratio,
                "next_ratio": d.decision.next_ratio,
                "active": d.decision.active.model_dump(mode="json"),
                "canary": d.decision.canary.model_dump(mode="json"),
            }
            for d in page.decisions
        ],
    }


def render_report(page: ModelPage) -> str:
    """The report's HTML for what :func:`~modelshelf._views._pages.collect_model` read."""
    versions_chart = versions_spec(page.comparison)
    timeline_chart = timeline_spec(page.model, page.timeline, page.generated_at, page.decisions)
    canaries = []
    for series in page.canaries:
        spec = canary_spec(page.model, series, page.decisions)
        canaries.append(
            {
                "series": series,
                "svg": render_svg(spec) if spec else None,
                "totals": {arm: series.totals(arm) for arm in ("active", "canary")},
            }
        )
    template = environment().get_template("report.html.j2")
    return template.render(
        page=page,
        version=_version(),
        versions_svg=render_svg(versions_chart) if versions_chart else None,
        timeline_svg=render_svg(timeline_chart) if timeline_chart else None,
        canaries=canaries,
        data_json=script_json(report_data(page)),
    )


def build_report(
    registry: Registry,
    name: str,
    *,
    versions: Sequence[str] | None = None,
    last: int | None = None,
    now: datetime | None = None,
) -> str:
    """Read ``name`` from ``registry`` and return the report's HTML.

    Args:
        registry: The registry.
        name: The model.
        versions: Compare only these versions (default: all).
        last: Compare only the newest ``last`` versions.
        now: The end of a canary still running (default: the clock).

    Raises:
        ModelNotFoundError: The model has no versions.
        ConfigurationError: The ``ui`` extra (Jinja2, vl-convert-python) is missing.
    """
    page = collect_model(registry, name, versions=versions, last=last, now=now)
    return render_report(page)
