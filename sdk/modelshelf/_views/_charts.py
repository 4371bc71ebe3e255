"""Vega-Lite specs for the report and the UI, and their rendering to SVG.

Specs are plain dicts built here, with the data inline. They are rendered to SVG with
``vl-convert-python`` (Vega-Lite compiled and run in an embedded engine, no browser), so the
pages carry no JavaScript and make no request: an SVG opens anywhere a page does. Rendering
is refused any base URL, so a spec can never make the converter fetch anything.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._errors import ConfigurationError
from .._versions import Comparison
from ._canary import CanarySeries
from ._decisions import DecisionView
from ._timeline import Timeline

__all__ = [
    "canary_spec",
    "render_svg",
    "timeline_spec",
    "versions_spec",
    "warm_up",
]

_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
_WIDTH = 760
_ARM_COLORS = {"domain": ["active", "canary"], "range": ["#4c78a8", "#f58518"]}
_BOUND_COLORS = {
    "domain": ["tolerated (judge)", "canary lower bound (judge)"],
    "range": ["#d62728", "#9467bd"],
}
# With a utc scale the axis formats in UTC; formatType "utc" would fall back to defaults.
_TIME_AXIS = {"format": "%H:%M", "labelOverlap": True}
_lock = threading.Lock()


def _iso(when: datetime) -> str:
    return when.isoformat()


def _base(title: str) -> dict[str, Any]:
    return {
        "$schema": _SCHEMA,
        "title": {"text": title, "anchor": "start", "fontSize": 13},
        "config": {"view": {"stroke": None}, "font": "sans-serif"},
    }


def versions_spec(comparison: Comparison) -> dict[str, Any] | None:
    """Each numeric performance metric across the compared versions (None when there is none)."""
    order = [c.version for c in comparison.versions]
    values = []
    for row in comparison.rows:
        if row.section != "performance":
            continue
        for version, cell in zip(order, row.cells, strict=True):
            if (
                cell.present
                and isinstance(cell.value, int | float)
                and not isinstance(cell.value, bool)
            ):
                values.append({"version": version, "metric": row.field, "value": cell.value})
    if not values:
        return None
    metrics = sorted({v["metric"] for v in values})
    return {
        **_base(f"{comparison.model}: performance by version"),
        "data": {"values": values},
        "facet": {"field": "metric", "type": "nominal", "title": None, "sort": metrics},
        "columns": 3,
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": 220,
            "height": 110,
            "layer": [
                {"mark": {"type": "line", "color": "#4c78a8"}},
                {"mark": {"type": "point", "filled": True, "color": "#4c78a8"}},
            ],
            "encoding": {
                "x": {
                    "field": "version",
                    "type": "ordinal",
                    "sort": order,
                    "axis": {"labelAngle": -45, "labelOverlap": True},
                    "title": None,
                },
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": None,
                    "scale": {"zero": False},
                },
                "tooltip": [{"field": "version"}, {"field": "value"}],
            },
        },
    }


def timeline_spec(
    model: str, timeline: Timeline, now: datetime, decisions: Sequence[DecisionView] = ()
) -> dict[str, Any] | None:
    """Which version was active / canary when, every alias change marked, and the promoter's
    decisions (holds included) as ticks above the canary row."""
    if not timeline.events:
        return None
    bars = [
        {
            "role": s.role,
            "version": s.version,
            "start": _iso(s.start),
            "end": _iso(s.end or now),
            "who": s.who,
        }
        for s in timeline.segments
    ]
    marks = [
        {
            "when": _iso(e.when),
            "generation": e.generation,
            "action": e.action,
            "by": "promoter" if e.promoter_action else "person",
            "role": "canary" if e.canary or e.before_canary else "active",
            "who": e.who,
        }
        for e in timeline.events
    ]
    x = {
        "type": "temporal",
        "scale": {"type": "utc"},
        "title": None,
        "axis": {**_TIME_AXIS, "format": "%m-%d %H:%M"},
    }
    return {
        **_base(f"{model}: aliases over time"),
        "width": _WIDTH,
        "height": 90,
        "layer": [
            {
                "data": {"values": bars},
                "mark": {"type": "bar", "height": 22, "cornerRadius": 2},
                "encoding": {
                    "y": {
                        "field": "role",
                        "type": "nominal",
                        "sort": ["active", "canary"],
                        "title": None,
                    },
                    "x": {"field": "start", **x},
                    "x2": {"field": "end"},
                    "color": {
                        "field": "version",
                        "type": "nominal",
                        "legend": {"columns": 2},
                        "scale": {"scheme": "tableau20"},
                    },
                    "tooltip": [{"field": "role"}, {"field": "version"}, {"field": "who"}],
                },
            },
            {
                "data": {"values": marks},
                "mark": {"type": "point", "size": 18, "filled": True, "yOffset": 16},
                "encoding": {
                    "y": {"field": "role", "type": "nominal", "sort": ["active", "canary"]},
                    "x": {"field": "when", **x},
                    "shape": {
                        "field": "by",
                        "type": "nominal",
                        "scale": {
                            "domain": ["person", "promoter"],
                            "range": ["circle", "triangle-up"],
                        },
                        "title": "changed by",
                    },
                    "color": {"value": "#333"},
                    "tooltip": [{"field": "generation"}, {"field": "action"}, {"field": "who"}],
                },
            },
            *_decision_ticks(decisions, x),
        ],
        # Versions and decisions each keep their own colours and legend.
        "resolve": {"scale": {"color": "independent"}, "legend": {"color": "independent"}},
    }


_DECISION_COLORS = {
    "domain": ["hold", "advance", "promote", "rollback", "abort"],
    "range": ["#9e9e9e", "#59a14f", "#2f6fb0", "#d62728", "#b07aa1"],
}


def _decision_ticks(decisions: Sequence[DecisionView], x: dict[str, Any]) -> list[dict[str, Any]]:
    if not decisions:
        return []
    values = [
        {
            "when": _iso(d.when),
            "role": "canary",
            "decision": d.action,
            "outcome": d.outcome,
            "ratio": d.decision.ratio,
        }
        for d in decisions
    ]
    return [
        {
            "data": {"values": values},
            "mark": {
                "type": "tick",
                "orient": "vertical",
                "yOffset": -16,
                "height": 8,
                "thickness": 2,
            },
            "encoding": {
                "y": {"field": "role", "type": "nominal", "sort": ["active", "canary"]},
                "x": {"field": "when", **x},
                "color": {
                    "field": "decision",
                    "type": "nominal",
                    "scale": _DECISION_COLORS,
                    "title": "promoter decided",
                },
                "tooltip": [{"field": "decision"}, {"field": "outcome"}, {"field": "ratio"}],
            },
        }
    ]


def _metric_layer(
    series: CanarySeries,
    field: str,
    title: str,
    bounds: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    percent: bool,
) -> dict[str, Any]:
    x = {
        "field": "t",
        "type": "temporal",
        "scale": {"type": "utc"},
        "title": None,
        "axis": _TIME_AXIS,
    }
    y_axis = {"format": ".2%"} if percent else {}
    values = [
        {"t": _iso(p.window_start), "arm": p.arm, "value": getattr(p, field)}
        for p in series.points
        if getattr(p, field) is not None
    ]
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": values},
            "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 1.5},
            "encoding": {
                "x": x,
                "y": {"field": "value", "type": "quantitative", "title": title, "axis": y_axis},
                "color": {"field": "arm", "type": "nominal", "scale": _ARM_COLORS, "title": "arm"},
            },
        }
    ]
    if bounds:
        layers.append(
            {
                "data": {"values": bounds},
                "mark": {
                    "type": "line",
                    "interpolate": "step-after",
                    "strokeDash": [4, 3],
                    "point": {"size": 12},
                },
                "encoding": {
                    "x": {"field": "t", "type": "temporal"},
                    "y": {"field": "value", "type": "quantitative"},
                    "stroke": {
                        "field": "bound",
                        "type": "nominal",
                        "scale": _BOUND_COLORS,
                        "title": "judge",
                    },
                },
            }
        )
    if steps:
        layers.append(
            {
                "data": {"values": steps},
                "mark": {"type": "rule", "color": "#888", "strokeDash": [2, 2]},
                "encoding": {"x": {"field": "t", "type": "temporal"}},
            }
        )
        layers.append(
            {
                "data": {"values": steps},
                "mark": {
                    "type": "text",
                    "align": "left",
                    "dx": 3,
                    "dy": -4,
                    "fontSize": 10,
                    "color": "#555",
                },
                "encoding": {
                    "x": {"field": "t", "type": "temporal"},
                    "y": {"value": 0},
                    "text": {"field": "label"},
                },
            }
        )
    return {
        "width": _WIDTH,
        "height": 130,
        "layer": layers,
        "resolve": {"scale": {"color": "independent", "stroke": "independent"}},
    }


def canary_spec(
    model: str, series: CanarySeries, decisions: Sequence[DecisionView]
) -> dict[str, Any] | None:
    """Error rate, p95 and p99 per window of both arms, the judge's bounds and the steps.

    None for fewer than two windows: a line needs two points (the totals say the rest).
    """
    if len({p.window_start for p in series.points}) < 2:
        return None
    run = series.run
    mine = [
        d
        for d in decisions
        if d.canary == run.canary
        and d.active == run.active
        and d.when >= run.started_at
        and (run.ended_at is None or d.when <= run.ended_at)
    ]
    steps = [{"t": _iso(when), "label": f"ratio {ratio:g}"} for when, ratio, _who in run.steps]
    error_bounds = [
        {"t": _iso(d.when), "bound": "tolerated (judge)", "value": d.decision.errors.tolerated_rate}
        for d in mine
        if d.decision.errors.tolerated_rate is not None
    ]

    def latency_bounds(which: str) -> list[dict[str, Any]]:
        out = []
        for d in mine:
            test = getattr(d.decision, which)
            if test.alarm_line is not None:
                out.append(
                    {"t": _iso(d.when), "bound": "tolerated (judge)", "value": test.alarm_line}
                )
            if test.canary_lower is not None:
                out.append(
                    {
                        "t": _iso(d.when),
                        "bound": "canary lower bound (judge)",
                        "value": test.canary_lower,
                    }
                )
        return out

    return {
        **_base(f"{model}: canary {run.canary} vs active {run.active}"),
        "vconcat": [
            _metric_layer(series, "error_rate", "error rate", error_bounds, steps, True),
            _metric_layer(
                series, "p95_ms", "p95 (ms)", latency_bounds("latency_p95"), steps, False
            ),
            _metric_layer(
                series, "p99_ms", "p99 (ms)", latency_bounds("latency_p99"), steps, False
            ),
        ],
    }


def _converter() -> Any:
    try:
        import vl_convert
    except ImportError as exc:
        raise ConfigurationError(
            "charts need vl-convert-python, part of the 'ui' extra: pip install 'modelshelf[ui]'"
        ) from exc
    return vl_convert


def render_svg(spec: dict[str, Any]) -> str:
    """The SVG of a Vega-Lite spec; the converter may fetch nothing.

    Raises:
        ConfigurationError: vl-convert-python is not installed.
    """
    vl_convert = _converter()
    with _lock:  # the embedded engine is one per process; calls queue anyway
        svg: str = vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])
    # The XML prolog is not allowed inside an HTML document.
    if svg.startswith("<?xml"):
        svg = svg.split("?>", 1)[1].lstrip()
    return svg


def warm_up() -> None:
    """Start the embedded engine (about half a second the first time) before a page needs it."""
    render_svg(
        {
            "$schema": _SCHEMA,
            "data": {"values": [{"a": 1}]},
            "mark": "point",
            "encoding": {"x": {"field": "a", "type": "quantitative"}},
        }
    )
