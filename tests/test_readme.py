"""Every snippet of the README runs, in order, on a fresh registry, as a new user would run it.

``python`` blocks run in one namespace; each ``$ modelshelf ...`` line of a ``console`` block
(and each ``modelshelf ...`` line of a ``bash`` block) runs through the CLI and must exit 0;
the output lines the README shows under a command must match what it printed (sizes and
registry URIs may differ). The few lines that are not run say why in ``NOT_RUN``.

The folder holds what the README's prose says the reader has: ``model.joblib`` and
``model.skops`` (a trained iris classifier), ``card.json`` (a model card), and the public
key ``alice.pub.pem`` of an approver with her private key, and an HSM's key pair
(``hsm.pem``). S3 URIs in the README reach moto's in-process mock, where the bucket
``ml-models`` exists. ``> FILE`` sends a command's output to a file; ``&&`` chains
commands; ``model_signing`` is the stock OpenSSF tool, run as a process.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import joblib
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from modelshelf._cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"

NOT_RUN = {
    'pip install -e ".[test]"': "installs the package this test runs in",
    "python examples/iris.py": "tests/cli/test_cli.py runs the quickstart (twice)",
    "pytest": "the test run itself",
    'pytest -m "not slow"': "the test run itself",
    "uvicorn examples.serve:app --host 127.0.0.1 --port 8000": (
        "a server that runs until stopped; tests/system/test_serve_example.py runs it"
    ),
    "modelshelf promoter run --every 300": (
        "loops until stopped; tests/promoter/test_promoter_run.py runs --every"
    ),
    "modelshelf ui": "a web server that runs until stopped; tests/views/ test its pages",
}

_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_SIZE = re.escape("163.9 KiB")


@dataclass
class Step:
    """One thing to run: a Python block, or one CLI line with the output the README shows."""

    kind: str  # "python" or "cli"
    text: str
    expected: list[str] = field(default_factory=list)


def readme_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    for match in _FENCE.finditer(text):
        lang, body = match.group("lang"), match.group("body")
        if lang == "python":
            steps.append(Step("python", body))
        elif lang in ("console", "bash"):
            for line in body.splitlines():
                if not line.strip():
                    continue
                if lang == "console" and not line.startswith("$ "):
                    assert steps and steps[-1].kind == "cli", f"output before a command: {line}"
                    steps[-1].expected.append(line)
                    continue
                steps.append(Step("cli", line.removeprefix("$ ").strip()))
        elif lang == "":
            assert body.startswith("{model}/"), (
                f"an unlabelled block that is not the layout: {body}"
            )
        else:
            raise AssertionError(f"a README block in {lang!r}: say how this test runs it")
    return steps


def _pattern(line: str) -> re.Pattern[str]:
    """The README's sample output, with sizes and registry URIs left open."""
    pattern = re.escape(line.strip())
    pattern = re.sub(r"\d+(?:\\\.\d+)?\\ (?:B|KiB|MiB|GiB)", r"[\\d.]+ [KMG]?i?B", pattern)
    pattern = re.sub(r"file:///\S+?(?=\\ |\)|$)", r"\\S+", pattern)
    return re.compile(pattern)


@pytest.fixture
def newcomer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from moto import mock_aws

    for name in ("MODELSHELF_REGISTRY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", "alice@laptop")
    monkeypatch.chdir(tmp_path)
    data = load_iris()
    species = [data.target_names[i] for i in data.target]
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(data.data, species)
    joblib.dump(model, tmp_path / "model.joblib")
    import skops.io

    skops.io.dump(model, tmp_path / "model.skops")
    for person in ("alice", "hsm"):
        made = CliRunner().invoke(cli, ["keys", "new", person])
        assert made.exit_code == 0, made.output
    (tmp_path / "card.json").write_text(
        json.dumps({"description": "iris species from four measurements", "author": "alice"})
    )
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="ml-models")
        yield tmp_path


@pytest.mark.slow
def test_the_readme_runs_top_to_bottom_on_a_fresh_registry(newcomer: Path) -> None:
    steps = readme_steps(README.read_text())
    commands = {s.text.split("#", 1)[0].strip() for s in steps if s.kind == "cli"}
    assert set(NOT_RUN) <= commands, (
        f"NOT_RUN names lines the README lost: {set(NOT_RUN) - commands}"
    )
    assert sum(s.kind == "python" for s in steps) >= 3, "the README's Python blocks went missing"
    namespace: dict[str, Any] = {"__name__": "readme"}
    ran = 0
    for number, step in enumerate(steps, 1):
        if step.kind == "python":
            try:
                exec(compile(step.text, f"README python block {number}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(
                    f"README step {number} (python) raised {type(exc).__name__}: {exc}\n{step.text}"
                ) from exc
            ran += 1
            continue
        command = step.text.split("  #", 1)[0].strip()
        if command.split("#", 1)[0].strip() in NOT_RUN:
            continue
        stdout = ""
        for part in _chain(step.text):
            stdout = _run_shell_words(number, step.text, part)
        printed = [line.strip() for line in stdout.splitlines()]
        for line in step.expected:
            assert any(_pattern(line).fullmatch(p) for p in printed), (
                f"README step {number} `{step.text}` shows {line!r}; it printed:\n{stdout}"
            )
        ran += 1
    assert ran >= 25, f"only {ran} README steps ran"


@pytest.mark.slow
def _chain(line: str) -> list[list[str]]:
    """A command line split at ``&&`` into word lists (``#`` starts a comment)."""
    words = shlex.split(line, comments=True)
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def _run_shell_words(number: int, line: str, words: list[str]) -> str:
    """Run one command of a README line; returns its stdout (also written to ``> FILE``)."""
    target = None
    if ">" in words:
        at = words.index(">")
        words, target = words[:at], words[at + 1]
    if words[0] == "modelshelf":
        result = CliRunner().invoke(cli, words[1:])
        assert result.exit_code == 0, (
            f"README step {number} `{line}` exited {result.exit_code}: {result.output}"
        )
        stdout = result.stdout
    elif words[0] == "model_signing":
        tool = shutil.which("model_signing", path=str(Path(sys.executable).parent))
        assert tool is not None, "the model_signing tool (trust extra) is not installed"
        done = subprocess.run([tool, *words[1:]], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"README step {number} `{line}` failed: {done.stderr}"
        stdout = done.stdout
    else:
        raise AssertionError(
            f"README step {number} runs {words[0]!r}: run it here or list it in NOT_RUN"
        )
    if target is not None:
        Path(target).write_text(stdout)
    return stdout


def test_the_readme_python_api_snippet_runs_after_the_quickstart(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart leaves iris 1.0.0 and 1.1.0 with its card; the API snippet goes on."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "iris_example", README.parent / "examples" / "iris.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main()
    (api,) = [s for s in readme_steps(README.read_text()) if 'bump="minor")' in s.text]
    namespace: dict[str, Any] = {}
    exec(compile(api.text, "README Python API block", "exec"), namespace)
    assert namespace["v"].version == "1.2.0", f"the snippet pushed {namespace['v'].ref}"
