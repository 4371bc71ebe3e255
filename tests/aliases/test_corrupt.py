"""Corrupt or forged stored objects stay local: one clear error, and the model keeps working.

Covers docs/design.md invariant 3 (unsound claimed records are superseded, never installed)
and "Reading stored objects" (manifests and records checked against their keys).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelshelf import CorruptObjectError, InvalidVersionError, Registry
from modelshelf._cli import cli
from modelshelf.layout import aliases_key, history_key, manifest_key
from tests.support.registries import make_registry

DIGEST = "ab" * 32


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = make_registry(tmp_path)
    registry.set_active("iris", "1.0.0", reason="first")
    registry.start_canary("iris", "1.1.0", 0.1)
    registry.promote("iris")  # generation 3, active 1.1.0; rollback goes to 1.0.0
    return registry


def _root(registry: Registry) -> Path:
    return Path(registry.store.root)  # type: ignore[attr-defined]


def _write(registry: Registry, key: str, data: bytes) -> None:
    path = _root(registry) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _run(registry: Registry, tmp_path: Path, *argv: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["--registry", str(_root(registry)), *argv],
        env={"MODELSHELF_CACHE": str(tmp_path / "cli-cache")},
    )


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _manifest(registry: Registry, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_root(registry) / manifest_key("iris", version)).read_text())
    return data


# --- manifests -------------------------------------------------------------------------


def _edits() -> list[Any]:
    def name(m: dict[str, Any]) -> None:
        m["name"] = "churn"

    def version(m: dict[str, Any]) -> None:
        m["version"] = "1.3.0"

    def card_version(m: dict[str, Any]) -> None:
        m["card"]["version"] = "9.9.9"

    def upper_digest(m: dict[str, Any]) -> None:
        m["files"][0]["sha256"] = m["files"][0]["sha256"].upper()

    def short_digest(m: dict[str, Any]) -> None:
        m["files"][0]["sha256"] = "abc"

    def duplicate(m: dict[str, Any]) -> None:
        m["files"].append(dict(m["files"][0]))

    def file_and_folder(m: dict[str, Any]) -> None:
        m["files"].append({**m["files"][0], "path": m["files"][0]["path"] + "/inner"})

    def unsafe(m: dict[str, Any]) -> None:
        m["files"][0]["path"] = "../../etc/cron.d/x"

    def absolute(m: dict[str, Any]) -> None:
        m["files"][0]["path"] = "/etc/passwd"

    def no_files(m: dict[str, Any]) -> None:
        del m["files"]

    return [
        pytest.param(f, id=f.__name__)
        for f in (
            name,
            version,
            card_version,
            upper_digest,
            short_digest,
            duplicate,
            file_and_folder,
            unsafe,
            absolute,
            no_files,
        )
    ]


@pytest.mark.parametrize("edit", _edits())
def test_a_manifest_that_does_not_match_its_key_is_one_corrupt_object_error(
    registry: Registry, tmp_path: Path, edit: Any
) -> None:
    data = _manifest(registry, "1.2.0")
    edit(data)
    _write(registry, manifest_key("iris", "1.2.0"), json.dumps(data).encode())
    with pytest.raises(CorruptObjectError, match="iris/versions/1.2.0.json"):
        registry.get("iris:1.2.0")
    result = _run(registry, tmp_path, "show", "iris:1.2.0")
    assert result.exit_code == 51, f"exit {result.exit_code}: {result.output}"
    assert len(_errors(result.output)) == 1 and "Traceback" not in result.output
    assert "validation error" not in result.output, f"a pydantic dump: {result.output}"


def test_one_bad_manifest_does_not_wedge_the_model(registry: Registry, tmp_path: Path) -> None:
    blob = _manifest(registry, "1.3.0")["files"][0]["sha256"]
    _write(registry, manifest_key("iris", "1.3.0"), b'{"truncated": ' + blob.encode())

    listed = _run(registry, tmp_path, "list", "iris")
    assert listed.exit_code == 0, listed.output
    assert "corrupt" in listed.output and "1.2.0" in listed.output, listed.output
    assert "warning: skipped iris:1.3.0" in listed.output, listed.output

    as_json = _run(registry, tmp_path, "list", "iris", "--json")
    rows = json.loads(as_json.stdout)
    assert {"name": "iris", "version": "1.3.0", "corrupt": True} in rows, rows

    shown = _run(registry, tmp_path, "show", "iris:1.2.0")
    assert shown.exit_code == 0, shown.output

    gc = _run(registry, tmp_path, "gc", "iris", "--keep-last", "0", "--yes", "--json")
    assert gc.exit_code == 0, gc.output
    plan = json.loads(gc.stdout)
    assert plan["corrupt_versions"] == ["1.3.0"], plan
    blob_file = _root(registry) / "iris" / "blobs" / "sha256" / blob
    assert blob_file.exists(), "gc deleted a blob a corrupt manifest may still need"

    model = tmp_path / "m.bin"
    model.write_bytes(b"retrained")
    pushed = _run(registry, tmp_path, "push", "iris", str(model), "--bump", "minor")
    assert pushed.exit_code == 0, pushed.output
    # 2.0.0 is the highest version: a minor bump over it is 2.1.0
    assert registry.versions("iris")[-1] == "2.1.0", registry.versions("iris")


def test_show_of_the_latest_skips_a_corrupt_newest_manifest(
    registry: Registry, tmp_path: Path
) -> None:
    _write(registry, manifest_key("iris", "2.0.0"), b"\x00garbage")
    result = _run(registry, tmp_path, "show", "iris")
    assert result.exit_code == 0, result.output
    assert "iris:1.3.0" in result.output and "warning: skipped the latest" in result.output


def test_a_bump_never_leaves_the_version_grammar(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    registry.push("iris", model, version="999999999.999999999.999999999")
    for bump in ("major", "minor", "patch"):
        with pytest.raises(InvalidVersionError, match="outside MAJOR.MINOR.PATCH"):
            registry.push("iris", model, bump=bump, card={"description": bump})
    assert registry.versions("iris") == ["999999999.999999999.999999999"]


# --- history records -------------------------------------------------------------------


def test_a_corrupt_record_in_the_middle_is_skipped_and_said(
    registry: Registry, tmp_path: Path
) -> None:
    _write(registry, history_key("iris", 2), b'{"generation": 2, "state": ')
    history = _run(registry, tmp_path, "history", "iris")
    assert history.exit_code == 0, history.output
    assert "warning: skipped" in history.output and "000000000002" in history.output
    assert [r.generation for r in registry.history("iris")] == [1, 3]
    served = _run(registry, tmp_path, "served-at", "iris", "2030-01-01T00:00:00Z")
    assert served.exit_code == 0, served.output
    gc = _run(registry, tmp_path, "gc", "iris", "--keep-last", "0", "--json")
    assert gc.exit_code == 0, gc.output
    # 1.1.0 was canary in the unreadable record 2: record 3's previous still names it.
    assert "1.1.0" in json.loads(gc.stdout)["protected_versions"], gc.stdout
    rolled = _run(registry, tmp_path, "rollback", "iris")
    assert rolled.exit_code == 0, rolled.output
    assert registry.aliases("iris").active == "1.0.0"


def test_a_record_whose_generation_differs_from_its_key_is_corrupt(registry: Registry) -> None:
    record = json.loads((_root(registry) / history_key("iris", 1)).read_text())
    _write(registry, history_key("iris", 2), json.dumps(record).encode())
    assert [r.generation for r in registry.history("iris")] == [1, 3]


@pytest.mark.parametrize("claim", ["garbage", "uncommitted", "wrong-previous", "wrong-key"])
def test_an_unsound_claimed_record_cannot_block_an_emergency_rollback(
    registry: Registry, tmp_path: Path, claim: str
) -> None:
    current = registry.aliases("iris")
    assert current.generation == 3
    last = json.loads((_root(registry) / history_key("iris", 3)).read_text())
    forged = json.loads(json.dumps(last))
    forged.update(generation=4, txn="forged")
    forged["previous"] = last["state"]
    forged["state"] = {**last["state"], "generation": 4, "active": "1.3.0"}
    if claim == "garbage":
        data = b"\xff\xfe not a record"
    elif claim == "uncommitted":
        forged["state"]["active"] = "9.9.9"
        data = json.dumps(forged).encode()
    elif claim == "wrong-previous":
        forged["previous"]["generation"] = 1
        data = json.dumps(forged).encode()
    else:
        forged["generation"] = 5
        data = json.dumps(forged).encode()
    _write(registry, history_key("iris", 4), data)

    result = _run(registry, tmp_path, "rollback", "iris", "--reason", "emergency")
    assert result.exit_code == 0, result.output
    assert "superseded" in result.output, f"the supersession must be said: {result.output}"
    state = registry.aliases("iris")
    assert (state.active, state.generation) == ("1.0.0", 5), f"{state}"
    record = registry.history("iris")[-1]
    assert record.generation == 5 and record.reason == "emergency"
    assert [s.generation for s in record.supersedes] == [4], record.supersedes
    assert record.previous is not None and record.previous.generation == 3
    assert (_root(registry) / history_key("iris", 4)).read_bytes() == data, "a record rewritten"
    assert 4 not in [r.generation for r in registry.history("iris")], "a superseded record shown"


def test_a_forged_claim_naming_an_uncommitted_version_is_never_installed(
    registry: Registry,
) -> None:
    last = json.loads((_root(registry) / history_key("iris", 3)).read_text())
    forged = {
        **last,
        "generation": 4,
        "previous": last["state"],
        "state": {**last["state"], "generation": 4, "active": "6.6.6"},
    }
    _write(registry, history_key("iris", 4), json.dumps(forged).encode())
    registry.start_canary("iris", "1.2.0", 0.1)
    seen = registry.aliases("iris")
    assert seen.active == "1.1.0" and seen.canary == "1.2.0", f"{seen}"
    on_disk = json.loads((_root(registry) / aliases_key("iris")).read_text())
    assert on_disk["active"] != "6.6.6"


def test_a_sound_claimed_record_is_still_rolled_forward(registry: Registry) -> None:
    last = json.loads((_root(registry) / history_key("iris", 3)).read_text())
    crashed = {
        **last,
        "generation": 4,
        "txn": "crashed-writer",
        "previous": last["state"],
        "state": {**last["state"], "generation": 4, "active": "1.2.0"},
    }
    _write(registry, history_key("iris", 4), json.dumps(crashed).encode())
    registry.start_canary("iris", "1.3.0", 0.2)
    state = registry.aliases("iris")
    assert (state.active, state.canary, state.generation) == ("1.2.0", "1.3.0", 5)
    assert registry.history("iris")[-1].supersedes == []


# --- unknown fields of a hand-edited aliases object ------------------------------------


def test_unknown_fields_of_a_hand_edited_aliases_object_are_not_copied_forward(
    registry: Registry,
) -> None:
    path = _root(registry) / aliases_key("iris")
    data = json.loads(path.read_text())
    data["note"] = "x" * 10_000
    path.write_text(json.dumps(data))
    registry.start_canary("iris", "1.2.0", 0.1)
    registry.set_ratio("iris", 0.2)
    for record in registry.history("iris")[-2:]:
        assert "note" not in record.state.model_dump(), f"record {record.generation} copied it"
    assert "note" not in json.loads(path.read_text()), "aliases.json kept the unknown field"
