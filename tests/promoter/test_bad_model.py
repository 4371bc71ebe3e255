"""One bad model never stops the promoter: every other model is judged, the bad one reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelshelf import Registry
from modelshelf._cli import cli
from modelshelf.layout import aliases_key, history_key, policy_key
from modelshelf_promoter import Promoter
from modelshelf_promoter.handler import lambda_handler

GOOD = ("alpha", "omega")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Canaries on 'alpha' and 'omega'; 'broken' and 'mangled' each damaged a different way."""
    reg = Registry(tmp_path / "registry", cache_dir=tmp_path / "cache", user="tester")
    for name in (*GOOD, "broken", "mangled"):
        for version in ("1.0.0", "1.1.0"):
            reg.push(name, {"weights": version}, version=version)
        reg.set_active(name, "1.0.0")
        reg.start_canary(name, "1.1.0", 0.05)
    root = Path(reg.store.root)  # type: ignore[attr-defined]
    (root / aliases_key("broken")).write_text('{"active": "1.0.0", "canary": "1.0.0"}')
    (root / policy_key("mangled")).parent.mkdir(parents=True)
    (root / policy_key("mangled")).write_text('{"alpha": "lots"}')
    (root / history_key("alpha", 1)).write_text("not a record")  # skipped, not fatal
    return reg


def _by_model(runs: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["model"]): r for r in runs}


def test_a_run_over_all_models_judges_every_good_one(registry: Registry) -> None:
    runs = {r.model: r for r in Promoter(registry).run()}
    assert set(runs) == {*GOOD, "broken", "mangled"}, f"models judged: {sorted(runs)}"
    for name in GOOD:
        assert runs[name].status == "decided", f"{name}: {runs[name]}"
    assert runs["broken"].status == "error" and runs["broken"].exit_code == 15, runs["broken"]
    assert runs["mangled"].status == "error" and runs["mangled"].exit_code == 16


def test_the_lambda_handler_reports_the_bad_models_and_judges_the_rest(
    registry: Registry,
) -> None:
    result = lambda_handler({"registry": registry.uri}, None)
    by_model = _by_model(result["models"])
    assert {by_model[n]["status"] for n in GOOD} == {"decided"}, json.dumps(result)
    assert by_model["broken"]["error_type"] == "InvalidAliasesError", by_model["broken"]
    assert result["errors"] == 2, f"the summary must count the failed models: {result}"


def test_the_cli_judges_the_rest_and_exits_with_the_failure(
    registry: Registry, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["--registry", registry.uri, "promoter", "run", "--json"],
        env={"MODELSHELF_CACHE": str(tmp_path / "c")},
    )
    assert result.exit_code != 0, "some models failed: the exit status must say so"
    document = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    by_model = _by_model(document["models"])
    assert {by_model[n]["status"] for n in GOOD} == {"decided"}, result.output
    assert by_model["broken"]["status"] == "error", result.output
