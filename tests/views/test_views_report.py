"""``modelshelf report``: one self-contained HTML file of a model."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from modelshelf import Registry
from modelshelf._views._report import build_report
from modelshelf_promoter import Promoter
from tests.support.views import MODEL, fleet_traffic, push_versions

HOSTILE = '<script>alert("x")</script><img src=https://evil.example/x.png>'


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every element name in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "action", "data", "xlink:href", "srcset", "poster"}:
                self.urls.append(value or "")
        if tag == "script":
            self.scripts.append(dict(attrs))


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="alice@test")
    push_versions(reg, 4)
    reg.set_active(MODEL, "1.0.0", reason="first release")
    reg.start_canary(MODEL, "1.1.0", 0.05, reason=HOSTILE)
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    fleet_traffic(reg, ("1.0.0", "1.1.0"), started, 15, per_window=60)
    Promoter(reg, clock=lambda: started + timedelta(minutes=16)).run([MODEL])
    return reg


def _data(html: str) -> dict:  # type: ignore[type-arg]
    match = re.search(
        r'<script type="application/json" id="modelshelf-data">(.*?)</script>', html, re.S
    )
    assert match, "the report embeds its data"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _end(reg: Registry):  # type: ignore[no-untyped-def]
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    return started + timedelta(minutes=16)


def test_report_is_self_contained(reg: Registry) -> None:
    html = build_report(reg, MODEL, now=_end(reg))
    refs = _Refs()
    refs.feed(html)
    external = [u for u in refs.urls if not u.startswith("#")]
    assert external == [], f"the report links outside itself: {external}"
    assert [s for s in refs.scripts if s.get("type") != "application/json"] == [], (
        "the report must run no script"
    )
    assert "link" not in refs.tags and "iframe" not in refs.tags
    assert "default-src 'none'" in html, "the CSP forbids every fetch"
    assert html.count("<svg") >= 3, "versions, timeline and canary charts are inline SVG"


def test_report_shows_user_text_literally(reg: Registry) -> None:
    html = build_report(reg, MODEL)
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "evil.example" in html  # shown as text ...
    assert "<img src=https://evil" not in html  # ... never as an element


def test_report_data_holds_every_history_record_and_decision(reg: Registry) -> None:
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    html = build_report(reg, MODEL, now=started + timedelta(minutes=16))
    data = _data(html)
    history = reg.history(MODEL)
    assert [e["generation"] for e in data["history"]] == [r.generation for r in history]
    assert data["history"][1]["reason"] == HOSTILE
    assert len(data["decisions"]) == 1 and data["decisions"][0]["action"] == "advance"
    (canary,) = data["canaries"]
    assert sum(p["requests"] for p in canary["points"] if p["arm"] == "canary") == 15 * 2 * 60
    accuracy = next(r for r in data["comparison"]["rows"] if r["field"] == "accuracy")
    assert [c["value"] for c in accuracy["cells"]] == [0.9, 0.91, 0.92, 0.93]
    for record in history:
        assert f'data-generation="{record.generation}"' in html


def test_report_of_a_model_with_no_aliases(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    push_versions(reg, 1)
    html = build_report(reg, MODEL)
    assert "no canary in the history" in html and "no decisions recorded" in html
