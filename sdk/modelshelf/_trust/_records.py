"""Signatures, approvals and the trust policy as objects in a store.

Keys (docs/design.md)::

    {model}/signatures/{version}/{key-id}.sig          OMS bundles, one per signing key
    {model}/approvals/{version}/{gate}/{key-id}.sig    approval bundles, one per key and gate
    trust.json                                         the registry's trust policy
    _trust/history/{generation:012d}.json              every policy that was ever stored

Bundles are written create-if-absent: a signature, once there, cannot be replaced by
anyone holding only bucket access (deleting it only makes a version *less* trusted).
The policy follows the aliases protocol: a change claims its history record first, then
swaps ``trust.json`` with If-Match.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from .._card import ModelVersion, utcnow
from .._errors import (
    ConfigurationError,
    InvalidBundleError,
    KeyNotFoundError,
    PreconditionFailedError,
)
from .._settings import trust_policy_setting
from .._stores import CREATE, IfMatch, Store
from ..layout import (
    TRUST_HISTORY_PREFIX,
    TRUST_POLICY_KEY,
    approval_key,
    approvals_prefix,
    signature_key,
    signatures_prefix,
    trust_history_key,
)
from ._dsse import parse_bundle, sign_payload
from ._keys import PrivateKey, PublicKey, key_id, public_pem
from ._policy import Gate, TrustedKey, TrustPolicy, parse_trust_policy
from ._statement import (
    RESERVED_PATHS,
    approval_statement,
    card_bytes,
    model_statement,
    signed_resources,
)
from ._verify import (
    ApprovalInfo,
    SignatureInfo,
    check_approval,
    check_signature,
    content_problem,
)

_SUFFIX = ".sig"  # the bundle suffix layout uses

__all__ = [
    "PolicySource",
    "approve_version",
    "attach_bundle",
    "read_approvals",
    "read_signatures",
    "read_stored_policy",
    "resolve_policy",
    "sign_version",
    "trust_history",
    "write_policy",
]

# -- signatures --------------------------------------------------------------------------


def _check_signable(manifest: ModelVersion) -> None:
    clash = sorted(f.path for f in manifest.files if f.path in RESERVED_PATHS)
    if clash:
        raise InvalidBundleError(
            f"{manifest.ref} holds {', '.join(clash)}, names a signed pull writes itself; "
            "push the files under other names to sign them"
        )


def sign_version(
    store: Store, manifest: ModelVersion, manifest_json: bytes, private: PrivateKey
) -> tuple[str, bool]:
    """Write an OMS signature of a version by ``private``, built from the manifest alone.

    Returns:
        ``(key, created)``: ``created`` is false when this key had already signed exactly
        this content (the call is idempotent).

    Raises:
        PreconditionFailedError: This key's bundle exists and signs other content.
    """
    _check_signable(manifest)
    bundle = sign_payload(private, model_statement(manifest, card_bytes(manifest_json)))
    return _put_once(store, manifest, manifest_json, bundle, key_id(private), private.public_key())


def attach_bundle(
    store: Store,
    manifest: ModelVersion,
    manifest_json: bytes,
    data: bytes,
    public: PublicKey,
) -> tuple[str, bool]:
    """Store a bundle made elsewhere (``model_signing sign key`` over a pulled folder).

    It must verify with ``public`` and cover exactly this version's files and card.

    Raises:
        InvalidBundleError: It does not parse, verify, or match the version.
    """
    _check_signable(manifest)
    bundle = parse_bundle(data)
    kid = key_id(public)
    if bundle.hint is not None and bundle.hint != kid:
        raise InvalidBundleError(
            f"the bundle names key {bundle.hint[:16]}..., not the given key {kid[:16]}..."
        )
    if not bundle.verify(public):
        raise InvalidBundleError("the bundle's signature does not verify with the given key")
    problem = content_problem(
        manifest, card_bytes(manifest_json), signed_resources(bundle.statement())
    )
    if problem is not None:
        raise InvalidBundleError(f"the bundle does not sign {manifest.ref}: {problem}")
    return _put_once(store, manifest, manifest_json, data, kid, public)


def _put_once(
    store: Store,
    manifest: ModelVersion,
    manifest_json: bytes,
    bundle: bytes,
    kid: str,
    public: PublicKey,
) -> tuple[str, bool]:
    key = signature_key(manifest.name, manifest.version, kid)
    try:
        store.put(key, bundle, mode=CREATE)
        return key, True
    except PreconditionFailedError:
        existing = store.get(key)
        assert existing is not None
        policy = TrustPolicy(keys=[TrustedKey(name="signer", public_key=public_pem(public))])
        if check_signature(policy, manifest, manifest_json, existing.data, kid).valid:
            return key, False
        raise PreconditionFailedError(
            f"{key} already holds a signature by this key over other content; signatures "
            "are never replaced"
        ) from None


def _stored_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(_SUFFIX)


def read_signatures(
    store: Store, policy: TrustPolicy, manifest: ModelVersion, manifest_json: bytes
) -> list[tuple[SignatureInfo, bytes]]:
    """Every stored signature of a version, checked against ``policy``, with its bytes."""
    found = []
    for info in store.list(signatures_prefix(manifest.name, manifest.version)):
        if not info.key.endswith(_SUFFIX):
            continue
        try:
            obj = store.get(info.key)
        except KeyNotFoundError:
            continue  # deleted between the listing and the read
        assert obj is not None
        checked = check_signature(policy, manifest, manifest_json, obj.data, _stored_id(info.key))
        found.append((checked, obj.data))
    return found


# -- approvals ---------------------------------------------------------------------------


def approve_version(
    store: Store,
    manifest: ModelVersion,
    manifest_json: bytes,
    private: PrivateKey,
    gate: Gate,
    *,
    user: str,
    comment: str | None = None,
    now: datetime | None = None,
) -> tuple[str, bool]:
    """Write a signed approval of a version for ``gate`` (once per key and gate).

    Returns:
        ``(key, created)``; ``created`` is false when this key already approved it.
    """
    payload = approval_statement(
        manifest,
        card_bytes(manifest_json),
        gate,
        approved_by=user,
        approved_at=now or utcnow(),
        comment=comment,
    )
    kid = key_id(private)
    key = approval_key(manifest.name, manifest.version, gate, kid)
    try:
        store.put(key, sign_payload(private, payload), mode=CREATE)
        return key, True
    except PreconditionFailedError:
        return key, False


def read_approvals(
    store: Store,
    policy: TrustPolicy,
    manifest: ModelVersion,
    manifest_json: bytes,
    gate: Gate | None = None,
) -> list[ApprovalInfo]:
    """Stored approvals of a version (for one gate, or all), checked against ``policy``."""
    found = []
    for info in store.list(approvals_prefix(manifest.name, manifest.version, gate)):
        parts = info.key.split("/")
        if len(parts) < 2 or not info.key.endswith(_SUFFIX):
            continue
        try:
            obj = store.get(info.key)
        except KeyNotFoundError:
            continue
        assert obj is not None
        found.append(
            check_approval(
                policy, manifest, manifest_json, parts[-2], obj.data, _stored_id(info.key)
            )
        )
    return found


# -- the policy --------------------------------------------------------------------------


class PolicySource(str):
    """Where the policy in force came from (``pinned ...``, ``registry ...`` or default)."""


def read_stored_policy(store: Store) -> tuple[TrustPolicy, str | None]:
    """The registry's ``trust.json`` and its etag; the open default and ``None`` if absent.

    Raises:
        InvalidTrustPolicyError: It exists but does not validate.
    """
    try:
        obj = store.get(TRUST_POLICY_KEY)
    except KeyNotFoundError:
        return TrustPolicy(), None
    assert obj is not None
    return parse_trust_policy(obj.data, f"{store.uri}/{TRUST_POLICY_KEY}"), obj.etag


def resolve_policy(
    store: Store, pinned: TrustPolicy | str | os.PathLike[str] | None = None
) -> tuple[TrustPolicy, PolicySource]:
    """The policy in force: the argument, else ``MODELSHELF_TRUST_POLICY``, else the registry's.

    Raises:
        InvalidTrustPolicyError: The pinned file or ``trust.json`` does not validate.
        ConfigurationError: The pinned file cannot be read.
    """
    if isinstance(pinned, TrustPolicy):
        return pinned, PolicySource("pinned by the caller")
    path = trust_policy_setting(pinned)
    if path is not None:
        return _read_pinned(path), PolicySource(f"pinned file {path}")
    policy, etag = read_stored_policy(store)
    if etag is None:
        return policy, PolicySource("default (no trust.json in the registry)")
    return policy, PolicySource(f"{store.uri}/{TRUST_POLICY_KEY} generation {policy.generation}")


def _read_pinned(path: Path) -> TrustPolicy:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the pinned trust policy {path}: {exc.strerror}"
        ) from exc
    return parse_trust_policy(data, f"pinned trust policy {path}")


def write_policy(
    store: Store, policy: TrustPolicy, *, user: str, reason: str | None = None
) -> TrustPolicy:
    """Store ``policy`` as the next generation, if it names the generation in force.

    Raises:
        PreconditionFailedError: The stored policy moved past ``policy.generation`` (re-read
            it, reapply the change), or another writer claimed the same generation first.
    """
    current, etag = read_stored_policy(store)
    if policy.generation != current.generation:
        raise PreconditionFailedError(
            f"the change is based on trust policy generation {policy.generation} but "
            f"generation {current.generation} is stored; re-read it ('modelshelf trust show "
            "--json') and apply the change again"
        )
    target = current.generation + 1
    record = TrustPolicy.model_validate(
        {
            **policy.content(),
            "generation": target,
            "updated_at": utcnow(),
            "updated_by": user,
            "reason": reason,
        }
    )
    data = record.to_json()
    try:
        store.put(trust_history_key(target), data, mode=CREATE)
    except PreconditionFailedError:
        _roll_forward(store, target, etag)
        raise PreconditionFailedError(
            f"another writer changed the trust policy to generation {target} first; re-read "
            "it and apply the change again"
        ) from None
    try:
        store.put(TRUST_POLICY_KEY, data, mode=IfMatch(etag) if etag else CREATE)
    except PreconditionFailedError:
        # Someone rolled our claimed record forward for us, or raced past it.
        now, _ = read_stored_policy(store)
        if now.to_json() != data:
            raise
    return record


def _roll_forward(store: Store, generation: int, etag: str | None) -> None:
    # A writer that died between its claim and the swap leaves the claim as the truth;
    # finishing it keeps every stored policy in the history.
    try:
        obj = store.get(trust_history_key(generation))
    except KeyNotFoundError:
        return
    assert obj is not None
    try:
        store.put(TRUST_POLICY_KEY, obj.data, mode=IfMatch(etag) if etag else CREATE)
    except PreconditionFailedError:
        pass  # already rolled forward, or moved on


def trust_history(store: Store) -> list[TrustPolicy]:
    """Every policy the registry stored, oldest first."""
    records = []
    for info in store.list(TRUST_HISTORY_PREFIX):
        obj = store.get(info.key)
        assert obj is not None
        records.append(parse_trust_policy(obj.data, info.key))
    return records
