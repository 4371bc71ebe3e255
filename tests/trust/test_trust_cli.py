"""The trust commands: keys new, push --sign-key, sign, approve, trust ..., show, pull."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelshelf import UntrustedVersionError
from modelshelf._cli import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHELF_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSHELF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHELF_USER", "cli-tester")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.safetensors").write_bytes(b"not really tensors")
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}: {result.output}"
    return result


def test_keys_sign_approve_and_show(home: Path) -> None:
    made = json.loads(ok("keys", "new", "ci", "--dir", "keys", "--json").output)
    assert (home / "keys" / "ci.pem").stat().st_mode & 0o777 == 0o600
    assert run("keys", "new", "ci", "--dir", "keys").exit_code == 32  # never overwritten
    ok("keys", "new", "alice", "--dir", "keys")
    ok("trust", "add-key", "ci", "keys/ci.pub.pem", "--reason", "build key")
    ok("trust", "add-key", "alice", "keys/alice.pub.pem", "--approver-only")

    pushed = ok("push", "m", "model", "--sign-key", "keys/ci.pem", "--json")
    assert json.loads(pushed.output)["signatures"][0]["trusted"] is True
    ok("approve", "m:1.0.0", "--key", "keys/alice.pem", "--gate", "promote", "--comment", "fine")
    ok("sign", "m:1.0.0", "--key", "keys/alice.pem")  # alice's signature does not count

    shown = json.loads(ok("show", "m:1.0.0", "--json").output)
    by_signer = {s["signer"]: s for s in shown["signatures"]}
    assert by_signer["ci"]["trusted"] and by_signer["ci"]["key_id"] == made["key_id"]
    assert by_signer["alice"]["valid"] and not by_signer["alice"]["trusted"]
    assert [(a["approver"], a["gate"], a["comment"]) for a in shown["approvals"]] == [
        ("alice", "promote", "fine")
    ]
    text = ok("show", "m:1.0.0").output
    assert "ci" in text and "trusted" in text and "alice" in text and "promote" in text


def test_trust_set_needs_the_current_generation_and_untrusted_pull_exits_81(home: Path) -> None:
    ok("keys", "new", "ci", "--dir", "keys")
    ok("push", "m", "model")  # unsigned
    ok("trust", "add-key", "ci", "keys/ci.pub.pem")
    policy = json.loads(ok("trust", "show", "--json").output)
    assert policy["generation"] == 1
    policy["require_signature"] = True
    (home / "trust.json").write_text(json.dumps(policy))
    ok("trust", "set", "trust.json", "--reason", "require signatures")
    stale = run("trust", "set", "trust.json")
    assert stale.exit_code == 32 and "generation 2 is stored" in stale.output

    refused = run("pull", "m:1.0.0", "-o", "out")
    assert refused.exit_code == UntrustedVersionError.exit_code == 81, refused.output
    assert "not signed" in refused.output and not (home / "out").exists()

    ok("sign", "m:1.0.0", "--key", "keys/ci.pem")
    ok("pull", "m:1.0.0", "-o", "out")
    assert (home / "out" / "model.sig").exists()
    ok("trust", "verify-folder", "out")
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            "out",
            "--signature",
            "out/model.sig",
            "--public_key",
            "keys/ci.pub.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    history = json.loads(ok("trust", "history", "--json").output)
    assert [h["reason"] for h in history] == ["add key ci", "require signatures"]


def test_a_stock_bundle_is_attached_with_its_public_key(home: Path) -> None:
    ok("keys", "new", "hsm", "--dir", "keys")
    ok("push", "m", "model")
    ok("trust", "add-key", "hsm", "keys/hsm.pub.pem")
    # The folder a pull writes (files + card) is what stock model_signing signs.
    ok("pull", "m:1.0.0", "-o", "folder", "--card")
    assert sorted(p.name for p in (home / "folder").iterdir()) == [
        "modelshelf-card.json",
        "weights.safetensors",
    ]
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "sign",
            "key",
            "folder",
            "--private_key",
            "keys/hsm.pem",
            "--signature",
            "stock.sig",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    bad = run("sign", "m:1.0.0", "--bundle", "stock.sig")
    assert bad.exit_code == 2 and "--public-key" in bad.output
    ok("sign", "m:1.0.0", "--bundle", "stock.sig", "--public-key", "keys/hsm.pub.pem")
    shown = json.loads(ok("show", "m:1.0.0", "--json").output)
    assert [(s["signer"], s["trusted"]) for s in shown["signatures"]] == [("hsm", True)]


def test_alias_set_and_canary_start_refuse_with_their_exit_codes(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ci", "alice"):
        ok("keys", "new", name, "--dir", "keys")
    ok("push", "m", "model", "--sign-key", "keys/ci.pem")  # 1.0.0, signed
    (home / "model" / "weights.safetensors").write_bytes(b"retrained")
    ok("push", "m", "model")  # 1.1.0, unsigned
    ok("trust", "add-key", "ci", "keys/ci.pub.pem")
    ok("trust", "add-key", "alice", "keys/alice.pub.pem", "--approver-only")
    policy = json.loads(ok("trust", "show", "--json").output)
    policy["require_signature"] = {"alias": True}
    policy["approvals"] = {"canary": {"required": 1, "keys": ["alice"]}}
    (home / "trust.json").write_text(json.dumps(policy))
    ok("trust", "set", "trust.json")

    ok("alias", "set", "m", "1.0.0")
    refused = run("alias", "set", "m", "1.1.0")
    assert refused.exit_code == 81 and "not signed" in refused.output, refused.output
    refused = run("canary", "start", "m", "1.1.0", "--ratio", "0.1")
    assert refused.exit_code == 81, refused.output
    ok("sign", "m:1.1.0", "--key", "keys/ci.pem")
    gated = run("canary", "start", "m", "1.1.0", "--ratio", "0.1")
    assert gated.exit_code == 83 and "needs 1 approvals" in gated.output, gated.output
    ok("approve", "m:1.1.0", "--gate", "canary", "--key", "keys/alice.pem")
    ok("canary", "start", "m", "1.1.0", "--ratio", "0.1")
    assert json.loads(ok("alias", "show", "m", "--json").output)["aliases"]["canary"] == "1.1.0"
