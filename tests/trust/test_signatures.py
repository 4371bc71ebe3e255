"""OMS signatures built from manifests: our bundles, stock model_signing, tampering."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelshelf import OVERWRITE, InvalidBundleError, PreconditionFailedError, Registry
from modelshelf._card import ModelVersion
from modelshelf._errors import UntrustedVersionError
from modelshelf._trust import (
    CARD_PATH,
    SIGNATURE_FILE,
    TrustedKey,
    TrustPolicy,
    attach_bundle,
    card_bytes,
    load_private_key,
    new_key_pair,
    public_pem,
    read_signatures,
    require_signature,
    sign_version,
    verify_folder,
)
from modelshelf.layout import signature_key


def stock(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the reference implementation's CLI (``model_signing``)."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("ci", "mallory"):
        pair = new_key_pair(tmp_path / "keys", name)
        out[name] = pair.private_path
        out[f"{name}.pub"] = pair.public_path
    return out


def trusted(keys: dict[str, Path], *names: str) -> TrustPolicy:
    return TrustPolicy(
        keys=[TrustedKey(name=n, public_key=keys[f"{n}.pub"].read_text()) for n in names],
        require_signature=True,  # type: ignore[arg-type]
    )


@pytest.fixture
def version(tmp_path: Path) -> tuple[Registry, ModelVersion, bytes, Path]:
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    (src / "model.onnx").write_bytes(b"\x08\x01onnx-ish" * 1000)
    (src / "weights" / "a-b.bin").write_bytes(b"a-b")
    (src / "weights" / "a").mkdir()
    (src / "weights" / "a" / "b.bin").write_bytes(b"a/b")  # sorts differently by parts
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="ci@build")
    manifest = registry.push("m", src, card={"description": "demo", "author": "Ada"})
    raw = registry.store.get(f"m/versions/{manifest.version}.json")
    assert raw is not None
    return registry, manifest, raw.data, src


def pulled_folder(src: Path, manifest_json: bytes, dest: Path, bundle: bytes) -> Path:
    """What a signed pull produces: the files, the card file and model.sig."""
    shutil.copytree(src, dest)
    (dest / CARD_PATH).write_bytes(card_bytes(manifest_json))
    (dest / SIGNATURE_FILE).write_bytes(bundle)
    return dest


def test_stock_model_signing_accepts_our_bundle_and_rejects_a_flipped_byte(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    registry, manifest, raw, src = version
    key, created = sign_version(registry.store, manifest, raw, load_private_key(keys["ci"]))
    assert created and key == signature_key("m", manifest.version, key.rsplit("/", 1)[1][:-4])
    obj = registry.store.get(key)
    assert obj is not None
    folder = pulled_folder(src, raw, tmp_path / "pulled", obj.data)

    ok = stock(
        "verify",
        "key",
        str(folder),
        "--signature",
        str(folder / SIGNATURE_FILE),
        "--public_key",
        str(keys["ci.pub"]),
    )
    assert ok.returncode == 0, f"stock verifier refused our bundle: {ok.stdout}{ok.stderr}"
    assert verify_folder(folder, trusted(keys, "ci").keys).name == "ci"

    target = folder / "weights" / "a" / "b.bin"
    target.write_bytes(b"a/c")
    bad = stock(
        "verify",
        "key",
        str(folder),
        "--signature",
        str(folder / SIGNATURE_FILE),
        "--public_key",
        str(keys["ci.pub"]),
    )
    assert bad.returncode != 0, "stock verifier accepted a flipped byte"
    with pytest.raises(UntrustedVersionError, match="b.bin differs"):
        verify_folder(folder, trusted(keys, "ci").keys)


def test_stock_bundle_over_a_pulled_folder_is_accepted_by_our_verifier(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    registry, manifest, raw, src = version
    folder = tmp_path / "pulled"
    shutil.copytree(src, folder)
    (folder / CARD_PATH).write_bytes(card_bytes(raw))
    made = stock(
        "sign",
        "key",
        str(folder),
        "--private_key",
        str(keys["ci"]),
        "--signature",
        str(folder / SIGNATURE_FILE),
    )
    assert made.returncode == 0, made.stderr
    bundle = (folder / SIGNATURE_FILE).read_bytes()

    public = load_private_key(keys["ci"]).public_key()
    key, created = attach_bundle(registry.store, manifest, raw, bundle, public)
    assert created
    checked = read_signatures(registry.store, trusted(keys, "ci"), manifest, raw)
    assert [(s.signer, s.trusted) for s, _ in checked] == [("ci", True)]
    assert verify_folder(folder, trusted(keys, "ci").keys).name == "ci"


def test_stock_bundle_without_the_card_does_not_make_the_version_trusted(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    registry, manifest, raw, src = version
    folder = tmp_path / "bare"
    shutil.copytree(src, folder)
    assert (
        stock(
            "sign",
            "key",
            str(folder),
            "--private_key",
            str(keys["ci"]),
            "--signature",
            str(tmp_path / "bare.sig"),
        ).returncode
        == 0
    )
    public = load_private_key(keys["ci"]).public_key()
    with pytest.raises(InvalidBundleError, match="the card is not signed"):
        attach_bundle(registry.store, manifest, raw, (tmp_path / "bare.sig").read_bytes(), public)


def test_untrusted_key_tampered_card_and_unsigned_are_refused(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path]
) -> None:
    registry, manifest, raw, _ = version
    policy = trusted(keys, "ci")
    with pytest.raises(UntrustedVersionError, match="it is not signed"):
        require_signature("load", policy, manifest, [])

    sign_version(registry.store, manifest, raw, load_private_key(keys["mallory"]))
    checked = [s for s, _ in read_signatures(registry.store, policy, manifest, raw)]
    with pytest.raises(UntrustedVersionError, match="a key the policy does not list"):
        require_signature("load", policy, manifest, checked)

    sign_version(registry.store, manifest, raw, load_private_key(keys["ci"]))
    checked = [s for s, _ in read_signatures(registry.store, policy, manifest, raw)]
    require_signature("load", policy, manifest, checked)  # trusted now

    # Someone with bucket access rewrites the card (say, to name another loader).
    doc = json.loads(raw)
    doc["card"]["description"] = "harmless, honest"
    tampered_raw = json.dumps(doc).encode()
    tampered = ModelVersion.model_validate_json(tampered_raw)
    checked = [s for s, _ in read_signatures(registry.store, policy, tampered, tampered_raw)]
    with pytest.raises(UntrustedVersionError, match="card differs from the signed one"):
        require_signature("serve", policy, tampered, checked)


def test_signing_is_idempotent_and_never_replaces_a_bundle(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path]
) -> None:
    registry, manifest, raw, _ = version
    private = load_private_key(keys["ci"])
    key, created = sign_version(registry.store, manifest, raw, private)
    assert created
    assert sign_version(registry.store, manifest, raw, private) == (key, False)
    registry.store.put(key, b'{"not": "a bundle"}', mode=OVERWRITE)
    with pytest.raises(PreconditionFailedError, match="never replaced"):
        sign_version(registry.store, manifest, raw, private)


def test_signing_reads_no_file_of_the_version(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path]
) -> None:
    registry, manifest, raw, _ = version
    for entry in manifest.files:  # the blobs are gone: signing must not need them
        registry.store.delete(f"m/blobs/sha256/{entry.sha256}")
    key, created = sign_version(registry.store, manifest, raw, load_private_key(keys["ci"]))
    assert created


def test_a_key_id_is_the_oms_hint(keys: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "f").write_text("x")
    assert (
        stock(
            "sign",
            "key",
            str(folder),
            "--private_key",
            str(keys["ci"]),
            "--signature",
            str(tmp_path / "s.sig"),
        ).returncode
        == 0
    )
    hint = json.loads((tmp_path / "s.sig").read_text())["verificationMaterial"]["publicKey"]["hint"]
    pem = public_pem(load_private_key(keys["ci"]).public_key())
    assert TrustedKey(name="ci", public_key=pem).key_id == hint


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff not json",
        b"[]",
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": '
        b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", '
        b'"signatures": [{"sig": "!!"}]}}',
    ],
)
def test_hostile_bundles_are_reported_and_never_count(
    version: tuple[Registry, ModelVersion, bytes, Path], keys: dict[str, Path], garbage: bytes
) -> None:
    registry, manifest, raw, _ = version
    policy = trusted(keys, "ci")
    registry.store.put(f"m/signatures/{manifest.version}/{'ab' * 32}.sig", garbage)
    checked = [s for s, _ in read_signatures(registry.store, policy, manifest, raw)]
    assert [s.valid for s in checked] == [False] and checked[0].problem
    with pytest.raises(UntrustedVersionError):
        require_signature("load", policy, manifest, checked)
    sign_version(registry.store, manifest, raw, load_private_key(keys["ci"]))
    checked = [s for s, _ in read_signatures(registry.store, policy, manifest, raw)]
    require_signature("load", policy, manifest, checked)
