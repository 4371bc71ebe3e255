"""Check a version's signatures and approvals against a trust policy.

Everything here works from the manifest's bytes and the small bundle objects: no file of
the version is read, so a refusal happens before any byte of it is downloaded, let alone
unpickled. A blob fetched afterwards is checked against the sha256 the signature covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._card import ModelVersion
from .._errors import (
    ApprovalRequiredError,
    InvalidBundleError,
    UntrustedVersionError,
)
from ._dsse import Bundle, parse_bundle
from ._policy import Gate, TrustedKey, TrustPolicy, Use
from ._statement import (
    APPROVAL_PREDICATE,
    CARD_PATH,
    card_bytes,
    expected_resources,
    root_digest,
    signed_resources,
)

__all__ = [
    "ApprovalInfo",
    "SignatureInfo",
    "check_approval",
    "check_signature",
    "content_problem",
    "require_approvals",
    "require_signature",
]


@dataclass(frozen=True)
class SignatureInfo:
    """One signature of a version, as checked against a policy.

    Attributes:
        key_id: The key the bundle names (sha256 of its public key PEM).
        signer: The policy's name for that key, or ``None`` when the policy does not list it.
        valid: The signature verifies with that key and covers exactly this version's files
            and card.
        trusted: ``valid`` and the key is one of the policy's signers.
        problem: Why it is not valid or not trusted.
    """

    key_id: str
    signer: str | None
    valid: bool
    trusted: bool
    problem: str | None = None


@dataclass(frozen=True)
class ApprovalInfo:
    """One approval of a version, as checked against a policy."""

    gate: str
    key_id: str
    approver: str | None
    approved_by: str | None
    approved_at: str | None
    comment: str | None
    valid: bool
    problem: str | None = None


def _candidates(bundle: Bundle, keys: list[TrustedKey], fallback_id: str) -> list[TrustedKey]:
    wanted = bundle.hint or fallback_id
    named = [k for k in keys if k.id == wanted]
    # A bundle without a hint (older model_signing) is tried against every listed key.
    return named if named or bundle.hint else keys


def content_problem(manifest: ModelVersion, card: bytes, signed: dict[str, str]) -> str | None:
    """What differs between a signed resource list and this version, or ``None``."""
    expected = expected_resources(manifest, card)
    if signed == expected:
        return None
    problems = []
    if CARD_PATH not in signed:
        problems.append("the card is not signed")
    elif signed[CARD_PATH] != expected[CARD_PATH]:
        problems.append("the card differs from the signed one")
    files = {p: d for p, d in expected.items() if p != CARD_PATH}
    signed_files = {p: d for p, d in signed.items() if p != CARD_PATH}
    missing = sorted(set(files) - set(signed_files))
    extra = sorted(set(signed_files) - set(files))
    changed = sorted(p for p in set(files) & set(signed_files) if files[p] != signed_files[p])
    if changed:
        problems.append(f"files differ from the signed ones: {', '.join(changed[:5])}")
    if missing:
        problems.append(f"files not signed: {', '.join(missing[:5])}")
    if extra:
        problems.append(f"signed files the version lacks: {', '.join(extra[:5])}")
    return "; ".join(problems)


def check_signature(
    policy: TrustPolicy,
    manifest: ModelVersion,
    manifest_json: bytes,
    data: bytes,
    stored_id: str,
) -> SignatureInfo:
    """Check one stored bundle (``stored_id`` is the key id its object key names)."""
    try:
        bundle = parse_bundle(data, f"signature {stored_id}")
    except InvalidBundleError as exc:
        return SignatureInfo(stored_id, None, False, False, f"unreadable: {exc}")
    kid = bundle.hint or stored_id
    keys = _candidates(bundle, policy.keys, stored_id)
    if not keys:
        return SignatureInfo(kid, None, False, False, "signed by a key the policy does not list")
    key = next((k for k in keys if bundle.verify(k.public())), None)
    if key is None:
        name = keys[0].name if len(keys) == 1 else None
        return SignatureInfo(kid, name, False, False, "the signature does not verify")
    try:
        signed = signed_resources(bundle.statement())
    except InvalidBundleError as exc:
        return SignatureInfo(key.id, key.name, False, False, str(exc))
    problem = content_problem(manifest, card_bytes(manifest_json), signed)
    if problem is not None:
        return SignatureInfo(key.id, key.name, False, False, problem)
    if key not in policy.signing_keys():
        return SignatureInfo(key.id, key.name, True, False, f"{key.name} is not a signer")
    return SignatureInfo(key.id, key.name, True, True)


def require_signature(
    use: Use,
    policy: TrustPolicy,
    manifest: ModelVersion,
    checked: list[SignatureInfo],
) -> None:
    """Raise unless ``use`` needs no signature or one of ``checked`` is trusted.

    Raises:
        UntrustedVersionError: Saying what was found and what to do.
    """
    if not policy.requires(use) or any(s.trusted for s in checked):
        return
    signers = ", ".join(k.name for k in policy.signing_keys())
    if not checked:
        found = "it is not signed"
    else:
        found = "; ".join(
            f"{s.signer or s.key_id[:16]}: {s.problem}" for s in checked if not s.trusted
        )
    raise UntrustedVersionError(
        f"{manifest.ref} is not trusted for {use}: {found}. The trust policy needs a "
        f"signature by one of: {signers}; sign it with "
        f"'modelshelf sign {manifest.ref} --key KEY.pem' (nothing was loaded)"
    )


def check_approval(
    policy: TrustPolicy,
    manifest: ModelVersion,
    manifest_json: bytes,
    gate: str,
    data: bytes,
    stored_id: str,
) -> ApprovalInfo:
    """Check one stored approval bundle for ``gate``."""

    def bad(problem: str, kid: str = stored_id, name: str | None = None) -> ApprovalInfo:
        return ApprovalInfo(gate, kid, name, None, None, None, False, problem)

    try:
        bundle = parse_bundle(data, f"approval {stored_id}")
        statement = bundle.statement()
    except InvalidBundleError as exc:
        return bad(f"unreadable: {exc}")
    keys = _candidates(bundle, policy.keys, stored_id)
    key = next((k for k in keys if bundle.verify(k.public())), None)
    if key is None:
        return bad("signed by a key the policy does not list, or the signature does not verify")
    predicate = statement.get("predicate")
    if statement.get("predicateType") != APPROVAL_PREDICATE or not isinstance(predicate, dict):
        return bad("not a modelshelf approval", key.id, key.name)
    digest = root_digest(expected_resources(manifest, card_bytes(manifest_json)))
    try:
        subject_digest = statement["subject"][0]["digest"]["sha256"]
    except (KeyError, IndexError, TypeError):
        return bad("the approval names no subject", key.id, key.name)
    if (predicate.get("model"), predicate.get("version"), predicate.get("gate")) != (
        manifest.name,
        manifest.version,
        gate,
    ):
        return bad("it approves another version or gate", key.id, key.name)
    valid = subject_digest == digest
    return ApprovalInfo(
        gate,
        key.id,
        key.name,
        _text(predicate.get("approved_by")),
        _text(predicate.get("approved_at")),
        _text(predicate.get("comment")),
        valid,
        None if valid else "the version's files or card changed after the approval",
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def require_approvals(
    gate: Gate,
    policy: TrustPolicy,
    manifest: ModelVersion,
    checked: list[ApprovalInfo],
    *,
    what: str,
) -> list[str]:
    """Raise unless the gate's rule is met; return the approvers' names.

    Raises:
        ApprovalRequiredError: Saying who approved, who may, and how to approve.
    """
    rule = policy.approvals.get(gate)
    if rule is None:
        return []
    approvers = sorted(
        {a.approver for a in checked if a.valid and a.approver in rule.keys and a.approver}
    )
    if len(approvers) >= rule.required:
        return approvers
    have = ", ".join(approvers) or "none"
    raise ApprovalRequiredError(
        f"{what} {manifest.ref} needs {rule.required} approvals for {gate!r} from "
        f"{', '.join(rule.keys)}; valid approvals so far: {have}. Approve with "
        f"'modelshelf approve {manifest.ref} --gate {gate} --key KEY.pem' (nothing changed)"
    )
