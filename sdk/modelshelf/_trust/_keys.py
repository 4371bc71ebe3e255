"""Signing keys: EC keys in PEM, their key ids, and a generator.

A key id is the sha256 (hex) of the public key's SubjectPublicKeyInfo PEM: the same value
OMS (``model_signing``) writes as ``verificationMaterial.publicKey.hint``, so a bundle made
by the stock tool names the key it was made with in exactly our terms.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .._errors import InvalidSigningKeyError, PreconditionFailedError

__all__ = [
    "KeyPair",
    "PrivateKey",
    "PublicKey",
    "hash_for",
    "key_id",
    "load_private_key",
    "load_public_key",
    "new_key_pair",
    "public_pem",
]

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

# The curves OMS accepts, with the digest its signer pairs with each.
_CURVES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def _check_curve(key: PublicKey, source: str) -> None:
    if key.curve.name not in _CURVES:
        raise InvalidSigningKeyError(
            f"{source}: curve {key.curve.name} is not supported; use P-256, P-384 or P-521 "
            "(modelshelf keys new makes a P-256 key)"
        )


def hash_for(key: PublicKey) -> hashes.HashAlgorithm:
    """The ECDSA digest OMS uses with this key's curve."""
    return _CURVES[key.curve.name]()


def public_pem(key: PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: PublicKey | PrivateKey) -> str:
    """sha256 hex of the public key's PEM: the OMS key hint and our file name for bundles."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return hashlib.sha256(public_pem(public).encode()).hexdigest()


def load_private_key(
    source: str | os.PathLike[str] | bytes, password: str | None = None
) -> PrivateKey:
    """Read an EC private key from a PEM file (a path) or PEM bytes.

    Raises:
        InvalidSigningKeyError: Not a PEM EC private key, a wrong or missing password, or an
            unsupported curve.
    """
    label, data = _read(source)
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password is not None else None
        )
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise InvalidSigningKeyError(
            f"{label}: {exc} (set MODELSHELF_KEY_PASSWORD or pass --key-password)"
        ) from exc
    except ValueError as exc:
        raise InvalidSigningKeyError(
            f"{label} is not a PEM private key, or the password is wrong: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidSigningKeyError(
            f"{label} holds a {type(key).__name__}; signing needs an EC key (P-256)"
        )
    _check_curve(key.public_key(), label)
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> PublicKey:
    """Read an EC public key from a PEM file (a path) or PEM bytes / text.

    Raises:
        InvalidSigningKeyError: Not a PEM EC public key, or an unsupported curve.
    """
    label, data = _read(source)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise InvalidSigningKeyError(f"{label} is not a PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidSigningKeyError(f"{label} holds a {type(key).__name__}, not an EC key")
    _check_curve(key, label)
    return key


def _read(source: str | os.PathLike[str] | bytes) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        return "the key", source
    text = os.fspath(source)
    if text.lstrip().startswith("-----BEGIN"):
        return "the key", text.encode()
    path = Path(text)
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise InvalidSigningKeyError(f"cannot read key file {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class KeyPair:
    """Where :func:`new_key_pair` wrote a key, and its id."""

    private_path: Path
    public_path: Path
    key_id: str


def new_key_pair(
    directory: str | os.PathLike[str], name: str, password: str | None = None
) -> KeyPair:
    """Generate a P-256 key as ``{name}.pem`` (private, mode 0600) and ``{name}.pub.pem``.

    Neither file is overwritten: an existing one raises before anything is written.

    Raises:
        PreconditionFailedError: One of the files already exists.
    """
    folder = Path(directory)
    private_path = folder / f"{name}.pem"
    public_path = folder / f"{name}.pub.pem"
    for path in (private_path, public_path):
        if path.exists():
            raise PreconditionFailedError(
                f"{path} already exists; keys are never overwritten (pick another name)"
            )
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    folder.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a racing generator cannot make us overwrite its key; 0600 from the first byte.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_bytes)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(public_pem(key.public_key()))
    return KeyPair(private_path, public_path, key_id(key))
