"""``modelshelf ui``: pages, the conditional aliases poll, and confirmed actions."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._views._app import create_app
from tests.support.views import MODEL, push_versions

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="ui-user@test")
    push_versions(reg, 3)
    reg.set_active(MODEL, "1.0.0", reason="first release")
    reg.start_canary(MODEL, "1.1.0", 0.05, reason="retrained")
    return reg


@pytest.fixture
def app(reg: Registry) -> Any:
    return create_app(reg)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        yield c


def _form(app: Any, reg: Registry, **fields: str) -> dict[str, str]:
    return {
        "token": app.state.token,
        "generation": str(reg.aliases(MODEL).generation),
        "confirm": "yes",
        "reason": "checked the dashboards",
        **fields,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/",
        f"/models/{MODEL}",
        f"/models/{MODEL}/compare",
        f"/models/{MODEL}/compare?v=1.0.0&v=1.2.0&diff_only=1",
        f"/models/{MODEL}/versions/1.1.0",
        f"/models/{MODEL}/timeline",
        f"/models/{MODEL}/canary",
        f"/models/{MODEL}/canary/panel",
        f"/models/{MODEL}/actions/promote",
    ],
)
def test_pages_answer(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text[:300]
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_unknown_things_are_404_and_bad_names_400(client: TestClient) -> None:
    assert client.get("/models/nothing").status_code == 404
    assert client.get(f"/models/{MODEL}/versions/9.9.9").status_code == 404
    assert client.get("/models/Not..A-Name").status_code == 400
    assert client.get(f"/models/{MODEL}/actions/delete").status_code == 404


def test_aliases_poll_is_a_conditional_get(client: TestClient, reg: Registry) -> None:
    first = client.get(f"/api/models/{MODEL}/aliases")
    assert first.status_code == 200 and first.json()["canary"] == "1.1.0"
    etag = first.headers["etag"]
    unchanged = client.get(f"/api/models/{MODEL}/aliases", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    reg.set_ratio(MODEL, 0.25)
    moved = client.get(f"/api/models/{MODEL}/aliases", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.json()["ratio"] == 0.25
    assert moved.headers["etag"] != etag


def test_a_confirmed_promote_is_recorded_with_its_reason(
    client: TestClient, app: Any, reg: Registry
) -> None:
    response = client.post(
        f"/models/{MODEL}/actions/promote", data=_form(app, reg), follow_redirects=False
    )
    assert response.status_code == 303
    last = reg.history(MODEL)[-1]
    assert (last.action, last.reason, last.who) == (
        "promote",
        "checked the dashboards",
        "ui-user@test",
    )
    assert reg.aliases(MODEL).active == "1.1.0"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"confirm": ""}, "tick the confirmation box"),
        ({"reason": "  "}, "give a reason"),
        ({"generation": "1"}, "the aliases changed since this page was shown"),
    ],
)
def test_an_unconfirmed_or_stale_action_changes_nothing(
    client: TestClient, app: Any, reg: Registry, fields: dict[str, str], says: str
) -> None:
    before = reg.history(MODEL)
    response = client.post(f"/models/{MODEL}/actions/abort", data=_form(app, reg, **fields))
    assert response.status_code == 200
    assert says in response.text
    assert reg.history(MODEL) == before


def test_a_form_from_elsewhere_is_refused(client: TestClient, app: Any, reg: Registry) -> None:
    before = reg.history(MODEL)
    response = client.post(f"/models/{MODEL}/actions/abort", data=_form(app, reg, token="guessed"))
    assert response.status_code == 403
    assert reg.history(MODEL) == before


def test_ratio_takes_a_share_or_a_percentage(client: TestClient, app: Any, reg: Registry) -> None:
    client.post(f"/models/{MODEL}/actions/ratio", data=_form(app, reg, ratio="25%"))
    assert reg.aliases(MODEL).ratio == 0.25
    bad = client.post(f"/models/{MODEL}/actions/ratio", data=_form(app, reg, ratio="lots"))
    assert bad.status_code == 200 and "not a number" in bad.text
    out_of_range = client.post(f"/models/{MODEL}/actions/ratio", data=_form(app, reg, ratio="2"))
    assert out_of_range.status_code == 200 and "[0, 1]" in out_of_range.text
    assert reg.aliases(MODEL).ratio == 0.25


def test_a_request_for_another_host_is_refused(client: TestClient) -> None:
    response = client.get("/", headers={"Host": "attacker.example:8765"})
    assert response.status_code == 421


def test_the_canary_page_shows_what_the_promoter_would_decide(reg: Registry) -> None:
    from modelshelf_promoter import Promoter

    seen: list[str] = []

    def judge(reader: Registry, name: str) -> dict[str, Any]:
        seen.append(name)
        run = Promoter(reader).run_model(name, dry_run=True)
        assert run.decision is not None
        return run.decision.model_dump(mode="json")

    before = sorted(p.name for p in Path(reg.uri.removeprefix("file://")).rglob("*"))
    with TestClient(create_app(reg, judge=judge), base_url="http://127.0.0.1:1") as client:
        page = client.get(f"/models/{MODEL}/canary")
    assert seen and set(seen) == {MODEL}
    assert "The promoter would <strong>hold</strong>" in page.text
    assert "no canary data" in page.text
    assert sorted(p.name for p in Path(reg.uri.removeprefix("file://")).rglob("*")) == before
