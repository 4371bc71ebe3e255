"""User data is printed literally by every command: never read as rich markup or emoji codes.

Square brackets are rich markup (``[bold]``, ``[/docs]`` closes a tag that was never opened and
raises ``MarkupError``) and ``:smile:`` an emoji code. Card fields, file names, users, reasons
and paths are the user's, so each must come out exactly as it went in, with the right exit code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import joblib
import pytest
from click.testing import CliRunner, Result

from modelshelf import Registry
from modelshelf._cli import cli

USER = "ci[/bot] :smile:"
DESCRIPTION = "see [/docs] for details"
AUTHOR = "[team]"
SCHEMA_TEXT = "[sepal_length, sepal_width, petal_length, petal_width]"
FILE = "weights[v2].joblib"
REASON = "[bold]retrained[/bold] on [red]May[/] data :rocket:"
LIMITATION = "[i]three[/i] species only"
OUT = "out[/x]"

CARD: dict[str, Any] = {
    "description": DESCRIPTION,
    "author": AUTHOR,
    "framework": "sklearn [1.5]",
    "input_schema": {"type": "array", "description": SCHEMA_TEXT},
    "output_schema": {"type": "string"},
    "limitations": [LIMITATION],
    "team": "[ml-platform]",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHELF_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", USER)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    joblib.dump({"weights": [1, 2, 3]}, tmp_path / "model" / FILE)
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    return tmp_path


COVERED: set[str] = set()


def run(*args: str, code: int = 0, literal: tuple[str, ...] = ()) -> Result:
    """Run one command; check its exit code and that each literal string is in its output."""
    path = []
    group: click.Command = cli
    for word in args:
        if isinstance(group, click.Group) and word in group.commands:
            group = group.commands[word]
            path.append(word)
    COVERED.add(" ".join(path))
    result = CliRunner().invoke(cli, list(args))
    shown = f"modelshelf {' '.join(args)} -> {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert result.exit_code == code, f"exit code {result.exit_code}, wanted {code}: {shown}"
    for text in literal:
        assert text in result.output, f"{text!r} not printed literally: {shown}"
    return result


def every_command(group: click.Group, prefix: str = "") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= every_command(command, f"{full} ")
        else:
            found.add(full)
    return found


def test_every_command_prints_user_data_literally(home: Path) -> None:
    COVERED.clear()
    run("push", "iris", "model", "--card", "card.json", literal=("pushed iris:1.0.0",))
    run("push", "iris", "model", "--card", "card.json", "--version", "1.0.0", literal=(USER,))
    run("push", "iris", f"model/{FILE}", "--bump", "minor", literal=("iris:1.1.0",))
    run("list", literal=("iris",))
    run("list", "iris", literal=(USER,))
    run(
        "show",
        "iris:1.0.0",
        literal=(DESCRIPTION, AUTHOR, SCHEMA_TEXT, FILE, USER, LIMITATION, "[ml-platform]"),
    )
    run("pull", "iris:1.0.0", "-o", OUT, literal=(OUT,))
    assert (home / OUT / FILE).is_file(), "pull -o with brackets must write into that folder"
    run("verify", "iris:1.0.0", literal=("ok iris:1.0.0",))
    run("card", "schema", literal=('"description"',))

    run("alias", "set", "iris", "1.0.0", "--reason", REASON, literal=(USER, REASON))
    run("alias", "show", "iris", literal=(USER, REASON))
    run("canary", "start", "iris", "1.1.0", "--ratio", "5%", "--reason", REASON, literal=(REASON,))
    run("canary", "ratio", "iris", "0.25", "--reason", REASON, literal=(REASON,))
    run("promoter", "policy", "iris", literal=("min_requests_per_arm",))
    run("promoter", "run", "iris", literal=("iris: hold",))
    run("canary", "abort", "iris", "--reason", REASON, literal=(REASON,))
    run("canary", "start", "iris", "1.1.0", "--ratio", "0.5", literal=(USER,))
    run("promote", "iris", "--reason", REASON, literal=(REASON, USER))
    run("rollback", "iris", "--reason", REASON, literal=(REASON, USER))
    run("history", "iris", literal=(USER, REASON))
    run("served-at", "iris", "now", literal=("1.0.0",))
    run("gc", "iris", "--keep-last", "1", literal=("iris: ",))
    run("doctor", literal=("safe for modelshelf",))

    # The views over versions, canaries and decisions.
    run("compare", "iris", literal=(AUTHOR, "[ml-platform]"))
    run("diff", "iris:1.0.0", "iris:1.1.0", literal=(AUTHOR,))
    run("canary", "start", "iris", "1.1.0", "--ratio", "0.05", "--reason", REASON)
    run("status", "iris", literal=("iris",))
    run("promoter", "decisions", "iris", literal=("hold",))
    run("report", "iris", "-o", "report[1].html", literal=("report[1].html",))
    run("canary", "abort", "iris")

    # Keys, signatures, approvals and the trust policy, last: they change what is trusted.
    run("keys", "new", "ci", "--dir", "keys[1]", literal=("keys[1]",))
    key, public = "keys[1]/ci.pem", "keys[1]/ci.pub.pem"
    run("trust", "add-key", "ops", public, "--reason", REASON, literal=("ops",))
    run("sign", "iris:1.0.0", "--key", key, literal=("iris:1.0.0",))
    run("approve", "iris:1.0.0", "--key", key, "--comment", REASON, literal=("iris:1.0.0",))
    run("show", "iris:1.0.0", literal=("ops", REASON))
    run("trust", "show", literal=("ops",))
    run("trust", "history", literal=(REASON, USER))
    shown = json.loads(run("trust", "show", "--json").stdout)
    (home / "trust[1].json").write_text(json.dumps(shown))
    run("trust", "set", "trust[1].json", "--reason", REASON)
    run("pull", "iris:1.0.0", "-o", "signed[/x]", literal=("signed[/x]",))
    run("trust", "verify-folder", "signed[/x]", literal=("signed[/x]",))

    # The errors carry user data too, and go to stderr as plain text with their exit code.
    failed = run("show", "iris:9.9.9", code=22)
    assert "iris:9.9.9" in failed.stderr
    missing = run("push", "iris", "no[/such]", code=14)
    assert "no[/such]" in missing.stderr, missing.stderr

    # The web app serves pages (HTML-escaped by its templates) until stopped.
    COVERED.add("ui")
    assert every_command(cli) == COVERED, (
        f"commands not run with bracketed data: {sorted(every_command(cli) - COVERED)}"
    )


def test_a_user_with_brackets_can_change_aliases(home: Path) -> None:
    """The change was applied and then the CLI crashed printing who made it (exit 1)."""
    registry = Registry(home / "reg", cache_dir=home / "cache")
    registry.push("iris", {"w": 1}, version="1.0.0")
    result = run("alias", "set", "iris", "1.0.0", literal=(f"by {USER}",))
    assert not result.stderr, result.stderr
    assert registry.aliases("iris").updated_by == USER


def test_pull_into_a_bracketed_folder_exits_0(home: Path) -> None:
    """The files were written and then printing the folder's name failed (exit 1)."""
    registry = Registry(home / "reg", cache_dir=home / "cache")
    registry.push("iris", home / "model", version="1.0.0")
    result = run("pull", "iris", "-o", OUT, literal=(f"into {OUT}",))
    assert not result.stderr, result.stderr
    assert (home / OUT / FILE).is_file()


def test_piped_output_is_not_cut(home: Path) -> None:
    """Out of a terminal rich assumed 80 columns: table cells were folded or cut."""
    long_reason = "retrained on the May data of every region " * 6
    registry = Registry(home / "reg", cache_dir=home / "cache")
    registry.push("iris", home / "model", version="1.0.0", card=CARD)
    registry.set_active("iris", "1.0.0", reason=long_reason.strip())
    history = run("history", "iris").stdout
    assert long_reason.strip() in history, f"history cut the reason:\n{history}"
    listed = run("list", "iris").stdout
    assert USER in listed, f"list cut the user:\n{listed}"
