"""The bad-input corpus: every case raises its documented error, exit code, and writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import pytest
from click.testing import CliRunner

import modelshelf
from modelshelf import Registry
from modelshelf._cli import cli

CORPUS = Path(__file__).parent / "bad_inputs"


def load_cases() -> list[Any]:
    cases = []
    for path in sorted(CORPUS.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            cases.append(pytest.param(case, id=f"{path.stem}-{case['id']}"))
    return cases


CASES = load_cases()


def test_the_corpus_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) >= 50, f"the corpus should hold at least 50 cases, it has {len(ids)}"
    assert len(ids) == len(set(ids)), "duplicate case ids"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seed")
    registry = Registry(root / "reg", cache_dir=root / "cache", user="seed")
    schema = {"type": "object", "properties": {"sepal_length": {"type": "number"}}}
    registry.push("iris", {"w": 0}, version="1.0.0", card={"input_schema": schema})
    registry.push("iris", {"w": 1}, version="1.1.0", card={"input_schema": schema})
    registry.push("iris", {"w": 2}, version="2.0.0", card={"input_schema": {"type": "array"}})
    registry.set_active("iris", "1.0.0")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".modelshelf-" not in str(p)
    }


def _make_tree(src: Path, entries: list[dict[str, str]], tmp: Path) -> None:
    """A push source folder: ``{"path", "kind": file|link|fifo, "target"}``; ``path_hex``
    names an entry by raw bytes (names that are not UTF-8)."""
    if not entries:
        return
    src.mkdir()
    (src / "weights.bin").write_bytes(b"weights")
    (tmp / "outside.txt").write_text("secret")
    for entry in entries:
        raw = (
            os.fsencode(src)
            + b"/"
            + (bytes.fromhex(entry["path_hex"]) if "path_hex" in entry else entry["path"].encode())
        )
        path = Path(os.fsdecode(raw))
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry["kind"] == "file":
            path.write_bytes(b"x")
        elif entry["kind"] == "link":
            path.symlink_to(entry["target"].replace("{tmp}", str(tmp)))
        elif entry["kind"] == "fifo":
            os.mkfifo(path)
        else:
            raise AssertionError(f"unknown tree entry kind {entry['kind']!r}")


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: dict[str, Any], seeded: Path, tmp_path: Path) -> None:
    import shutil

    reg = tmp_path / "reg"
    shutil.copytree(seeded / "reg", reg)
    model = tmp_path / "model.joblib"
    joblib.dump({"w": 99}, model)
    (tmp_path / "empty").mkdir()
    card = tmp_path / "card.json"
    if "card_text" in case:
        card.write_text(case["card_text"], encoding="utf-8")
    if "card_bytes_hex" in case:
        card.write_bytes(bytes.fromhex(case["card_bytes_hex"]))
    if "aliases_json" in case:
        (reg / "iris" / "aliases.json").write_text(case["aliases_json"], encoding="utf-8")
    if "collect_version" in case:
        # gc collected this version's blobs: its manifest stays, its blobs are gone
        stored = reg / "iris" / "versions" / f"{case['collect_version']}.json"
        manifest = json.loads(stored.read_text(encoding="utf-8"))
        for entry in manifest["files"]:
            (reg / "iris" / "blobs" / "sha256" / entry["sha256"]).unlink()
    for key, text in case.get("objects", {}).items():
        (reg / key).parent.mkdir(parents=True, exist_ok=True)
        (reg / key).write_text(text, encoding="utf-8")
    _make_tree(tmp_path / "src", case.get("tree", []), tmp_path)
    before = snapshot(reg)

    if "event" in case:
        from modelshelf_promoter.handler import lambda_handler

        event = json.loads(json.dumps(case["event"]).replace("{registry}", reg.as_uri()))
        error = getattr(modelshelf, case["error"])
        with pytest.raises(error) as info:
            lambda_handler(event, None)
        assert info.value.exit_code == case["exit"], "the documented exit code is stale"
    else:
        argv = [
            arg.replace("{model}", str(model))
            .replace("{card}", str(card))
            .replace("{tmp}", str(tmp_path))
            for arg in case["argv"]
        ]
        result = CliRunner().invoke(
            cli, ["--registry", str(reg), *argv], env={"MODELSHELF_CACHE": str(tmp_path / "c")}
        )
        assert result.exit_code == case["exit"], (
            f"{argv} exited {result.exit_code}, documented {case['exit']}: {result.output}"
        )
        if case["error"] == "UsageError":
            assert "Usage:" in result.output or "Error:" in result.output
        else:
            assert getattr(modelshelf, case["error"]).exit_code == case["exit"], (
                f"{case['error']}.exit_code differs from the documented {case['exit']}"
            )
            lines = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, f"expected one 'error:' line, got: {result.output!r}"
            assert "Traceback" not in result.output
    assert snapshot(reg) == before, "a refused input changed the store"
