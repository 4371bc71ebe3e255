"""The trust half of :class:`~modelshelf.Registry`: sign, approve, check, set the policy.

Every check reads the policy at call time (the pinned one, else ``trust.json``) and works
from the manifest's bytes and the bundle objects only; a version is refused before any of
its blobs is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._card import ModelVersion
from .._errors import InvalidTrustPolicyError
from .._refs import ModelRef
from .._stores import Store
from .._versions import read_manifest_json
from ._keys import PrivateKey, load_private_key, load_public_key, public_pem
from ._policy import Gate, TrustedKey, TrustPolicy, Use, parse_trust_policy
from ._records import (
    PolicySource,
    approve_version,
    attach_bundle,
    read_approvals,
    read_signatures,
    resolve_policy,
    sign_version,
    trust_history,
    write_policy,
)
from ._verify import ApprovalInfo, SignatureInfo, require_approvals, require_signature

__all__ = ["PolicyInput", "TrustOperations", "TrustedVersion", "key_entry"]

PolicyInput = TrustPolicy | str | os.PathLike[str] | None
"""A pinned policy: the policy itself, a path to a policy file, or ``None`` (environment)."""


class TrustedVersion:
    """A manifest with the bytes it was read from and its checked signatures."""

    def __init__(
        self,
        manifest: ModelVersion,
        manifest_json: bytes,
        signatures: list[tuple[SignatureInfo, bytes]],
        policy: TrustPolicy,
    ) -> None:
        self.manifest = manifest
        self.manifest_json = manifest_json
        self.signatures = signatures
        self.policy = policy

    def trusted_bundle(self) -> bytes | None:
        """The bytes of one trusted signature (what ``pull`` writes as ``model.sig``)."""
        return next((data for info, data in self.signatures if info.trusted), None)


class TrustOperations:
    """Trust methods mixed into :class:`~modelshelf.Registry`."""

    store: Store
    user: str
    _trust_pin: PolicyInput

    if TYPE_CHECKING:

        def resolve(self, ref: str | ModelRef) -> ModelRef: ...

    # -- the policy ------------------------------------------------------------------------

    def trust_policy(self) -> TrustPolicy:
        """The policy in force: the pinned one, ``MODELSHELF_TRUST_POLICY``, else ``trust.json``."""
        return resolve_policy(self.store, self._trust_pin)[0]

    def trust_policy_source(self) -> tuple[TrustPolicy, PolicySource]:
        """The policy in force and where it came from."""
        return resolve_policy(self.store, self._trust_pin)

    def set_trust_policy(
        self, policy: TrustPolicy | dict[str, Any] | bytes, *, reason: str | None = None
    ) -> TrustPolicy:
        """Store a new ``trust.json`` (If-Match; recorded under ``_trust/history/``).

        ``policy.generation`` must be the generation stored now (as read), so a change made
        from a stale read is refused instead of undoing someone else's.

        Raises:
            InvalidTrustPolicyError: It does not validate.
            PreconditionFailedError: The stored policy moved on; re-read and reapply.
        """
        parsed = policy if isinstance(policy, TrustPolicy) else parse_trust_policy(policy)
        return write_policy(self.store, parsed, user=self.user, reason=reason)

    def add_trusted_key(
        self,
        name: str,
        public_key: str | os.PathLike[str] | bytes,
        *,
        signer: bool = True,
        reason: str | None = None,
    ) -> TrustPolicy:
        """Add a public key to ``trust.json`` (as a version signer unless ``signer=False``).

        Raises:
            InvalidTrustPolicyError: The name or key is already listed, or the key is bad.
            PreconditionFailedError: Another change landed in between; run it again.
        """
        from ._records import read_stored_policy

        current, _ = read_stored_policy(self.store)
        pem = public_pem(load_public_key(public_key))
        doc = current.model_dump(mode="json")
        doc["keys"] = [*doc["keys"], {"name": name, "public_key": pem}]
        if signer and current.signers is not None:
            doc["signers"] = [*current.signers, name]
        elif not signer:
            doc["signers"] = [k.name for k in current.signing_keys()]
        return write_policy(
            self.store,
            parse_trust_policy(doc, "the policy with the new key"),
            user=self.user,
            reason=reason or f"add key {name}",
        )

    def trust_history(self) -> list[TrustPolicy]:
        """Every ``trust.json`` ever stored, oldest first."""
        return trust_history(self.store)

    # -- signing and approving -------------------------------------------------------------

    def _read(self, ref: str | ModelRef) -> tuple[ModelVersion, bytes]:
        resolved = self.resolve(ref)
        assert resolved.version is not None
        return read_manifest_json(self.store, resolved.name, resolved.version)

    def sign(
        self,
        ref: str | ModelRef,
        key: str | os.PathLike[str] | bytes,
        *,
        password: str | None = None,
    ) -> str:
        """Write an OMS signature of a version by ``key`` (a PEM private key or its path).

        Built from the manifest: no file of the version is read. Signing again with the same
        key is a no-op.

        Returns:
            The bundle's key, ``{model}/signatures/{version}/{key-id}.sig``.

        Raises:
            InvalidSigningKeyError: The key cannot be used.
            InvalidBundleError: The version holds a file named ``model.sig`` or
                ``modelshelf-card.json``.
        """
        manifest, raw = self._read(ref)
        return sign_version(self.store, manifest, raw, load_private_key(key, password))[0]

    def sign_manifest(self, manifest: ModelVersion, private: PrivateKey) -> str:
        """Sign a version just pushed with an already loaded key (``push --sign-key``)."""
        # The stored bytes, not manifest.to_json(): an identical re-push returns a manifest
        # read back, whose re-serialisation need not match what an older release stored.
        _, raw = read_manifest_json(self.store, manifest.name, manifest.version)
        return sign_version(self.store, manifest, raw, private)[0]

    def attach_signature(
        self,
        ref: str | ModelRef,
        bundle: bytes | str | os.PathLike[str],
        public_key: str | os.PathLike[str] | bytes,
    ) -> str:
        """Store a bundle made by ``model_signing sign key`` over a pulled folder.

        Raises:
            InvalidBundleError: It does not verify with ``public_key`` or does not sign
                exactly this version's files and card.
        """
        manifest, raw = self._read(ref)
        data = bundle if isinstance(bundle, bytes) else Path(bundle).read_bytes()
        return attach_bundle(self.store, manifest, raw, data, load_public_key(public_key))[0]

    def approve(
        self,
        ref: str | ModelRef,
        key: str | os.PathLike[str] | bytes,
        *,
        gate: Gate = "promote",
        comment: str | None = None,
        password: str | None = None,
    ) -> str:
        """Write a signed approval of a version for ``gate`` (``canary`` or ``promote``).

        Returns:
            The approval's key.
        """
        if gate not in ("canary", "promote"):
            raise InvalidTrustPolicyError(f"unknown gate {gate!r}: use 'canary' or 'promote'")
        manifest, raw = self._read(ref)
        private = load_private_key(key, password)
        return approve_version(
            self.store, manifest, raw, private, gate, user=self.user, comment=comment
        )[0]

    def signatures(self, ref: str | ModelRef) -> list[SignatureInfo]:
        """Every signature of a version, checked against the policy in force."""
        manifest, raw = self._read(ref)
        policy = self.trust_policy()
        return [info for info, _ in read_signatures(self.store, policy, manifest, raw)]

    def approvals(self, ref: str | ModelRef, gate: Gate | None = None) -> list[ApprovalInfo]:
        """Every approval of a version (for one gate), checked against the policy in force."""
        manifest, raw = self._read(ref)
        return read_approvals(self.store, self.trust_policy(), manifest, raw, gate)

    # -- checks ----------------------------------------------------------------------------

    def trusted_version(
        self, ref: str | ModelRef, use: Use, *, policy: TrustPolicy | None = None
    ) -> TrustedVersion:
        """Read a version and check it for ``use`` under the policy.

        Raises:
            UntrustedVersionError: ``use`` needs a trusted signature and none covers
                exactly this version's files and card.
        """
        manifest, raw = self._read(ref)
        policy = policy or self.trust_policy()
        # Signatures are read when the policy lists keys at all: pull writes a trusted one
        # beside the files even where none is required.
        signatures = read_signatures(self.store, policy, manifest, raw) if policy.keys else []
        require_signature(use, policy, manifest, [info for info, _ in signatures])
        return TrustedVersion(manifest, raw, signatures, policy)

    def trusted_manifest(
        self, ref: str | ModelRef, use: Use, *, policy: TrustPolicy | None = None
    ) -> ModelVersion:
        """:meth:`trusted_version`'s manifest."""
        return self.trusted_version(ref, use, policy=policy).manifest

    def guard_alias_change(
        self, name: str, change: Callable[[Any], dict[str, Any]]
    ) -> Callable[[Any], dict[str, Any]]:
        """Wrap an alias change so it refuses untrusted or unapproved targets.

        The policy is read once, before the change; the check runs inside the change, on
        the state it applies to, so a retried change is checked again.
        """
        policy = self.trust_policy()
        if not policy.requires("alias") and not policy.approvals:
            return change

        def guarded(current: Any) -> dict[str, Any]:
            updates = change(current)
            active = updates.get("active", current.active)
            canary = updates.get("canary", current.canary)
            if active is not None and active != current.active:
                self.check_alias_target(name, active, "promote", policy, what="making active")
            if canary is not None and canary != current.canary:
                self.check_alias_target(name, canary, "canary", policy, what="starting a canary of")
            return updates

        return guarded

    def check_alias_target(
        self, name: str, version: str, gate: Gate, policy: TrustPolicy, *, what: str
    ) -> None:
        """Refuse to make ``version`` canary or active without its signature and approvals.

        Raises:
            UntrustedVersionError: Aliases need a signature and it has none trusted.
            ApprovalRequiredError: The gate needs more approvals.
        """
        if not policy.requires("alias") and gate not in policy.approvals:
            return
        trusted = self.trusted_version(f"{name}:{version}", "alias", policy=policy)
        if gate in policy.approvals:
            found = read_approvals(
                self.store, policy, trusted.manifest, trusted.manifest_json, gate
            )
            require_approvals(gate, policy, trusted.manifest, found, what=what)


def key_entry(name: str, public_key: str | os.PathLike[str] | bytes) -> TrustedKey:
    """A policy entry for a public key file."""
    return TrustedKey(name=name, public_key=public_pem(load_public_key(public_key)))
