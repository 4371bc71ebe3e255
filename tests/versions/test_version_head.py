"""The version head and the per-model catalog: hints that cost requests, never answers.

Each test breaks the head (removes it, corrupts it, leaves it behind or ahead of the
commits) and checks that pushes and ``latest`` still give what a listing gives
(docs/design.md, "Scale: indexes and hints").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelshelf import Registry
from modelshelf._cli import cli
from modelshelf._stores import OVERWRITE
from modelshelf._versions import _catalog
from modelshelf.layout import version_head_key


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="tester")


def head_says(registry: Registry, name: str = "m") -> str | None:
    import json

    obj = registry.store.get(version_head_key(name))
    assert obj is not None
    return str(json.loads(obj.data)["version"])


def test_a_push_raises_the_head_and_latest_follows_it(registry: Registry) -> None:
    for i in range(3):
        registry.push("m", {"w": i}, bump="minor" if i else None)
    assert registry.versions("m") == ["1.0.0", "1.1.0", "1.2.0"]
    assert head_says(registry) == "1.2.0", "the head names the newest version"
    assert str(registry.resolve("m")) == "m:1.2.0"
    registry.push("m", {"w": "backport"}, version="1.1.1")
    assert head_says(registry) == "1.2.0", "a version below the head leaves it alone"
    assert str(registry.resolve("m:latest")) == "m:1.2.0"


@pytest.mark.parametrize(
    "damage", ["missing", "garbage", "not-a-version", "behind", "ahead-uncommitted"]
)
def test_a_broken_head_costs_a_listing_not_a_wrong_version(registry: Registry, damage: str) -> None:
    for i in range(4):
        registry.push("m", {"w": i}, bump="minor" if i else None)  # 1.0.0 .. 1.3.0
    key = version_head_key("m")
    if damage == "missing":
        registry.store.delete(key)
    elif damage == "garbage":
        registry.store.put(key, b"\xff{", mode=OVERWRITE)
    elif damage == "not-a-version":
        registry.store.put(key, b'{"version": "../../x"}', mode=OVERWRITE)
    elif damage == "behind":
        # As a writer that could not claim the head leaves it (or an older modelshelf).
        registry.store.put(key, b'{"version": "1.1.0"}', mode=OVERWRITE)
    else:
        # A push claimed 1.4.0 and died before committing it.
        registry.store.put(key, b'{"version": "1.4.0"}', mode=OVERWRITE)
    assert str(registry.resolve("m")) == "m:1.3.0", f"latest with a {damage} head"
    pushed = registry.push("m", {"w": "next"}, bump="minor")
    assert pushed.version == "1.4.0", f"a bump with a {damage} head must follow 1.3.0"
    assert registry.versions("m")[-1] == "1.4.0"
    assert head_says(registry) == "1.4.0", "the push repaired the head"
    assert registry.push("m", {"w": "again"}, bump="patch").version == "1.4.1"


def test_a_schema_change_is_judged_against_the_true_predecessor(registry: Registry) -> None:
    from modelshelf import SchemaChangeError

    card = {"input_schema": {"x": "float"}}
    registry.push("m", {"w": 1}, card=card)
    registry.push("m", {"w": 2}, card=card, bump="minor")
    registry.store.put(version_head_key("m"), b'{"version": "1.0.0"}', mode=OVERWRITE)
    with pytest.raises(SchemaChangeError):
        registry.push("m", {"w": 3}, card={"input_schema": {"x": "int"}}, bump="minor")
    assert registry.versions("m") == ["1.0.0", "1.1.0"], "nothing committed"


def test_an_explicit_version_that_exists_is_found_without_a_listing(
    registry: Registry,
) -> None:
    from modelshelf import VersionExistsError

    registry.push("m", {"w": 1}, version="1.0.0")
    assert registry.push("m", {"w": 1}, version="1.0.0").version == "1.0.0", "identical push"
    with pytest.raises(VersionExistsError):
        registry.push("m", {"w": 2}, version="1.0.0")


def test_models_and_their_summaries(registry: Registry, monkeypatch: Any) -> None:
    for name, count in (("a", 2), ("b", 5), ("c", 1)):
        for i in range(count):
            registry.push(name, {"w": i}, bump="minor" if i else None)
    registry.store.put("d/versions/not-a-version.json", b"{}")  # a stray object only
    registry.store.put("_doctor/x/y", b"scratch")
    assert registry.models() == ["a", "b", "c"]
    monkeypatch.setattr(_catalog, "_PAGE", 3)  # b has more than a page: listed further
    summaries = {(s.name, s.versions, s.latest) for s in _catalog.model_summaries(registry.store)}
    assert summaries == {("a", 2, "1.1.0"), ("b", 5, "1.4.0"), ("c", 1, "1.0.0")}


def test_list_name_shows_the_newest_versions_by_default(registry: Registry) -> None:
    import json

    for i in range(25):
        registry.push("m", {"w": i}, bump="minor" if i else None)
    runner = CliRunner()
    base = ["--registry", registry.uri, "list", "m", "--json"]
    shown = json.loads(runner.invoke(cli, base).output)
    assert [r["version"] for r in shown] == [f"1.{i}.0" for i in range(5, 25)], "newest 20"
    shown = json.loads(runner.invoke(cli, [*base, "--last", "3"]).output)
    assert [r["version"] for r in shown] == ["1.22.0", "1.23.0", "1.24.0"]
    shown = json.loads(runner.invoke(cli, [*base, "--all"]).output)
    assert len(shown) == 25, "--all shows every version"
    text = runner.invoke(cli, ["--registry", registry.uri, "list", "m"]).output
    assert "the newest 20 versions" in text, text


def test_a_higher_major_written_around_the_head_is_seen(registry: Registry) -> None:
    for i in range(3):
        registry.push("m", {"w": i}, bump="minor" if i else None)
    # Copied in by hand (not through a push, so the head was not raised).
    source = registry.store.get("m/versions/1.2.0.json")
    assert source is not None
    registry.store.put("m/versions/10.0.0.json", source.data.replace(b"1.2.0", b"10.0.0"))
    assert str(registry.resolve("m")) == "m:10.0.0", "a MAJOR above the head wins"
    assert registry.push("m", {"w": "x"}, bump="minor").version == "10.1.0"


@pytest.mark.parametrize("damage", ["none", "old-format", "uncommitted-claim", "bad-entry"])
def test_newest_versions_from_the_head_match_the_listing(registry: Registry, damage: str) -> None:
    import json

    from modelshelf._versions import newest_versions

    for i in range(8):
        registry.push("m", {"w": i}, bump="minor" if i else None)  # 1.0.0 .. 1.7.0
    registry.push("m", {"w": "fix"}, version="1.6.1")
    key = version_head_key("m")
    head = registry.store.get(key)
    assert head is not None
    data = json.loads(head.data)
    if damage == "old-format":
        data.pop("recent")  # as the first release of the head wrote it
    elif damage == "uncommitted-claim":
        data["version"] = "1.8.0"
        data["recent"] = ["1.8.0", *data["recent"]]  # claimed by a push that died
    elif damage == "bad-entry":
        data["recent"] = ["1.7.0", "not a version"]
    registry.store.put(key, json.dumps(data).encode(), mode=OVERWRITE)
    expected = registry.versions("m")[-4:]
    assert expected == ["1.5.0", "1.6.0", "1.6.1", "1.7.0"]
    got = newest_versions(registry.store, "m", 4)
    assert got in (expected, None), f"{damage}: {got}"
    runner = CliRunner()
    shown = json.loads(
        runner.invoke(
            cli, ["--registry", registry.uri, "list", "m", "--last", "4", "--json"]
        ).output
    )
    assert [r["version"] for r in shown] == expected, f"list with a {damage} head"
