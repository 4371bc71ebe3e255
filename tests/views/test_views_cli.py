"""The view commands: compare, diff, status, promoter run --dry-run, promoter decisions,
report, and what ``ui`` says when it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelshelf import AccessDeniedError, Registry
from modelshelf._cli import _app as cli_app
from modelshelf._cli import cli
from modelshelf._stores import CREATE, ObjectInfo, PutMode, Store, StoredObject, open_store
from modelshelf_promoter import Promoter
from tests.support.backends import Backend
from tests.support.servers import READER_ACCESS_KEY, READER_SECRET_KEY
from tests.support.views import MODEL, fleet_traffic, push_versions

MARKUP = "[bold red]not markup[/bold red]"
MODELSHELF = [sys.executable, "-c", "from modelshelf._cli import main; main()"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHELF_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", "cli@test")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def reg(home: Path) -> Registry:
    reg = Registry(home / "reg", cache_dir=home / "cache", user="cli@test")
    push_versions(reg, 3)
    reg.set_active(MODEL, "1.0.0", reason="first release")
    return reg


def ok(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}"
    return result


def _canary(reg: Registry, per_window: int = 300, rates: tuple[float, float] = (0.01, 0.01)) -> Any:
    """A canary with two windows of traffic from two servers per arm, right after its start.

    The promoter counts whole windows after the start; commands on the real clock read them
    although they lie a minute or two ahead of it.
    """
    reg.start_canary(MODEL, "1.1.0", 0.05, reason="retrained")
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None
    fleet_traffic(
        reg,
        ("1.0.0", "1.1.0"),
        started + timedelta(minutes=1),
        2,
        per_window=per_window,
        error_rates=rates,
    )
    return started


def test_compare_json_has_the_numbers_and_diff_only_drops_equal_rows(reg: Registry) -> None:
    data = json.loads(ok("compare", MODEL, "--json").output)
    assert [v["version"] for v in data["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]
    row = next(r for r in data["rows"] if r["field"] == "accuracy")
    assert [c["value"] for c in row["cells"]] == [0.9, 0.91, 0.92] and row["differs"]
    only = json.loads(ok("compare", MODEL, "--last", "2", "--diff-only", "--json").output)
    assert [v["version"] for v in only["versions"]] == ["1.1.0", "1.2.0"]
    assert all(r["differs"] for r in only["rows"])
    assert "max_depth" not in {r["field"] for r in only["rows"]}


def test_compare_prints_user_text_literally(reg: Registry) -> None:
    reg.push(MODEL, {"w": "x"}, version="1.9.0", card={"description": MARKUP})
    out = ok("compare", MODEL, "1.2.0", "1.9.0").output
    assert "[bold red]not" in out


def test_compare_of_a_missing_version_fails_with_its_exit_code(reg: Registry) -> None:
    result = CliRunner().invoke(cli, ["compare", MODEL, "1.0.0", "7.0.0"])
    assert result.exit_code == 22, result.output
    assert "7.0.0" in result.output


def test_diff_names_fields_and_files(reg: Registry) -> None:
    data = json.loads(ok("diff", f"{MODEL}:1.0.0", f"{MODEL}:1.2.0", "--json").output)
    changed = {(c["section"], c["field"]): c for c in data["card"]}
    assert changed[("performance", "accuracy")]["old"] == 0.9
    assert changed[("performance", "accuracy")]["new"] == 0.92
    assert [f["change"] for f in data["files"]] == ["modified"]
    assert not data["identical"]
    text = ok("diff", f"{MODEL}:1.0.0", f"{MODEL}:1.2.0").output
    assert "performance.accuracy: 0.9 -> 0.92" in text


def test_status_without_canary(reg: Registry) -> None:
    out = ok("status", MODEL).output
    assert "no canary running" in out and "1.0.0" in out


def test_status_shows_the_arms_bounds_and_what_the_promoter_would_do(reg: Registry) -> None:
    _canary(reg)
    out = ok("status", MODEL).output
    for text in ("canary  1.1.0 at ratio 0.05", "error rate", "p99", "the promoter would"):
        assert text in out, out
    data = json.loads(ok("status", MODEL, "--json").output)
    promoter = data["promoter"]
    assert promoter["dry_run"] and not promoter["applied"]
    decision = promoter["decision"]
    assert decision["canary"]["requests"] == 2 * 2 * 300
    assert decision["latency_p99"]["canary_lower"] is not None
    assert f"the promoter would {decision['action']}" in out


class ReadOnlyStore:
    """The registry's store with every write refused, as a read-only credential would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.refused: list[str] = []

    @property
    def uri(self) -> str:
        return self.inner.uri

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        return self.inner.get(key, if_none_match=if_none_match)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, **kwargs)

    def _refuse(self, key: str) -> None:
        self.refused.append(key)
        raise AccessDeniedError(f"read-only: {key}")

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        self._refuse(key)
        raise AssertionError("unreachable")

    def put_file(self, key: str, path: Path, **kwargs: Any) -> str:
        self._refuse(key)
        raise AssertionError("unreachable")

    def delete(self, key: str) -> None:
        self._refuse(key)

    def get_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        return self.inner.get_file(key, path, **kwargs)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_status_never_writes(reg: Registry, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _canary(reg, rates=(0.01, 0.3))  # a canary the real promoter would roll back
    stores: list[ReadOnlyStore] = []

    def read_only_registry(uri: Any = None, **kwargs: Any) -> Registry:
        store = ReadOnlyStore(open_store(uri))
        stores.append(store)
        return Registry(store, **kwargs)

    monkeypatch.setattr(cli_app, "Registry", read_only_registry)
    before = _tree(home / "reg")
    data = json.loads(ok("status", MODEL, "--json").output)
    assert data["promoter"]["action"] == "rollback"
    assert stores and all(s.refused == [] for s in stores), "status tried to write"
    assert _tree(home / "reg") == before
    dry = json.loads(ok("promoter", "run", MODEL, "--dry-run", "--json").output)
    assert dry["models"][0]["action"] == "rollback" and dry["models"][0]["dry_run"]
    assert all(s.refused == [] for s in stores), "promoter run --dry-run tried to write"
    assert reg.aliases(MODEL).canary == "1.1.0", "the dry run rolled nothing back"


@pytest.mark.seaweedfs
@pytest.mark.slow
def test_status_runs_with_read_only_credentials(make_backend: Any, tmp_path: Path) -> None:
    backend: Backend = make_backend("seaweedfs")
    reg = Registry(backend.uri, cache_dir=tmp_path / "cache", **backend.store_options)
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    _canary(reg)
    client = backend.s3_client()

    def listing() -> list[tuple[str, str]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket)
        return sorted((o["Key"], o["ETag"]) for p in pages for o in p.get("Contents", []))

    before = listing()
    env = {
        **os.environ,
        **backend.env(),
        "AWS_ACCESS_KEY_ID": READER_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": READER_SECRET_KEY,
        "MODELSHELF_CACHE": str(tmp_path / "cache2"),
    }
    probe = subprocess.run(
        [*MODELSHELF, "promoter", "run", MODEL],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 63, f"the reader identity could write:\n{probe.stdout}{probe.stderr}"
    result = subprocess.run(
        [*MODELSHELF, "status", MODEL, "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["promoter"]["canary_requests"] == 2 * 2 * 300
    assert listing() == before, "status changed the bucket"


def test_promoter_decisions_lists_past_decisions(reg: Registry) -> None:
    started = _canary(reg)
    Promoter(reg, clock=lambda: started + timedelta(minutes=1)).run([MODEL])
    data = json.loads(ok("promoter", "decisions", MODEL, "--json").output)
    (decision,) = data["decisions"]
    assert decision["outcome"] in {"applied", "no_change"}
    assert decision["decision"]["canary"]["requests"] == 2 * 2 * 300
    out = ok("promoter", "decisions", MODEL).output
    assert decision["decision"]["action"] in out


def test_report_writes_one_file(reg: Registry, home: Path) -> None:
    _canary(reg)
    out = ok("report", MODEL, "-o", "out/iris.html").output
    html = (home / "out" / "iris.html").read_text()
    assert "wrote out/iris.html" in out and html.startswith("<!DOCTYPE html>")
    assert "modelshelf-data" in html
    ok("report", MODEL)
    assert (home / f"{MODEL}-report.html").exists()


def test_the_promoter_writes_the_report_when_the_policy_says_so(reg: Registry) -> None:
    started = _canary(reg)
    clock = lambda: started + timedelta(minutes=1)  # noqa: E731
    (run,) = Promoter(reg, clock=clock).run([MODEL])
    assert run.report_key is None, "off by default"
    ok("promoter", "policy", MODEL, "--set", "write_report=true")
    (run,) = Promoter(reg, clock=clock).run([MODEL])
    assert run.report_key == f"{MODEL}/report.html" and run.report_error is None
    obj = reg.store.get(run.report_key)
    assert obj is not None and b"modelshelf-data" in obj.data


def test_the_report_in_s3_opens_in_a_browser_from_a_presigned_url(
    make_backend: Any, tmp_path: Path
) -> None:
    backend: Backend = make_backend("moto")
    reg = Registry(backend.uri, cache_dir=tmp_path / "cache", **backend.store_options)
    push_versions(reg, 2)
    reg.set_active(MODEL, "1.0.0")
    started = _canary(reg)
    update = ["write_report=true"]
    from modelshelf_promoter import update_policy

    update_policy(reg.store, MODEL, update)
    (run,) = Promoter(reg, clock=lambda: started + timedelta(minutes=3)).run([MODEL])
    assert run.report_key is not None, run.report_error
    head = backend.s3_client().head_object(Bucket=backend.bucket, Key=f"registry/{run.report_key}")
    assert head["ContentType"].startswith("text/html")


def test_ui_says_where_it_listens(reg: Registry, home: Path) -> None:
    import socket

    _canary(reg)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MODELSHELF_REGISTRY": str(home / "reg")}
    proc = subprocess.Popen(
        [*MODELSHELF, "ui", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "bound to 127.0.0.1" in line, line
        import httpx

        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/models/{MODEL}", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "ui did not answer"
                time.sleep(0.1)
        assert response.status_code == 200 and "1.2.0" in response.text
        canary = httpx.get(f"http://127.0.0.1:{port}/models/{MODEL}/canary", timeout=30)
        assert canary.status_code == 200
        assert "The promoter would <strong>" in canary.text, "the CLI passes the dry run"
    finally:
        proc.terminate()
        proc.wait(10)
