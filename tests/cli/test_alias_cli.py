"""The alias commands: show, set, canary start/ratio/abort, promote, rollback, history,
served-at."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelshelf import (
    InvalidAliasesError,
    InvalidVersionError,
    LocalStore,
    Registry,
)
from modelshelf._cli import cli
from modelshelf._stores import OVERWRITE
from modelshelf.layout import aliases_key

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHELF_USER", "cli-tester")
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="pusher")
    for i, version in enumerate(VERSIONS):
        registry.push("iris", {"weights": i}, version=version)
    return tmp_path / "reg"


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--registry", str(root), *args], catch_exceptions=False)


def ok(root: Path, *args: str) -> Result:
    result = run(root, *args)
    assert result.exit_code == 0, f"modelshelf {' '.join(args)} failed: {result.output}"
    return result


def ok_json(root: Path, *args: str) -> Any:
    return json.loads(ok(root, *args, "--json").stdout)


def test_the_whole_alias_lifecycle_through_the_cli(root: Path) -> None:
    empty = ok_json(root, "alias", "show", "iris")
    assert empty["aliases"]["generation"] == 0 and empty["aliases"]["active"] is None, (
        "a model without aliases must show generation 0 and no active version"
    )
    ok(root, "alias", "set", "iris", "1.0.0", "--reason", "first release")
    started = ok_json(root, "canary", "start", "iris", "1.1.0", "--ratio", "5%", "--reason", "try")
    assert started["aliases"]["canary"] == "1.1.0" and started["aliases"]["ratio"] == 0.05, (
        "canary start must accept 5% as a ratio of 0.05"
    )
    ok(root, "canary", "ratio", "iris", "0.25", "--reason", "looks good")
    shown = ok_json(root, "alias", "show", "iris")["aliases"]
    assert (shown["active"], shown["canary"], shown["ratio"], shown["generation"]) == (
        "1.0.0",
        "1.1.0",
        0.25,
        3,
    ), f"alias show does not reflect the changes: {shown}"
    text = ok(root, "alias", "show", "iris").stdout
    assert "1.1.0" in text and "25.0%" in text, f"human alias show misses the canary: {text}"
    ok(root, "promote", "iris", "--reason", "healthy")
    ok(root, "canary", "start", "iris", "1.2.0", "--ratio", "0.1")
    ok(root, "canary", "abort", "iris", "--reason", "flaky")
    after = ok_json(root, "rollback", "iris", "--reason", "bad release")["aliases"]
    assert (after["active"], after["canary"]) == ("1.0.0", None), (
        f"rollback must return active to 1.0.0, got {after}"
    )

    history = ok_json(root, "history", "iris")["history"]
    assert [r["action"] for r in history] == [
        "set_active",
        "start_canary",
        "set_ratio",
        "promote",
        "start_canary",
        "abort_canary",
        "rollback",
    ], "history must list every change in order"
    assert [r["generation"] for r in history] == list(range(1, 8)), "generations must not gap"
    assert history[0]["reason"] == "first release" and history[0]["who"] == "cli-tester", (
        "--reason and the user must be recorded"
    )
    assert history[-1]["reason"] == "bad release", "the rollback's reason must be recorded"
    assert len(ok_json(root, "history", "iris", "--limit", "2")["history"]) == 2, (
        "--limit must keep only the newest records"
    )
    table = ok(root, "history", "iris").stdout
    assert "abort_canary" in table and "flaky" in table, f"history table misses rows: {table}"


def test_served_at_names_both_arms_during_a_canary(root: Path) -> None:
    registry = Registry(root, user="x")
    registry.set_active("iris", "1.0.0")
    registry.start_canary("iris", "1.1.0", 0.2)
    during = registry.history("iris")[-1].when + timedelta(milliseconds=1)
    answer = ok_json(root, "served-at", "iris", during.isoformat(), "--grace", "0")
    served = {(v["version"], v["role"]) for v in answer["versions"]}
    assert served == {("1.0.0", "active"), ("1.1.0", "canary")}, (
        f"served-at during a 20% canary must name both versions, got {served}"
    )
    naive = during.replace(tzinfo=None).isoformat()
    assert ok_json(root, "served-at", "iris", naive)["versions"], "naive times must mean UTC"
    before = registry.history("iris")[0].when - timedelta(hours=1)
    text = ok(root, "served-at", "iris", before.isoformat().replace("+00:00", "Z")).stdout
    assert "no version was serving" in text, f"before any alias nothing served: {text}"
    bad = run(root, "served-at", "iris", "yesterday")
    assert bad.exit_code == 2 and "ISO 8601" in bad.output, (
        f"an unparseable time must be a usage error naming the format: {bad.output}"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["canary", "start", "iris", "1.1.0", "--ratio", "0.1"], InvalidAliasesError),  # no active
        (["alias", "set", "iris", "9.9.9"], InvalidAliasesError),  # not committed
        (["alias", "set", "iris", "1.0"], InvalidVersionError),
        (["promote", "iris"], InvalidAliasesError),  # no canary
        (["rollback", "iris"], InvalidAliasesError),  # nothing before
    ],
)
def test_refused_changes_exit_with_their_error_code(
    root: Path, args: list[str], error: type[Exception]
) -> None:
    result = run(root, *args)
    assert result.exit_code == error.exit_code, (  # type: ignore[attr-defined]
        f"{args} exited {result.exit_code}, expected {error.__name__}'s code: {result.output}"
    )
    assert result.stderr.startswith("error: "), f"errors must be one stderr line: {result.stderr}"
    assert ok_json(root, "alias", "show", "iris")["aliases"]["generation"] == 0, (
        "a refused change must write nothing"
    )


def test_major_canary_needs_allow_major_and_ratio_is_checked(root: Path) -> None:
    ok(root, "alias", "set", "iris", "1.0.0")
    refused = run(root, "canary", "start", "iris", "2.0.0", "--ratio", "0.1")
    assert refused.exit_code == InvalidAliasesError.exit_code and "MAJOR" in refused.stderr, (
        f"a cross-MAJOR canary must be refused without --allow-major: {refused.output}"
    )
    ok(root, "canary", "start", "iris", "2.0.0", "--ratio", "0.1", "--allow-major")
    bad_ratio = run(root, "canary", "ratio", "iris", "1.5")
    assert bad_ratio.exit_code == 2 and "outside" in bad_ratio.output, (
        f"a ratio above 1 must be a usage error: {bad_ratio.output}"
    )


def test_show_rejects_hand_edited_aliases(root: Path) -> None:
    ok(root, "alias", "set", "iris", "1.0.0")
    store = LocalStore(root)
    store.put(aliases_key("iris"), b'{"active": "1.0.0", "ratio": ', mode=OVERWRITE)
    corrupt = run(root, "alias", "show", "iris")
    assert corrupt.exit_code == InvalidAliasesError.exit_code, (
        f"invalid JSON in aliases.json must exit {InvalidAliasesError.exit_code}: {corrupt.output}"
    )
    assert "invalid aliases object" in corrupt.stderr, f"unclear error: {corrupt.stderr}"

    state = json.loads(ok(root, "history", "iris", "--json").stdout)["history"][-1]["state"]
    state["active"] = "7.7.7"  # well-formed, but no such version
    store.put(aliases_key("iris"), json.dumps(state).encode(), mode=OVERWRITE)
    unknown = run(root, "alias", "show", "iris")
    assert unknown.exit_code == InvalidAliasesError.exit_code and "7.7.7" in unknown.stderr, (
        f"an aliases object naming an unknown version must be refused: {unknown.output}"
    )


def test_history_of_a_model_without_changes_says_so(root: Path) -> None:
    result = run(root, "history", "iris")
    assert result.exit_code == 0 and "no alias changes" in result.stdout, (
        f"a model without history must say so: {result.output}"
    )
    assert ok_json(root, "history", "iris")["history"] == [], "--json must give an empty list"


@pytest.mark.parametrize(
    "args",
    [
        ["history", "nosuch"],
        ["history", "nosuch", "--json"],
        ["alias", "show", "nosuch"],
        ["alias", "show", "nosuch", "--json"],
        ["served-at", "nosuch", "now"],
        ["show", "nosuch"],
    ],
    ids=" ".join,
)
def test_reading_a_model_that_does_not_exist_exits_21_like_show(
    root: Path, args: list[str]
) -> None:
    result = run(root, *args)
    assert result.exit_code == 21, (
        f"modelshelf {' '.join(args)} on a model never pushed must exit 21 (ModelNotFoundError) "
        f"as show does, not {result.exit_code}: {result.output}"
    )
    assert not result.stdout and "'nosuch' has no versions" in result.stderr, result.output
