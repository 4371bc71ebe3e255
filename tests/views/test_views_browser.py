"""The report and the UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Every page must render with no console error and make no request outside 127.0.0.1 or
``file:``; screenshots go to ``test-artifacts/browser/`` (or ``$MODELSHELF_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._views._app import create_app
from modelshelf._views._report import build_report
from modelshelf_promoter import Promoter
from tests.support.views import MODEL, fleet_traffic, push_versions

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = (
    Path(
        os.environ.get("MODELSHELF_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts"
    )
    / "browser"
)


@dataclass
class Watched:
    """What a page did: console errors, uncaught exceptions, every request URL."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        allowed = ("http://127.0.0.1:", "file://", "data:", "about:")
        return [u for u in self.requests if not u.startswith(allowed)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _page(browser: Any) -> tuple[Any, Watched]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched()
    page.on(
        "console",
        lambda m: watched.errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: watched.requests.append(r.url))
    return page, watched


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 2_000, f"screenshot {path} is empty"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    tmp = tmp_path_factory.mktemp("browser")
    reg = Registry(tmp / "reg", cache_dir=tmp / "cache", user="browser@test")
    push_versions(reg, 5)
    reg.set_active(MODEL, "1.0.0", reason="first release")
    reg.start_canary(MODEL, "1.1.0", 0.05, reason="retrained on May data")
    reg.promote(MODEL, reason="healthy")
    reg.start_canary(MODEL, "1.2.0", 0.05, reason="new features")
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    fleet_traffic(reg, ("1.1.0", "1.2.0"), started, 30, per_window=40)
    for minute in (11, 22):
        Promoter(reg, clock=lambda m=minute: started + timedelta(minutes=m)).run([MODEL])
    return reg


def _compare_cells(page: Any, field: str) -> dict[str, str]:
    cells = page.locator(f'table.compare tr[data-field="{field}"] td')
    out = {}
    for i in range(cells.count()):
        cell = cells.nth(i)
        out[cell.get_attribute("data-version")] = cell.locator(".v").inner_text()
    return out


def _check_compare_and_timeline(page: Any, reg: Registry) -> None:
    assert _compare_cells(page, "accuracy") == {
        "1.0.0": "0.9",
        "1.1.0": "0.91",
        "1.2.0": "0.92",
        "1.3.0": "0.93",
        "1.4.0": "0.94",
    }
    assert _compare_cells(page, "n_estimators") == {
        "1.0.0": "100",
        "1.1.0": "110",
        "1.2.0": "120",
        "1.3.0": "130",
        "1.4.0": "140",
    }
    rows = page.locator("table.history tr[data-generation]")
    shown = sorted(int(rows.nth(i).get_attribute("data-generation")) for i in range(rows.count()))
    assert shown == [r.generation for r in reg.history(MODEL)], "every history record is shown"
    reasons = page.locator("table.history td.reason").all_inner_texts()
    assert "retrained on May data" in reasons


def test_report_opens_from_file_with_no_error_and_no_request(
    browser: Any, reg: Registry, tmp_path: Path
) -> None:
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    path = tmp_path / "report.html"
    path.write_text(build_report(reg, MODEL, now=started + timedelta(minutes=31)))
    page, watched = _page(browser)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    _shot(page, "report")
    assert watched.errors == []
    assert watched.requests == [path.as_uri()], "the report fetched something"
    _check_compare_and_timeline(page, reg)
    page.locator("label[for=diff-only]").click()
    assert page.locator('table.compare tr[data-field="max_depth"]').is_hidden()
    assert page.locator('table.compare tr[data-field="accuracy"]').is_visible()
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(reg: Registry) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    app = create_app(
        reg,
        poll_seconds=0.3,
        metrics_refresh=600,
        clock=lambda: started + timedelta(minutes=31),
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_ui_pages_render_with_no_error_and_stay_on_loopback(
    browser: Any, server: str, reg: Registry
) -> None:
    page, watched = _page(browser)
    for path, name in [
        ("/", "ui-models"),
        (f"/models/{MODEL}", "ui-model"),
        (f"/models/{MODEL}/versions/1.2.0", "ui-card"),
        (f"/models/{MODEL}/timeline", "ui-timeline"),
        (f"/models/{MODEL}/canary", "ui-canary"),
    ]:
        page.goto(server + path)
        page.wait_for_load_state("load")
        _shot(page, name)
    page.goto(f"{server}/models/{MODEL}/compare")
    _shot(page, "ui-compare")
    _check_compare_and_timeline_ui(page, server, reg)
    assert watched.errors == []
    assert watched.outside() == []
    page.close()


def _check_compare_and_timeline_ui(page: Any, server: str, reg: Registry) -> None:
    assert _compare_cells(page, "accuracy")["1.3.0"] == "0.93"
    page.goto(f"{server}/models/{MODEL}/timeline")
    rows = page.locator("table.history tr[data-generation]")
    assert rows.count() == len(reg.history(MODEL))


def test_live_canary_view_follows_alias_changes(browser: Any, server: str, reg: Registry) -> None:
    page, watched = _page(browser)
    page.goto(f"{server}/models/{MODEL}/canary")
    page.wait_for_selector("text=aliases checked")
    reg.set_ratio(MODEL, 0.3, reason="changed behind the page's back")
    page.wait_for_selector(".aliasbar >> text=1.2.0 at 0.3", timeout=10_000)
    polls = [u for u in watched.requests if u.endswith(f"/api/models/{MODEL}/aliases")]
    assert len(polls) >= 2
    assert watched.errors == [] and watched.outside() == []
    page.close()


def test_a_promote_clicked_in_the_ui_lands_in_history_with_its_reason(
    browser: Any, server: str, reg: Registry
) -> None:
    page, watched = _page(browser)
    page.goto(f"{server}/models/{MODEL}")
    page.click("#action-promote")
    page.fill("#reason", "promoted from the browser test")
    page.click("#submit")  # without the confirmation box ticked: refused
    assert "tick the confirmation box" in page.locator("#problem").inner_text()
    assert reg.aliases(MODEL).canary == "1.2.0"
    page.check("#confirm")
    _shot(page, "ui-confirm")
    page.click("#submit")
    page.wait_for_selector("#flash")
    last = reg.history(MODEL)[-1]
    assert (last.action, last.reason, last.who) == (
        "promote",
        "promoted from the browser test",
        "browser@test",
    )
    assert reg.aliases(MODEL).active == "1.2.0"
    assert watched.errors == [] and watched.outside() == []
    page.close()
