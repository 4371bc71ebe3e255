"""DSSE envelopes in Sigstore bundles: the signature file format of OMS ``model_signing``.

A bundle is JSON::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": KEY_ID}, "tlogEntries": []},
     "dsseEnvelope": {"payload": BASE64(statement), "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": BASE64(DER ECDSA over PAE), "keyid": KEY_ID}]}}

exactly what ``model_signing sign key`` writes (it leaves ``keyid`` empty; we fill it in,
which DSSE allows and stock verifiers ignore). The signature covers the DSSE
pre-authentication encoding (PAE) of the payload, never the JSON around it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from .._card import canonical_json
from .._errors import InvalidBundleError
from ._keys import PrivateKey, PublicKey, hash_for, key_id

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "Bundle",
    "pae",
    "parse_bundle",
    "sign_payload",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
_MAX_BUNDLE = 16 * 1024 * 1024  # a statement lists digests, not data; refuse absurd objects


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    header = f"DSSEv1 {len(payload_type)} {payload_type} {len(payload)}".encode()
    return header + b" " + payload


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle: who it says signed (the hint), the payload and its signatures."""

    hint: str | None
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]

    def verify(self, public: PublicKey) -> bool:
        """Whether one of the signatures is ``public``'s over this payload."""
        message = pae(self.payload_type, self.payload)
        for sig in self.signatures:
            try:
                public.verify(sig, message, ec.ECDSA(hash_for(public)))
                return True
            except InvalidSignature:
                continue
        return False

    def statement(self) -> dict[str, Any]:
        """The payload as JSON (not verified: call :meth:`verify` first).

        Raises:
            InvalidBundleError: The payload is not an in-toto JSON object.
        """
        if self.payload_type != PAYLOAD_TYPE:
            raise InvalidBundleError(
                f"bundle payload type is {self.payload_type!r}, expected {PAYLOAD_TYPE!r}"
            )
        try:
            data = json.loads(self.payload)
        except ValueError as exc:
            raise InvalidBundleError(f"bundle payload is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidBundleError("bundle payload is not a JSON object")
        return data


def sign_payload(private: PrivateKey, payload: bytes) -> bytes:
    """Sign ``payload`` (an in-toto statement) and return the bundle's canonical bytes."""
    sig = private.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hash_for(private.public_key())))
    kid = key_id(private)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": kid}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": kid}],
        },
    }
    return canonical_json(bundle)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidBundleError(f"bundle {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidBundleError(f"bundle {what} is not valid base64: {exc}") from exc


def parse_bundle(data: bytes, source: str = "bundle") -> Bundle:
    """Parse a bundle written by modelshelf or by ``model_signing sign key``.

    Parsing checks the shape only; :meth:`Bundle.verify` checks the signature.

    Raises:
        InvalidBundleError: Naming what is wrong and where.
    """
    if len(data) > _MAX_BUNDLE:
        raise InvalidBundleError(f"{source}: {len(data)} bytes is too large for a bundle")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidBundleError(f"{source} is not JSON: {exc}") from exc
    try:
        if not isinstance(doc, dict):
            raise InvalidBundleError("not a JSON object")
        if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise InvalidBundleError(
                f"media type {doc.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE!r}"
            )
        material = doc.get("verificationMaterial") or {}
        public = material.get("publicKey") if isinstance(material, dict) else None
        hint = public.get("hint") if isinstance(public, dict) else None
        if hint is not None and not isinstance(hint, str):
            raise InvalidBundleError("verificationMaterial.publicKey.hint is not a string")
        envelope = doc.get("dsseEnvelope")
        if not isinstance(envelope, dict):
            raise InvalidBundleError("no dsseEnvelope (only key-signed DSSE bundles are read)")
        payload_type = envelope.get("payloadType")
        if not isinstance(payload_type, str):
            raise InvalidBundleError("dsseEnvelope.payloadType is missing")
        payload = _b64(envelope.get("payload"), "payload")
        entries = envelope.get("signatures")
        if not isinstance(entries, list) or not entries:
            raise InvalidBundleError("dsseEnvelope has no signatures")
        sigs = tuple(
            _b64(e.get("sig") if isinstance(e, dict) else None, "signature") for e in entries
        )
    except InvalidBundleError as exc:
        raise InvalidBundleError(f"{source}: {exc}") from None
    return Bundle(hint or None, payload_type, payload, sigs)
