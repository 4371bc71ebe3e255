"""Trust: OMS signatures of versions, signed approvals, and the trust policy.

Layered above the stores and versions, beside the aliases; the registry facade mixes in
:class:`TrustOperations` and calls its checks wherever a version is loaded, pulled, served
or aliased (docs/design.md, "Trust").
"""

from __future__ import annotations

from ._dsse import Bundle, parse_bundle, sign_payload
from ._folder import verify_folder
from ._keys import KeyPair, key_id, load_private_key, load_public_key, new_key_pair, public_pem
from ._ops import PolicyInput, TrustedVersion, TrustOperations, key_entry
from ._policy import (
    GATES,
    ApprovalGate,
    Gate,
    SignatureRequirements,
    TrustedKey,
    TrustPolicy,
    Use,
    parse_trust_policy,
)
from ._records import (
    PolicySource,
    approve_version,
    attach_bundle,
    read_approvals,
    read_signatures,
    read_stored_policy,
    resolve_policy,
    sign_version,
    trust_history,
    write_policy,
)
from ._statement import CARD_PATH, RESERVED_PATHS, SIGNATURE_FILE, card_bytes, model_statement
from ._verify import (
    ApprovalInfo,
    SignatureInfo,
    require_approvals,
    require_signature,
)

__all__ = [
    "CARD_PATH",
    "GATES",
    "RESERVED_PATHS",
    "SIGNATURE_FILE",
    "ApprovalGate",
    "ApprovalInfo",
    "Bundle",
    "Gate",
    "KeyPair",
    "PolicyInput",
    "PolicySource",
    "SignatureInfo",
    "SignatureRequirements",
    "TrustOperations",
    "TrustPolicy",
    "TrustedVersion",
    "TrustedKey",
    "Use",
    "approve_version",
    "attach_bundle",
    "card_bytes",
    "key_entry",
    "key_id",
    "load_private_key",
    "load_public_key",
    "model_statement",
    "new_key_pair",
    "parse_bundle",
    "parse_trust_policy",
    "public_pem",
    "read_approvals",
    "read_signatures",
    "read_stored_policy",
    "require_approvals",
    "require_signature",
    "resolve_policy",
    "sign_payload",
    "sign_version",
    "trust_history",
    "verify_folder",
    "write_policy",
]
