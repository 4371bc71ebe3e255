"""The trust policy: validation, If-Match changes with history, local pinning, approvals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelshelf import (
    ApprovalRequiredError,
    ConfigurationError,
    InvalidSigningKeyError,
    InvalidTrustPolicyError,
    PreconditionFailedError,
    Registry,
)
from modelshelf._trust import (
    TrustPolicy,
    approve_version,
    load_private_key,
    new_key_pair,
    parse_trust_policy,
    read_approvals,
    read_stored_policy,
    require_approvals,
    resolve_policy,
    trust_history,
    write_policy,
)


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("alice", "bob", "carol"):
        pair = new_key_pair(tmp_path / "keys", name)
        out[name] = pair.private_path
        out[f"{name}.pub"] = pair.public_path
    return out


def policy_doc(pems: dict[str, Path], **extra: object) -> dict[str, object]:
    return {
        "keys": [
            {"name": n, "public_key": pems[f"{n}.pub"].read_text()}
            for n in ("alice", "bob", "carol")
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signers": ["dave"]}, "signer 'dave' is not among the keys"),
        ({"approvals": {"promote": {"required": 3, "keys": ["alice", "bob"]}}}, "requires 3"),
        ({"approvals": {"deploy": {"required": 1, "keys": ["alice"]}}}, "approvals.deploy"),
        ({"approvals": {"canary": {"required": 1, "keys": ["zed"]}}}, "'zed' is not among"),
        ({"allow_pickle": "sometimes"}, "allow_pickle"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_policies_are_refused_with_the_field(
    pems: dict[str, Path], change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidTrustPolicyError, match=message):
        parse_trust_policy(json.dumps(policy_doc(pems, **change)))


def test_a_key_that_is_not_a_key_or_lies_about_its_id_is_refused(pems: dict[str, Path]) -> None:
    doc = policy_doc(pems)
    doc["keys"][0]["public_key"] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"  # type: ignore[index]
    with pytest.raises(InvalidTrustPolicyError, match="not a PEM public key"):
        parse_trust_policy(doc)
    doc = policy_doc(pems)
    doc["keys"][0]["key_id"] = "0" * 64  # type: ignore[index]
    with pytest.raises(InvalidTrustPolicyError, match="does not match its public key"):
        parse_trust_policy(doc)
    with pytest.raises(InvalidTrustPolicyError, match="no key is trusted"):
        parse_trust_policy({"require_signature": True})
    with pytest.raises(InvalidSigningKeyError, match="not a PEM private key"):
        load_private_key(pems["alice.pub"])


def test_policy_changes_name_their_generation_and_are_all_recorded(
    pems: dict[str, Path], tmp_path: Path
) -> None:
    store = Registry(tmp_path / "reg").store
    assert read_stored_policy(store) == (TrustPolicy(), None)
    first = write_policy(store, parse_trust_policy(policy_doc(pems)), user="root", reason="keys")
    assert first.generation == 1 and first.updated_by == "root"
    stale = parse_trust_policy(policy_doc(pems, allow_pickle=False))  # still says generation 0
    with pytest.raises(PreconditionFailedError, match="generation 1 is stored"):
        write_policy(store, stale, user="mallory")
    second = write_policy(
        store, stale.model_copy(update={"generation": 1}), user="root", reason="no pickle"
    )
    assert second.generation == 2 and not second.allow_pickle
    assert [p.generation for p in trust_history(store)] == [1, 2]
    assert [p.reason for p in trust_history(store)] == ["keys", "no pickle"]
    assert read_stored_policy(store)[0] == second


def test_a_claimed_but_unapplied_change_is_rolled_forward_by_the_next_writer(
    pems: dict[str, Path], tmp_path: Path
) -> None:
    store = Registry(tmp_path / "reg").store
    write_policy(store, parse_trust_policy(policy_doc(pems)), user="root")
    # A writer claimed generation 2 and died before swapping trust.json.
    died = TrustPolicy.model_validate({**policy_doc(pems), "generation": 2, "allow_pickle": False})
    store.put("_trust/history/000000000002.json", died.to_json())
    with pytest.raises(PreconditionFailedError, match="changed the trust policy to generation 2"):
        write_policy(store, parse_trust_policy({**policy_doc(pems), "generation": 1}), user="late")
    assert read_stored_policy(store)[0].generation == 2
    assert not read_stored_policy(store)[0].allow_pickle


def test_a_pinned_policy_wins_over_the_bucket(
    pems: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Registry(tmp_path / "reg").store
    write_policy(store, parse_trust_policy(policy_doc(pems)), user="whoever-has-the-bucket")
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps(policy_doc(pems, require_signature=True, allow_pickle=False)))
    monkeypatch.setenv("MODELSHELF_TRUST_POLICY", str(pinned))
    policy, source = resolve_policy(store)
    assert policy.requires("load") and not policy.allow_pickle
    assert "pinned file" in source
    monkeypatch.setenv("MODELSHELF_TRUST_POLICY", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigurationError, match="cannot read the pinned trust policy"):
        resolve_policy(store)
    monkeypatch.delenv("MODELSHELF_TRUST_POLICY")
    assert "generation 1" in resolve_policy(store)[1]


def test_approvals_count_distinct_listed_keys_for_the_exact_content(
    pems: dict[str, Path], tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights")
    manifest = registry.push("m", src)
    raw = registry.store.get("m/versions/1.0.0.json").data  # type: ignore[union-attr]
    policy = parse_trust_policy(
        policy_doc(pems, approvals={"promote": {"required": 2, "keys": ["alice", "bob"]}})
    )

    def check() -> list[str]:
        found = read_approvals(registry.store, policy, manifest, raw, "promote")
        return require_approvals("promote", policy, manifest, found, what="promoting")

    with pytest.raises(ApprovalRequiredError, match="needs 2 approvals.*so far: none"):
        check()
    alice = load_private_key(pems["alice"])
    approve_version(registry.store, manifest, raw, alice, "promote", user="alice")
    assert (
        approve_version(registry.store, manifest, raw, alice, "promote", user="alice")[1] is False
    )
    approve_version(
        registry.store, manifest, raw, load_private_key(pems["carol"]), "promote", user="c"
    )
    approve_version(
        registry.store, manifest, raw, load_private_key(pems["bob"]), "canary", user="b"
    )
    with pytest.raises(ApprovalRequiredError, match="so far: alice"):
        check()  # carol is not listed for the gate; bob approved another gate
    approve_version(
        registry.store, manifest, raw, load_private_key(pems["bob"]), "promote", user="b"
    )
    assert check() == ["alice", "bob"]

    doc = json.loads(raw)
    doc["card"]["description"] = "changed after approval"
    changed_raw = json.dumps(doc).encode()
    changed = manifest.model_validate_json(changed_raw)
    found = read_approvals(registry.store, policy, changed, changed_raw, "promote")
    assert {a.problem for a in found} == {"the version's files or card changed after the approval"}
    with pytest.raises(ApprovalRequiredError):
        require_approvals("promote", policy, changed, found, what="promoting")
