"""What a new user tripped over following the README: first versions, the article's card,
schemas declared late, readable reasons, missing models and buckets, times, pulls, help."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelshelf import (
    DestinationExistsError,
    InvalidCardError,
    InvalidInputError,
    Registry,
    SchemaChangeError,
)
from modelshelf._cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"

# The model card of the article this project follows, as a user would copy it.
ARTICLE_CARD: dict[str, Any] = {
    "name": "iris-classifier",
    "version": "1.2.0",
    "description": "Random forest classifier for iris species prediction",
    "created_at": "2024-01-15",
    "updated_at": "2024-03-20",
    "author": "data-science-team",
    "framework": "scikit-learn 1.3.0",
    "algorithm": "RandomForestClassifier",
    "hyperparameters": {"n_estimators": 100, "max_depth": 5, "random_state": 42},
    "training_data": {
        "source": "UCI ML Repository",
        "samples": 150,
        "features": 4,
        "date_collected": "1936",
    },
    "performance": {"accuracy": 0.95, "precision": 0.94, "recall": 0.95, "f1_score": 0.94},
    "input_schema": {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 4,
        "maxItems": 4,
        "description": "[sepal_length, sepal_width, petal_length, petal_width]",
    },
    "output_schema": {
        "type": "object",
        "properties": {
            "prediction": {"type": "string"},
            "probabilities": {"type": "array", "items": {"type": "number"}},
        },
    },
    "limitations": ["Only trained on three iris species", "Not validated on field data"],
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHELF_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", "newcomer")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"weights v1")
    (tmp_path / "article.json").write_text(json.dumps(ARTICLE_CARD))
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def registry(home: Path) -> Registry:
    return Registry(home / "reg", cache_dir=home / "cache", user="newcomer")


# -- 2. the first version is 1.0.0 ---------------------------------------------------------


@pytest.mark.parametrize("bump", ["major", "minor", "patch"])
def test_the_first_version_is_1_0_0_whatever_the_bump(home: Path, bump: str) -> None:
    reg = registry(home)
    first = reg.push("iris", {"w": 1}, bump=bump)
    assert first.version == "1.0.0", f"bump={bump!r} on a new model gave {first.version}"
    second = reg.push("iris", {"w": 2}, bump="minor")
    assert second.version == "1.1.0", second.version
    cli_first = run("push", "rose", "model.joblib", "--bump", bump, "--json")
    assert json.loads(cli_first.stdout)["version"] == "1.0.0", cli_first.output
    explicit = reg.push("tulip", {"w": 1}, version="0.1.0")
    assert explicit.version == "0.1.0", "an explicit version is honoured"


def test_push_help_says_what_the_first_version_is() -> None:
    text = " ".join(run("push", "--help").stdout.split())
    assert "first version is 1.0.0" in text and "whatever the bump" in text, text


# -- 4. the article's card ------------------------------------------------------------------


def test_the_article_card_with_another_name_and_version_says_what_to_do(home: Path) -> None:
    result = run("push", "iris", "model.joblib", "--card", "article.json", "--version", "1.0.0")
    assert result.exit_code == InvalidCardError.exit_code, result.output
    line = result.stderr
    for advice in (
        'drop "name" from the card',
        "or push as 'iris-classifier'",
        'drop "version" from the card',
        "--version 1.2.0",
    ):
        assert advice in line, f"the error must say {advice!r}: {line}"
    bumped = run(
        "push", "iris-classifier", "model.joblib", "--card", "article.json", "--bump", "minor"
    )
    assert bumped.exit_code == 13 and "instead of the bump" in bumped.stderr, bumped.output
    assert not (home / "reg").exists() or not registry(home).models(), "a refused push wrote"


def test_the_card_version_is_the_version_and_the_cli_says_so(home: Path) -> None:
    result = run("push", "iris-classifier", "model.joblib", "--card", "article.json")
    assert result.exit_code == 0, result.output
    assert "pushed iris-classifier:1.2.0" in result.stdout, result.stdout
    assert "version from the card" in result.stdout, f"the rule must be visible: {result.stdout}"
    readme = " ".join(README.read_text().split())
    assert "A card that states a `version` asks for exactly that version" in readme, (
        "the README must document what a card's version does"
    )
    shown = run("show", "iris-classifier").stdout
    assert re.search(r"created_at\s+2024-01-15", shown), f"show lacks created_at:\n{shown}"
    assert re.search(r"updated_at\s+\d{4}-", shown), f"show lacks updated_at:\n{shown}"
    assert "[sepal_length, sepal_width, petal_length, petal_width]" in shown, shown


# -- 5. a schema declared where the previous version declared none --------------------------


def test_declaring_a_schema_for_the_first_time_is_no_change(home: Path) -> None:
    reg = registry(home)
    schema = {"features": ["sepal_length", "sepal_width", "petal_length", "petal_width"]}
    reg.push("iris", {"w": 1}, version="1.0.0")
    added = reg.push("iris", {"w": 2}, bump="minor", card={"input_schema": schema})
    assert added.version == "1.1.0", "a first schema needs no MAJOR bump"
    silent = reg.push("iris", {"w": 3}, bump="minor")
    assert silent.version == "1.2.0", "a card that declares no schema makes no claim"
    with pytest.raises(SchemaChangeError, match=r"input_schema \(declared otherwise in 1\.1\.0\)"):
        reg.push("iris", {"w": 4}, bump="minor", card={"input_schema": {"features": ["x"]}})
    again = reg.push("iris", {"w": 5}, bump="minor", card={"input_schema": schema})
    assert again.version == "1.3.0", "the same schema again is no change"
    major = reg.push("iris", {"w": 6}, bump="major", card={"input_schema": {"features": ["x"]}})
    assert major.version == "2.0.0"
    readme = " ".join(README.read_text().split())
    assert "declaring one for the first time is no change" in readme, "README and code agree"


# -- 6. reasons people can read -------------------------------------------------------------

LEGACY = (
    'promoter rollback: {"action":"rollback","active":{"errors":10,"p99_ms":80.1,'
    '"requests":1000},"by":"modelshelf-promoter","canary":{"errors":60,"p99_ms":90.2,'
    '"requests":200},"decision":"fraud/promoter/decisions/x.json","e_value":412.0,'
    '"next_ratio":null,"ratio":0.05,"why":"rollback: canary error rate 30.00% vs active 1.00%"}'
)


def test_history_and_alias_show_print_reasons_readably(home: Path) -> None:
    reg = registry(home)
    reg.push("iris", {"w": 1}, version="1.0.0")
    reg.push("iris", {"w": 2}, version="1.1.0")
    reg.set_active("iris", "1.0.0", reason="first release")
    reg.start_canary("iris", "1.1.0", 0.05, reason="retrained")
    reg.abort_canary("iris", reason=LEGACY)  # as promoters before `details` wrote them
    reg.start_canary("iris", "1.1.0", 0.05)
    reg.set_ratio(
        "iris",
        0.25,
        reason="promoter advance 0.05 -> 0.25: healthy",
        details={"canary": {"requests": 600, "errors": 1}, "decision": "iris/promoter/d.json"},
    )
    history = run("history", "iris")
    assert history.exit_code == 0, history.output
    text = history.stdout
    assert "{" not in text, f"history prints raw JSON:\n{text}"
    assert "promoter rollback: canary error rate 30.00% vs active 1.00%" in text, text
    assert "canary: errors 1, requests 600" in text, f"details not shown:\n{text}"
    assert "decision: iris/promoter/d.json" in text, text
    record = reg.history("iris")[-1]
    assert record.details == {
        "canary": {"requests": 600, "errors": 1},
        "decision": "iris/promoter/d.json",
    }, "details are stored in the history record"
    reg.abort_canary("iris", reason=LEGACY)
    shown = run("alias", "show", "iris").stdout
    assert "{" not in shown and "canary error rate 30.00%" in shown, f"alias show:\n{shown}"
    as_json = json.loads(run("history", "iris", "--json").stdout)["history"]
    assert as_json[4]["details"]["canary"]["requests"] == 600, "--json carries the details"


# -- 7. doctor on a missing bucket; the upload message --------------------------------------


def test_doctor_on_a_missing_bucket_says_so_once(home: Path) -> None:
    from moto import mock_aws

    with mock_aws():
        result = run("--registry", "s3://no-such-bucket/registry", "doctor")
    assert result.exit_code == 70, result.output
    assert "FAIL" not in result.output, f"one answer, not a FAIL per check: {result.output}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].count("does not exist") == 1, lines
    assert "the bucket 'no-such-bucket' does not exist" in lines[0], lines[0]
    assert "aws s3 mb s3://no-such-bucket" in lines[0], f"say how to create it: {lines[0]}"


def test_an_upload_error_names_the_file_it_could_not_upload(home: Path) -> None:
    from moto import mock_aws

    from modelshelf._stores._s3 import S3Store

    (home / "a").write_bytes(b"x" * (6 * 1024 * 1024))  # two parts: the multipart upload
    with mock_aws():
        store = S3Store("s3://no-such-bucket/registry", part_size=5 * 1024 * 1024)
        with pytest.raises(Exception) as caught:
            store.put_file("k", home / "a")
    message = str(caught.value)
    assert "cannot upload a to" not in message, message
    assert f"upload the file {str(home / 'a')!r} to" in message, message


# -- 8. served_at takes ISO strings and now -------------------------------------------------


def test_served_at_accepts_iso_strings_and_now(home: Path) -> None:
    reg = registry(home)
    reg.push("iris", {"w": 1}, version="1.0.0")
    reg.set_active("iris", "1.0.0")
    assert reg.served_at("iris", "2026-05-04T10:15:00Z") == [], "before the first change"
    (now,) = reg.served_at("iris", "now")
    assert (now.version, now.role) == ("1.0.0", "active"), now
    with pytest.raises(InvalidInputError, match="ISO 8601"):
        reg.served_at("iris", "yesterday")
    cli_now = run("served-at", "iris", "now")
    assert cli_now.exit_code == 0 and "1.0.0  active" in cli_now.stdout, cli_now.output
    bad = run("served-at", "iris", "yesterday")
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr, bad.output


# -- 10. plain error texts, pulls that do not clobber, help texts ---------------------------


def test_error_texts_carry_no_pydantic_prefix(home: Path) -> None:
    reg = registry(home)
    reg.push("iris", {"w": 1}, version="1.0.0")
    (home / "reg" / "iris" / "aliases.json").write_text('{"canary": "1.0.0", "generation": 1}')
    result = run("alias", "show", "iris")
    assert result.exit_code == 15 and "a canary needs an active version" in result.stderr
    assert "Value error" not in result.stderr, result.stderr
    card = run("push", "iris", "model.joblib", "--card", "bad.json")
    (home / "bad.json").write_text(json.dumps({"training_data": {"samples": -1}}))
    card = run("push", "iris", "model.joblib", "--card", "bad.json")
    assert card.exit_code == 13 and "Value error" not in card.stderr, card.stderr


def test_pull_refuses_to_replace_different_files_unless_forced(home: Path) -> None:
    reg = registry(home)
    reg.push("iris", home / "model.joblib", version="1.0.0")
    assert run("pull", "iris", "-o", "out").exit_code == 0
    assert run("pull", "iris", "-o", "out").exit_code == 0, "the same files again are fine"
    (home / "out" / "model.joblib").write_bytes(b"my own edits")
    refused = run("pull", "iris", "-o", "out")
    assert refused.exit_code == DestinationExistsError.exit_code == 34, refused.output
    assert "--force" in refused.stderr, refused.stderr
    assert (home / "out" / "model.joblib").read_bytes() == b"my own edits", "it overwrote"
    with pytest.raises(DestinationExistsError):
        reg.pull("iris", home / "out")
    forced = run("pull", "iris", "-o", "out", "--force")
    assert forced.exit_code == 0, forced.output
    assert (home / "out" / "model.joblib").read_bytes() == b"weights v1"


def test_help_texts_name_every_reference_form_and_every_default() -> None:
    show = " ".join(run("show", "--help").stdout.split())
    assert "NAME@active" in show and "NAME@canary" in show, show
    gc = " ".join(run("gc", "--help").stdout.split())
    assert re.search(r"--older-than AGE .*\[default: ", gc), f"--older-than default: {gc}"
    assert "--keep-last INTEGER Always keep the newest N. [default: 10]" in gc, gc


def test_counts_are_pluralised(home: Path) -> None:
    reg = registry(home)
    reg.push("iris", {"w": 1}, version="1.0.0")
    reg.push("iris", {"w": 2}, version="1.1.0")
    text = run("gc", "iris", "--keep-last", "1").stdout
    assert "1 expired version (1.0.0)" in text and "in 1 blob (0 orphans)" in text, text
    assert "0 stale multipart uploads" in text, text


def test_the_progress_bar_gives_sizes_and_speed_in_the_same_units() -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    from modelshelf._cli._app import transfer_columns

    clock = [0.0]
    progress = Progress(*transfer_columns(), get_time=lambda: clock[0])
    task = progress.add_task("push iris", total=100 * 1024 * 1024)
    for _ in range(5):
        clock[0] += 1.0
        progress.advance(task, 10 * 1024 * 1024)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(progress.get_renderable())
    line = out.getvalue()
    assert "50.0/100.0 MiB" in line and "10.0 MiB/s" in line, f"mixed units: {line!r}"
    assert "MB/s" not in line, line


def test_starlette_test_client_imports_without_a_deprecation_warning() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import fastapi.testclient"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (
        f"starlette's TestClient warns on import (install the test extra's httpx2): "
        f"{done.stderr.strip().splitlines()[-1:]}"
    )
