"""The ``modelshelf`` command line for versions: push, list, show, pull, verify, card schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import modelshelf
from modelshelf import LocalStore, ModelshelfError
from modelshelf._cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a model folder and a card file; the registry in ``reg/``."""
    monkeypatch.setenv("MODELSHELF_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", "cli-tester")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model" / "sub").mkdir(parents=True)
    (tmp_path / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "model" / "sub" / "config.json").write_text('{"depth": 3}')
    write_card(tmp_path / "card.json")
    return tmp_path


def write_card(path: Path, **overrides: Any) -> Path:
    card = {
        "description": "iris species from flower measurements",
        "author": "alice",
        "framework": "sklearn",
        "algorithm": "RandomForestClassifier",
        "hyperparameters": {"n_estimators": 100},
        "performance": {"accuracy": 0.97},
        "input_schema": {"features": IRIS_FEATURES},
        "output_schema": {"type": "string"},
        "limitations": ["three species only"],
        **overrides,
    }
    path.write_text(json.dumps(card))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"modelshelf {' '.join(args)} failed: {result.output}"
    assert not result.stderr, f"modelshelf {' '.join(args)} wrote to stderr: {result.stderr}"
    return result


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def test_push_list_show_pull_and_verify(home: Path) -> None:
    pushed = ok_json("push", "iris", "model", "--card", "card.json", "--version", "1.0.0")
    assert (pushed["version"], pushed["created"]) == ("1.0.0", True), f"push --json: {pushed}"
    assert sorted(f["path"] for f in pushed["files"]) == ["sub/config.json", "weights.bin"]
    again = ok_json("push", "iris", "model", "--card", "card.json", "--version", "1.0.0")
    assert again["created"] is False and again["created_at"] == pushed["created_at"], (
        "an identical re-push must report the existing version, not a new one"
    )
    assert (
        "already holds"
        in ok("push", "iris", "model", "--card", "card.json", "--version", "1.0.0").stdout
    ), "the text output must say nothing was pushed"
    assert (
        "pushed iris:1.1.0"
        in ok("push", "iris", "model/weights.bin", "--card", "card.json", "--bump", "minor").stdout
    ), "push --bump minor"

    assert ok_json("list") == [{"name": "iris", "versions": 2, "latest": "1.1.0"}], "list --json"
    rows = ok_json("list", "iris")
    assert [(r["version"], r["created_by"], r["files"]) for r in rows] == [
        ("1.0.0", "cli-tester", 2),
        ("1.1.0", "cli-tester", 1),
    ], f"list iris --json: {rows}"
    assert rows[1]["size"] == 256 * 64, "list must give each version's size"
    table = ok("list", "iris").stdout
    assert "1.0.0" in table and "1.1.0" in table and "cli-tester" in table, table

    shown = ok_json("show", "iris:1.0.0")
    assert shown["card"]["author"] == "alice" and shown["card"]["version"] == "1.0.0", shown
    assert shown == ok_json("show", "iris:1.0.0"), "--json output must be stable"
    text = ok("show", "iris").stdout
    for expected in ("iris:1.1.0", "RandomForestClassifier", "sepal_length", "three species only"):
        assert expected in text, f"show must print {expected!r}:\n{text}"

    pulled = ok_json("pull", "iris:1.0.0", "-o", "out")
    assert pulled["dest"] == str((home / "out").resolve()), f"pull --json dest: {pulled}"
    assert (home / "out" / "sub" / "config.json").read_text() == '{"depth": 3}', "pull content"
    assert "pulled iris:1.1.0" in ok("pull", "iris").stdout, "pull without -o"
    assert (home / "iris-1.1.0" / "weights.bin").is_file(), "pull must default to ./NAME-VERSION"

    verified = ok_json("verify", "iris:1.0.0")
    assert verified["ok"] is True and len(verified["files"]) == 2, f"verify --json: {verified}"
    assert "ok iris:1.1.0" in ok("verify", "iris").stdout, "verify text output"
    assert "\x1b" not in ok("pull", "iris", "-o", "again").stdout, "a progress bar in a pipe"


def test_card_schema_prints_the_model_card_json_schema(home: Path) -> None:
    schema = json.loads(ok("card", "schema").stdout)
    fields = set(schema["properties"])
    for name in (
        "name",
        "version",
        "description",
        "created_at",
        "updated_at",
        "author",
        "framework",
        "algorithm",
        "hyperparameters",
        "training_data",
        "performance",
        "input_schema",
        "output_schema",
        "limitations",
    ):
        assert name in fields, f"the card schema lacks {name!r}"
    assert json.loads(ok("card", "schema", "--json").stdout) == schema, "--json changes nothing"
    assert not (home / "reg").exists(), "card schema must not open (create) a registry"


def _tamper(home: Path) -> None:
    store = LocalStore(home / "reg")
    blob = next(i.key for i in store.list("iris/blobs/") if i.size > 1000)
    path = store.root / blob
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


ERRORS: list[tuple[list[str], int, str]] = [
    (["push", "Iris", "model"], 10, "invalid model name"),
    (["push", "iris", "model", "--version", "1.0"], 11, "invalid version '1.0'"),
    (["show", "iris:01.0.0"], 12, "invalid model reference"),
    (["push", "iris", "model", "--card", "broken.json"], 13, "not valid JSON"),
    (["push", "iris", "model", "--card", "bad-field.json"], 13, "performance.accuracy"),
    (["push", "iris", "model", "--card", "no-such-card.json"], 13, "cannot read card file"),
    (["push", "iris", "no-such-dir"], 14, "does not exist"),
    (["show", "rose"], 21, "'rose' has no versions"),
    (["list", "rose"], 21, "'rose' has no versions"),
    (["pull", "iris:9.0.0"], 22, "iris:9.0.0 does not exist"),
    (["push", "iris", "model/weights.bin", "--version", "1.0.0"], 31, "pushed by cli-tester"),
    (["push", "iris", "model", "--card", "new-schema.json"], 40, "MAJOR bump"),
    (["verify", "iris:1.0.0"], 50, "corrupt"),
]


@pytest.mark.parametrize(("args", "code", "words"), ERRORS, ids=[" ".join(a) for a, _, _ in ERRORS])
def test_errors_exit_with_their_code_and_one_line(
    home: Path, args: list[str], code: int, words: str
) -> None:
    ok("push", "iris", "model", "--card", "card.json", "--version", "1.0.0")
    (home / "broken.json").write_text('{"author": ')
    write_card(home / "bad-field.json", performance={"accuracy": 1.7})
    write_card(home / "new-schema.json", input_schema={"features": ["petal_length"]})
    if code == 50:
        _tamper(home)
    before = sorted(i.key for i in LocalStore(home / "reg").list())
    result = run(*args)
    assert result.exit_code == code, f"exit code {result.exit_code}, wanted {code}: {result.output}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {lines}"
    assert words in lines[0], f"the error line must say {words!r}: {lines[0]}"
    assert not result.stdout, f"an error must print nothing on stdout: {result.stdout}"
    assert sorted(i.key for i in LocalStore(home / "reg").list()) == before or code == 50, (
        "a refused command wrote to the registry"
    )


def test_debug_shows_the_traceback_and_keeps_the_exit_code(home: Path) -> None:
    result = run("--debug", "show", "iris:1.0")
    assert result.exit_code == 12, f"--debug changed the exit code: {result.exit_code}"
    assert "Traceback" in result.stderr and "InvalidReferenceError" in result.stderr, (
        f"--debug must print the traceback: {result.stderr}"
    )
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: "), "the error line last"
    plain = run("show", "iris:1.0")
    assert "Traceback" not in plain.stderr, "no traceback without --debug"


def test_usage_errors_exit_2(home: Path) -> None:
    for args in (["push", "iris"], ["push", "iris", "model", "--bump", "huge"], ["nope"]):
        assert run(*args).exit_code == 2, f"modelshelf {' '.join(args)} must be a usage error"


def test_the_registry_comes_from_the_option_then_the_environment_then_the_default(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok("--registry", str(home / "opt"), "push", "iris", "model")
    assert [i["name"] for i in ok_json("--registry", str(home / "opt"), "list")] == ["iris"]
    assert ok_json("list") == [], "--registry must not leak into MODELSHELF_REGISTRY's registry"
    monkeypatch.delenv("MODELSHELF_REGISTRY")
    ok("push", "rose", "model")
    assert LocalStore(home / ".modelshelf").head("rose/versions/1.0.0.json").size > 0, (
        "without option or environment the registry must be ./.modelshelf"
    )
    uri = (home / "env").as_uri()
    monkeypatch.setenv("MODELSHELF_REGISTRY", uri)
    ok("push", "tulip", "model")
    assert [i["name"] for i in ok_json("list")] == ["tulip"], "MODELSHELF_REGISTRY ignored"


def test_the_readme_exit_code_table_matches_the_error_classes() -> None:
    rows = dict(
        (match.group(2), int(match.group(1)))
        for match in re.finditer(r"^\| (\d+) \| `(\w+)`", README.read_text(), re.MULTILINE)
    )
    classes = {
        name: obj.exit_code
        for name in modelshelf._errors.__all__
        if isinstance(obj := getattr(modelshelf._errors, name), type)
        and issubclass(obj, ModelshelfError)
    }
    assert rows == classes, f"README exit codes differ from the classes: {rows} != {classes}"
    codes = list(classes.values())
    assert len(set(codes)) == len(codes), f"two error classes share an exit code: {classes}"
    assert 0 not in codes, "no error may exit 0"


def test_the_console_script_runs_in_a_real_process(home: Path) -> None:
    script = shutil.which("modelshelf", path=str(Path(sys.executable).parent))
    assert script is not None, "the modelshelf console script is not installed"
    pushed = subprocess.run(
        [script, "push", "iris", "model", "--card", "card.json", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pushed.returncode == 0, f"push failed: {pushed.stderr}"
    assert json.loads(pushed.stdout)["version"] == "1.0.0", pushed.stdout
    assert "\x1b" not in pushed.stderr + pushed.stdout, "a progress bar outside a terminal"
    failed = subprocess.run(
        [script, "verify", "iris:2.0.0"], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 22, f"exit code {failed.returncode}: {failed.stderr}"
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, failed.stderr


def test_the_readme_quickstart_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSHELF_REGISTRY", raising=False)
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    example = Path(__file__).resolve().parents[2] / "examples" / "iris.py"
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"examples/iris.py failed:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    assert "pushed iris:1.0.0" in outputs[0] and "pushed iris:1.1.0" in outputs[0], outputs[0]
    assert "kept iris:1.0.0" in outputs[1] and "pushed iris:1.2.0" in outputs[1], outputs[1]
    assert "predicts 'setosa'" in outputs[1], f"the latest model mispredicted: {outputs[1]}"
    script = shutil.which("modelshelf", path=str(Path(sys.executable).parent))
    assert script is not None, "the modelshelf console script is not installed"
    listed = subprocess.run(
        [script, "list", "iris", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    versions = [row["version"] for row in json.loads(listed.stdout)]
    assert versions == ["1.0.0", "1.1.0", "1.2.0"], f"the default registry holds {versions}"
    card = json.loads(
        subprocess.run(
            [script, "show", "iris:1.0.0", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )["card"]
    for field in (
        "author",
        "framework",
        "algorithm",
        "hyperparameters",
        "training_data",
        "performance",
        "input_schema",
        "output_schema",
        "limitations",
    ):
        assert card.get(field), f"the example's card lacks {field}"
    assert set(card["performance"]) >= {
        "accuracy",
        "precision",
        "recall",
        "f1_score",
        "latency_ms",
    }, card["performance"]
