"""With "signature required", untrusted versions are refused everywhere, before unpickling.

Three bad versions are tripwire pickles (unpickling one creates a file): one unsigned, one
signed by a key the policy does not trust, one signed by the trusted key whose card was
rewritten afterwards. ``load``, ``pull``, ``ModelServer.start``, a running server's switch
and alias changes refuse each; a fourth tripwire, properly signed, fires on load (so the
wire is live and the refusals above are what kept it intact).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest

from modelshelf import (
    OVERWRITE,
    ApprovalRequiredError,
    PickleNotAllowedError,
    Registry,
    TrustPolicy,
    UntrustedVersionError,
)
from modelshelf._trust import TrustedKey, new_key_pair
from modelshelf.serving import ModelServer


class Tripwire:
    """Unpickling this creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


class Echo:
    """A harmless picklable model."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def predict(self, x: Any) -> str:
        return f"{self.tag}:{x}"


BAD = {"2.0.0": "unsigned", "3.0.0": "untrusted key", "4.0.0": "tampered card"}


@pytest.fixture(params=["local", "moto"])
def world(request: pytest.FixtureRequest, tmp_path: Path, make_backend: Any) -> dict[str, Any]:
    backend = make_backend(request.param)
    keys = {n: new_key_pair(tmp_path / "keys", n) for n in ("ci", "mallory", "alice", "bob")}
    policy = TrustPolicy(
        keys=[
            TrustedKey(name=n, public_key=keys[n].public_path.read_text())
            for n in ("ci", "alice", "bob")
        ],
        signers=["ci"],
        require_signature=True,  # type: ignore[arg-type]
        approvals={"promote": {"required": 2, "keys": ["alice", "bob"]}},  # type: ignore[dict-item]
    )
    # Whoever holds bucket write access, without the pinned policy: pushes, aliases freely.
    writer = Registry(
        backend.uri, cache_dir=tmp_path / "wcache", user="trainer", **backend.store_options
    )
    consumer = Registry(
        backend.uri,
        cache_dir=tmp_path / "ccache",
        user="consumer",
        trust_policy=policy,
        **backend.store_options,
    )
    wires = {v: tmp_path / f"tripwire-{v}" for v in [*BAD, "5.0.0"]}
    src = tmp_path / "src"
    src.mkdir()

    def push(version: str, model: Any, key: str | None) -> None:
        path = src / version / "model.joblib"
        path.parent.mkdir()
        joblib.dump(model, path)
        writer.push("m", path, version=version, card={"description": f"v{version}"})
        if key is not None:
            writer.sign(f"m:{version}", keys[key].private_path)

    push("1.0.0", Echo("one"), "ci")
    push("2.0.0", Tripwire(wires["2.0.0"]), None)
    push("3.0.0", Tripwire(wires["3.0.0"]), "mallory")
    push("4.0.0", Tripwire(wires["4.0.0"]), "ci")
    push("5.0.0", Tripwire(wires["5.0.0"]), "ci")
    manifest_key = "m/versions/4.0.0.json"
    doc = json.loads(writer.store.get(manifest_key).data)  # type: ignore[union-attr]
    doc["card"]["loader"] = "joblib"  # a small, plausible edit
    writer.store.put(manifest_key, json.dumps(doc).encode(), mode=OVERWRITE)
    return {"writer": writer, "consumer": consumer, "keys": keys, "wires": wires, "tmp": tmp_path}


def untouched(world: dict[str, Any]) -> None:
    for version in BAD:
        assert not world["wires"][version].exists(), f"{version} ({BAD[version]}) was unpickled"


def test_load_and_pull_refuse_every_bad_version_and_take_the_good_one(
    world: dict[str, Any],
) -> None:
    consumer, tmp = world["consumer"], world["tmp"]
    expected = {
        "2.0.0": "it is not signed",
        "3.0.0": "a key the policy does not list",
        "4.0.0": "the card differs from the signed one",
    }
    for version, why in expected.items():
        with pytest.raises(UntrustedVersionError, match=why):
            consumer.load(f"m:{version}")
        with pytest.raises(UntrustedVersionError, match=why):
            consumer.pull(f"m:{version}", tmp / f"pulled-{version}")
        with pytest.raises(UntrustedVersionError, match=why):
            consumer.fetch(f"m:{version}")
        assert not (tmp / f"pulled-{version}").exists()
    untouched(world)
    # nothing of a refused version was even downloaded
    assert consumer.cache.bytes_downloaded == 0

    model, card = consumer.load("m:1.0.0")
    assert model.predict(1) == "one:1" and card.version == "1.0.0"
    consumer.load("m:5.0.0")
    assert world["wires"]["5.0.0"].exists(), "the tripwire does not fire: the test proves nothing"


def test_a_signed_pull_carries_model_sig_that_stock_model_signing_accepts(
    world: dict[str, Any],
) -> None:
    consumer, tmp, keys = world["consumer"], world["tmp"], world["keys"]
    folder = tmp / "pulled"
    consumer.pull("m:1.0.0", folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.joblib",
        "model.sig",
        "modelshelf-card.json",
    ]

    def stock_verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "model_signing",
                "verify",
                "key",
                str(folder),
                "--signature",
                str(folder / "model.sig"),
                "--public_key",
                str(keys["ci"].public_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    assert stock_verify().returncode == 0, stock_verify().stderr
    data = bytearray((folder / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.joblib").write_bytes(bytes(data))
    assert stock_verify().returncode != 0, "stock model_signing accepted a flipped byte"
    from modelshelf import verify_folder

    with pytest.raises(UntrustedVersionError, match="model.joblib differs"):
        verify_folder(folder, consumer.trust_policy().signing_keys())


def test_model_server_start_and_switch_refuse_untrusted_versions(world: dict[str, Any]) -> None:
    writer, consumer = world["writer"], world["consumer"]
    for version in BAD:
        writer.set_active("m", version)
        server = ModelServer(consumer, "m", poll_interval=60)
        with pytest.raises(UntrustedVersionError):
            server.start()
        server.close()

    writer.set_active("m", "1.0.0")
    with ModelServer(consumer, "m", poll_interval=60) as server:
        assert server.predict("predict", 2).result == "one:2"
        for version in BAD:
            writer.set_active("m", version)
            with pytest.raises(UntrustedVersionError):
                server.refresh()
            assert server.status().active == "1.0.0"
            assert server.predict("predict", 3) == ("one:3", "1.0.0")
        assert "UntrustedVersionError" in (server.status().last_error or "")
    untouched(world)


def test_alias_changes_need_a_trusted_signature_and_the_promote_gate(world: dict[str, Any]) -> None:
    consumer, keys = world["consumer"], world["keys"]
    # Any change that makes a version active passes the promote gate, a flip included.
    with pytest.raises(ApprovalRequiredError):
        consumer.set_active("m", "1.0.0")
    for approver in ("alice", "bob"):
        consumer.approve("m:1.0.0", keys[approver].private_path, gate="promote")
    consumer.set_active("m", "1.0.0")
    for version in BAD:
        with pytest.raises(UntrustedVersionError):
            consumer.set_active("m", version)
        with pytest.raises(UntrustedVersionError):
            consumer.start_canary("m", version, 0.1, allow_major=True)
    consumer.start_canary("m", "5.0.0", 0.1, allow_major=True)
    with pytest.raises(ApprovalRequiredError, match="needs 2 approvals.*so far: none"):
        consumer.promote("m")
    consumer.approve("m:5.0.0", keys["alice"].private_path, gate="promote")
    consumer.approve("m:5.0.0", keys["mallory"].private_path, gate="promote")
    with pytest.raises(ApprovalRequiredError, match="so far: alice"):
        consumer.promote("m")
    consumer.approve("m:5.0.0", keys["bob"].private_path, gate="promote", comment="ok")
    assert consumer.promote("m").active == "5.0.0"
    history = consumer.history("m")
    assert [r.action for r in history][-1] == "promote"


def test_a_policy_without_pickle_refuses_even_a_signed_pickle(world: dict[str, Any]) -> None:
    consumer = world["consumer"]
    strict = consumer.trust_policy().model_copy(update={"allow_pickle": False})
    registry = Registry(consumer.store, cache_dir=world["tmp"] / "strict", trust_policy=strict)
    with pytest.raises(PickleNotAllowedError, match="forbids pickle"):
        registry.load("m:5.0.0")
    assert registry.cache.bytes_downloaded == 0
