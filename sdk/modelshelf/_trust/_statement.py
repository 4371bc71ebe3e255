"""The in-toto statements modelshelf signs: OMS model signatures and approvals.

A **model signature** is the OMS v1.0 statement ``model_signing`` itself produces: its
resources are the version's files with the sha256 the manifest already holds, plus the
card as one more file, :data:`CARD_PATH`, whose bytes are the canonical JSON of the card
exactly as the manifest stores it. Nothing is re-read to build it, and a pulled folder
(files + card + ``model.sig``) is what stock ``model_signing verify`` checks.

An **approval** is a statement of our own type whose subject is the same root digest, so
an approval names the exact content it approves and dies with any change to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._card import ModelVersion, canonical_json
from .._errors import InvalidBundleError

__all__ = [
    "APPROVAL_PREDICATE",
    "CARD_PATH",
    "OMS_PREDICATE",
    "RESERVED_PATHS",
    "SIGNATURE_FILE",
    "approval_statement",
    "card_bytes",
    "expected_resources",
    "model_statement",
    "resource_order",
    "root_digest",
    "signed_resources",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
OMS_PREDICATE = "https://model_signing/signature/v1.0"
APPROVAL_PREDICATE = "https://modelshelf.dev/approval/v1"
CARD_PATH = "modelshelf-card.json"
"""The card's name among the signed resources, and its file name in a pulled folder."""
SIGNATURE_FILE = "model.sig"
"""Where ``pull`` writes the bundle, the name stock ``model_signing`` looks for."""
RESERVED_PATHS = frozenset({CARD_PATH, SIGNATURE_FILE})
# What model_signing sign ignores by default; recorded so stock verifiers ignore it too.
_IGNORE_PATHS = [".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_FILE]


def card_bytes(manifest_json: bytes) -> bytes:
    """The card's signed bytes: canonical JSON of the ``card`` object as stored.

    Taken from the stored manifest rather than from the parsed model so that a later
    modelshelf with more card fields computes the same bytes for an old version.
    """
    try:
        data = json.loads(manifest_json)
        card = data["card"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidBundleError(f"the manifest holds no card object: {exc}") from exc
    return canonical_json(card)


def expected_resources(manifest: ModelVersion, card: bytes) -> dict[str, str]:
    """``{path: sha256}`` a signature of this version must cover, exactly."""
    resources = {f.path: f.sha256 for f in manifest.files}
    resources[CARD_PATH] = hashlib.sha256(card).hexdigest()
    return resources


def resource_order(path: str) -> list[str]:
    """Sort key matching ``model_signing``'s (its items are ordered as path parts)."""
    return path.split("/")


def root_digest(resources: Mapping[str, str]) -> str:
    """OMS subject digest: sha256 over the raw digests in resource order."""
    hasher = hashlib.sha256()
    for path in sorted(resources, key=resource_order):
        hasher.update(bytes.fromhex(resources[path]))
    return hasher.hexdigest()


def model_statement(manifest: ModelVersion, card: bytes) -> bytes:
    """The OMS statement for a version, as the bytes that get signed."""
    resources = expected_resources(manifest, card)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.ref, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": OMS_PREDICATE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": _IGNORE_PATHS,
            },
            "resources": [
                {"name": path, "algorithm": "sha256", "digest": resources[path]}
                for path in sorted(resources, key=resource_order)
            ],
        },
    }
    return canonical_json(statement)


def signed_resources(statement: Mapping[str, Any]) -> dict[str, str]:
    """The ``{path: sha256}`` an OMS statement signs, after its own consistency checks.

    Raises:
        InvalidBundleError: Not an OMS v1.0 statement, a non-sha256 resource, a duplicate
            path, or a subject digest that the resources do not hash to.
    """
    if statement.get("_type") != STATEMENT_TYPE:
        raise InvalidBundleError(f"not an in-toto v1 statement: {statement.get('_type')!r}")
    if statement.get("predicateType") != OMS_PREDICATE:
        raise InvalidBundleError(
            f"predicate type {statement.get('predicateType')!r} is not {OMS_PREDICATE!r}"
        )
    try:
        serialization = statement["predicate"]["serialization"]
        if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
            raise InvalidBundleError(
                f"serialization {serialization.get('method')}/{serialization.get('hash_type')} "
                "is not files/sha256: modelshelf compares whole-file sha256 digests"
            )
        resources: dict[str, str] = {}
        ordered = bytearray()
        for item in statement["predicate"]["resources"]:
            name, algorithm, digest = item["name"], item["algorithm"], item["digest"]
            if algorithm != "sha256" or not isinstance(name, str):
                raise InvalidBundleError(f"resource {name!r} is not a sha256 digest")
            raw = bytes.fromhex(digest)
            if len(raw) != 32:
                raise InvalidBundleError(f"resource {name!r} digest is not 32 bytes")
            if name in resources:
                raise InvalidBundleError(f"resource {name!r} appears twice")
            resources[name] = raw.hex()
            ordered += raw
        subjects = statement["subject"]
        if len(subjects) != 1:
            raise InvalidBundleError(f"expected one subject, got {len(subjects)}")
        subject_digest = subjects[0]["digest"]["sha256"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidBundleError):
            raise
        raise InvalidBundleError(f"malformed OMS statement: {exc!r}") from exc
    # The root digest is over the resources in the order the statement lists them.
    if hashlib.sha256(bytes(ordered)).hexdigest() != subject_digest:
        raise InvalidBundleError("the statement's subject digest does not match its resources")
    return resources


def approval_statement(
    manifest: ModelVersion,
    card: bytes,
    gate: str,
    *,
    approved_by: str,
    approved_at: datetime,
    comment: str | None,
) -> bytes:
    """An approval of one version for one gate, bound to the version's exact content."""
    resources = expected_resources(manifest, card)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.ref, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": APPROVAL_PREDICATE,
        "predicate": {
            "model": manifest.name,
            "version": manifest.version,
            "gate": gate,
            "approved_by": approved_by,
            "approved_at": approved_at.isoformat(),
            "comment": comment,
        },
    }
    return canonical_json(statement)
