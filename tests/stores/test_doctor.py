"""``modelshelf doctor``: verdicts on a sound store and on one that ignores preconditions."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from modelshelf import OVERWRITE, LocalStore
from modelshelf._cli import cli
from modelshelf._stores import CREATE, PutMode
from modelshelf._stores._doctor import run_doctor


class IgnoresIfNoneMatch(LocalStore):
    """A backend like some S3-compatibles: create-if-absent silently overwrites."""

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        return super().put(key, data, mode=OVERWRITE if mode == CREATE else mode)

    def get(self, key: str, *, if_none_match: str | None = None):  # type: ignore[no-untyped-def]
        return super().get(key)  # and never answers 304


def test_doctor_passes_a_sound_store_and_cleans_up(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    checks = run_doctor(store)
    assert len(checks) == 6 and all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert list(store.list("")) == [], "doctor must remove its scratch objects"


def test_doctor_fails_a_store_that_ignores_preconditions(tmp_path: Path) -> None:
    checks = {c.name: c for c in run_doctor(IgnoresIfNoneMatch(tmp_path / "reg"))}
    assert not checks["create-if-absent (If-None-Match: *)"].ok
    assert "replaced" in checks["create-if-absent (If-None-Match: *)"].detail
    assert not checks["conditional GET (If-None-Match: etag)"].ok
    assert checks["if-match with a stale etag"].ok, "if-match still works in this store"


def test_doctor_cli_verdict_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--registry", str(tmp_path / "reg"), "doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and len(report["checks"]) == 6
    result = runner.invoke(cli, ["--registry", str(tmp_path / "reg"), "doctor"])
    assert result.exit_code == 0 and "safe for modelshelf" in result.output


def test_gc_cli_dry_run_then_yes(tmp_path: Path) -> None:
    from modelshelf import Registry

    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    for i in range(3):
        registry.push("m", {"w": i}, version=f"1.{i}.0")
    runner = CliRunner()
    base = ["--registry", str(tmp_path / "reg"), "gc", "m", "--keep-last", "1"]
    result = runner.invoke(cli, [*base, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["dry_run"] and plan["expired_versions"] == ["1.0.0", "1.1.0"]
    assert len(list(registry.store.list("m/blobs/"))) == 3, "dry run is the default"
    result = runner.invoke(cli, [*base, "--yes"])
    assert result.exit_code == 0 and "freed" in result.output, result.output
    assert len(list(registry.store.list("m/blobs/"))) == 1
    result = runner.invoke(cli, [*base, "--older-than", "ten days"])
    assert result.exit_code == 2 and "invalid age" in result.output
