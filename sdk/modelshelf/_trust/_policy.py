"""The trust policy: which keys are trusted, what needs their signature, what may load.

Stored at ``{root}/trust.json`` (changed only with If-Match, every change recorded under
``_trust/history/``), or pinned locally: a policy file named by ``MODELSHELF_TRUST_POLICY``
(or given to :class:`~modelshelf.Registry`) replaces the registry's copy, so someone who
can write the bucket cannot loosen the policy a consumer enforces. Example::

    {
      "keys": [{"name": "ci", "public_key": "-----BEGIN PUBLIC KEY-----..."},
               {"name": "alice", "public_key": "..."}, {"name": "bob", "public_key": "..."}],
      "signers": ["ci"],
      "require_signature": {"load": true, "pull": true, "serve": true, "alias": true},
      "allow_pickle": false,
      "approvals": {"promote": {"required": 2, "keys": ["alice", "bob"]}}
    }

With no policy anywhere nothing is required and pickle loads as before.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._card import canonical_json
from .._errors import InvalidSigningKeyError, InvalidTrustPolicyError
from ._keys import PublicKey, key_id, load_public_key

__all__ = [
    "GATES",
    "ApprovalGate",
    "Gate",
    "SignatureRequirements",
    "TrustPolicy",
    "TrustedKey",
    "Use",
    "parse_trust_policy",
]

Use = Literal["load", "pull", "serve", "alias"]
"""Where a signature can be required: ``Registry.load``, ``pull``, ``ModelServer``, aliases."""
Gate = Literal["canary", "promote"]
"""Steps an approval can gate: starting a canary, and making a version active."""
GATES: tuple[Gate, ...] = ("canary", "promote")


class TrustedKey(BaseModel):
    """A public key the policy trusts, under a human name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
    public_key: str
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _key_parses(self) -> TrustedKey:
        try:
            computed = key_id(self.public())
        except InvalidSigningKeyError as exc:
            raise ValueError(f"key {self.name!r}: {exc}") from None
        if self.key_id is not None and self.key_id != computed:
            raise ValueError(
                f"key {self.name!r}: key_id {self.key_id} does not match its public key "
                f"({computed}); drop key_id to have it computed"
            )
        object.__setattr__(self, "key_id", computed)
        return self

    def public(self) -> PublicKey:
        """The key itself."""
        return load_public_key(self.public_key.encode())

    @property
    def id(self) -> str:
        """The key id (always set after validation)."""
        assert self.key_id is not None
        return self.key_id


class SignatureRequirements(BaseModel):
    """Where a version must carry a trusted signature before it is used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    load: bool = False
    pull: bool = False
    serve: bool = False
    alias: bool = False

    def any(self) -> bool:
        """Whether anything requires a signature."""
        return self.load or self.pull or self.serve or self.alias


class ApprovalGate(BaseModel):
    """``required`` distinct approvals from ``keys`` (names of trusted keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    required: int = Field(ge=1)
    keys: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> ApprovalGate:
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("a gate lists a key twice")
        if self.required > len(self.keys):
            raise ValueError(
                f"a gate requires {self.required} approvals but lists only {len(self.keys)} keys"
            )
        return self


class TrustPolicy(BaseModel):
    """What a registry (or a pinned local copy) trusts.

    Attributes:
        keys: Trusted public keys by name.
        signers: Names of the keys whose signatures make a version trusted; ``None`` means
            every listed key. Approver keys need not be signers.
        require_signature: Where a trusted signature is required (``true`` means everywhere).
        allow_pickle: Whether joblib / pickle files may be loaded at all.
        approvals: Per gate, how many approvals from which keys.
        generation: Bumped by every stored change; a change must name the generation it
            replaces (what ``trust show --json`` printed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    keys: list[TrustedKey] = Field(default_factory=list)
    signers: list[str] | None = None
    require_signature: SignatureRequirements = Field(default_factory=SignatureRequirements)
    allow_pickle: bool = True
    approvals: dict[Gate, ApprovalGate] = Field(default_factory=dict)
    generation: int = Field(default=0, ge=0)
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _everywhere(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("require_signature"), bool):
            flag = data["require_signature"]
            data = {
                **data,
                "require_signature": dict.fromkeys(("load", "pull", "serve", "alias"), flag),
            }
        return data

    @model_validator(mode="after")
    def _names_resolve(self) -> TrustPolicy:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("two keys have the same name")
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("the same public key is listed twice")
        known = set(names)
        for name in self.signers or []:
            if name not in known:
                raise ValueError(f"signer {name!r} is not among the keys")
        for gate, rule in self.approvals.items():
            for name in rule.keys:
                if name not in known:
                    raise ValueError(f"approvals.{gate}: key {name!r} is not among the keys")
        if self.require_signature.any() and not self.signing_keys():
            raise ValueError("signatures are required but no key is trusted to sign")
        return self

    def key(self, name_or_id: str) -> TrustedKey | None:
        """The trusted key with this name or key id."""
        for k in self.keys:
            if name_or_id in (k.name, k.id):
                return k
        return None

    def signing_keys(self) -> list[TrustedKey]:
        """Keys whose signatures make a version trusted."""
        if self.signers is None:
            return list(self.keys)
        return [k for k in self.keys if k.name in self.signers]

    def requires(self, use: Use) -> bool:
        """Whether ``use`` needs a trusted signature."""
        return bool(getattr(self.require_signature, use))

    def content(self) -> dict[str, Any]:
        """The policy without the fields a stored change fills in."""
        return self.model_dump(
            mode="json", exclude={"generation", "updated_at", "updated_by", "reason"}
        )

    def to_json(self) -> bytes:
        """Canonical bytes."""
        return canonical_json(self.model_dump(mode="json"))


def parse_trust_policy(
    data: bytes | str | dict[str, Any], source: str = "trust policy"
) -> TrustPolicy:
    """Validate a policy from JSON bytes or a mapping.

    Raises:
        InvalidTrustPolicyError: Naming each problem.
    """
    try:
        if isinstance(data, dict):
            return TrustPolicy.model_validate(data)
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            raise InvalidTrustPolicyError(f"{source} is not a JSON object")
        return TrustPolicy.model_validate(parsed)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
                for err in exc.errors()
            )
        else:
            problems = str(exc)
        raise InvalidTrustPolicyError(f"invalid {source}: {problems}") from exc
