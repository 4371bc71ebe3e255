"""Every error modelshelf raises, under one root.

Each class carries the CLI exit code that ``modelshelf`` returns for it; the codes are
listed in the README and never reused::

    ModelshelfError (1)
    ├── InvalidInputError (2)            bad input; refused before anything is written
    │   ├── InvalidSigningKeyError (3)   a key file that is not a usable EC key in PEM
    │   ├── InvalidBundleError (4)       a signature bundle that does not parse
    │   ├── InvalidNameError (10)
    │   ├── InvalidVersionError (11)
    │   ├── InvalidReferenceError (12)
    │   ├── InvalidCardError (13)
    │   ├── SourceError (14)             the source path is missing or unreadable
    │   ├── InvalidAliasesError (15)     an alias change or aliases object that breaks a rule
    │   ├── InvalidPolicyError (16)
    │   ├── InvalidEventError (17)
    │   ├── InvalidKeyError (18)         a store key that is empty or escapes the root
    │   └── InvalidTrustPolicyError (19) a trust policy that does not validate
    ├── NotFoundError (20)
    │   ├── ModelNotFoundError (21)
    │   ├── VersionNotFoundError (22)
    │   ├── AliasNotSetError (23)
    │   ├── KeyNotFoundError (24)        a store-level miss
    │   └── BlobsMissingError (25)       a version's blobs were collected; no alias may name it
    ├── ConflictError (30)               someone else won; re-read and decide again
    │   ├── VersionExistsError (31)
    │   ├── PreconditionFailedError (32) a conditional write lost (412 / file exists / etag moved)
    │   ├── PromotionConflictError (33)  another promoter run changed the canary first
    │   └── DestinationExistsError (34)  a pull would replace a different local file
    ├── SchemaChangeError (40)           schema changed without a MAJOR bump
    ├── IntegrityError (50)              stored bytes do not match their sha256
    │   └── CorruptObjectError (51)      a stored manifest or history record that does not validate
    ├── StoreError (60)                  the store failed us
    │   ├── StoreUnavailableError (61)   retries exhausted (5xx, timeouts, 409 conflicts)
    │   ├── CommitStateUnknownError (62) a write may or may not have landed; re-read
    │   └── AccessDeniedError (63)
    ├── ConfigurationError (70)          a registry URI, endpoint or setting that cannot work
    └── TrustError (80)                  the trust policy refuses this; nothing was loaded
        ├── UntrustedVersionError (81)   no trusted signature covers the version's files and card
        ├── PickleNotAllowedError (82)   the policy forbids loading pickle-based files
        ├── ApprovalRequiredError (83)   too few signed approvals for this step
        └── UntrustedTypesError (84)     a skops file holds types the caller did not trust

"Someone else won" (:class:`ConflictError`) and "outcome unknown"
(:class:`CommitStateUnknownError`) are kept apart on purpose: the first is an answer, the
second asks the caller to read the state again before deciding anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AliasNotSetError",
    "ApprovalRequiredError",
    "BlobsMissingError",
    "CommitStateUnknownError",
    "ConfigurationError",
    "ConflictError",
    "CorruptObjectError",
    "DestinationExistsError",
    "IntegrityError",
    "InvalidBundleError",
    "InvalidAliasesError",
    "InvalidCardError",
    "InvalidEventError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidNameError",
    "InvalidPolicyError",
    "InvalidReferenceError",
    "InvalidSigningKeyError",
    "InvalidTrustPolicyError",
    "InvalidVersionError",
    "KeyNotFoundError",
    "ModelNotFoundError",
    "ModelshelfError",
    "NotFoundError",
    "PickleNotAllowedError",
    "PreconditionFailedError",
    "PromotionConflictError",
    "SchemaChangeError",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "TrustError",
    "UntrustedTypesError",
    "UntrustedVersionError",
    "VersionExistsError",
    "VersionNotFoundError",
    "validation_message",
]

# pydantic prefixes what a validator raised with the exception's kind; users need the text.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def validation_message(error: Mapping[str, Any]) -> str:
    """The message of one pydantic error (an item of ``ValidationError.errors()``), without
    pydantic's ``Value error,`` prefix."""
    message = str(error.get("msg", ""))
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


class ModelshelfError(Exception):
    """Root of every error modelshelf raises."""

    exit_code: int = 1


class InvalidInputError(ModelshelfError):
    """Input that breaks a rule; nothing was written."""

    exit_code = 2


class InvalidSigningKeyError(InvalidInputError):
    """A key file that is not an EC private or public key in PEM (or needs another password)."""

    exit_code = 3


class InvalidBundleError(InvalidInputError):
    """A signature or approval bundle that does not parse as a DSSE / Sigstore bundle."""

    exit_code = 4


class InvalidNameError(InvalidInputError):
    """A model name that does not match ``[a-z0-9][a-z0-9._-]{0,127}``."""

    exit_code = 10


class InvalidVersionError(InvalidInputError):
    """A version that is not exactly ``MAJOR.MINOR.PATCH``, or a bad bump."""

    exit_code = 11


class InvalidReferenceError(InvalidInputError):
    """A model reference such as ``iris:1.2.0`` or ``iris@active`` that does not parse."""

    exit_code = 12


class InvalidCardError(InvalidInputError):
    """A model card that does not validate."""

    exit_code = 13


class SourceError(InvalidInputError):
    """A push source that is missing, unreadable or empty."""

    exit_code = 14


class InvalidAliasesError(InvalidInputError):
    """An alias change, or a stored aliases object, that breaks the alias rules."""

    exit_code = 15


class InvalidPolicyError(InvalidInputError):
    """A promotion policy that does not validate."""

    exit_code = 16


class InvalidEventError(InvalidInputError):
    """A promoter event that does not validate."""

    exit_code = 17


class InvalidKeyError(InvalidInputError):
    """A store key that is empty, absolute, or escapes the registry root."""

    exit_code = 18


class InvalidTrustPolicyError(InvalidInputError):
    """A trust policy (``trust.json`` or a pinned file) that does not validate."""

    exit_code = 19


class NotFoundError(ModelshelfError):
    """Something asked for does not exist."""

    exit_code = 20


class ModelNotFoundError(NotFoundError):
    """No version of this model was ever committed."""

    exit_code = 21


class VersionNotFoundError(NotFoundError):
    """The model exists but not this version."""

    exit_code = 22


class AliasNotSetError(NotFoundError):
    """The alias asked for (``active`` or ``canary``) points at no version."""

    exit_code = 23


class KeyNotFoundError(NotFoundError):
    """The store holds no object under this key."""

    exit_code = 24


class BlobsMissingError(NotFoundError):
    """A version whose blobs are gone (collected by gc, or deleted), so no alias may name it."""

    exit_code = 25


class ConflictError(ModelshelfError):
    """Another writer won a race; re-read and decide again."""

    exit_code = 30


class VersionExistsError(ConflictError):
    """The version is already committed with different content."""

    exit_code = 31


class PreconditionFailedError(ConflictError):
    """A conditional write lost: the key exists, or its etag moved."""

    exit_code = 32


class PromotionConflictError(ConflictError):
    """Another promoter run changed the canary before this one could."""

    exit_code = 33


class DestinationExistsError(ConflictError):
    """A pull would replace a local file holding other content (allow it with ``overwrite``)."""

    exit_code = 34


class SchemaChangeError(ModelshelfError):
    """The card's input or output schema changed without a MAJOR bump."""

    exit_code = 40


class IntegrityError(ModelshelfError):
    """Stored bytes do not match the sha256 that names them."""

    exit_code = 50


class CorruptObjectError(IntegrityError):
    """A stored manifest or history record that does not parse or does not match its key."""

    exit_code = 51


class StoreError(ModelshelfError):
    """The object store failed."""

    exit_code = 60


class StoreUnavailableError(StoreError):
    """The store kept failing (5xx, timeouts, 409 conflicts) after every retry."""

    exit_code = 61


class CommitStateUnknownError(StoreError):
    """A write may or may not have landed; read the state again before deciding."""

    exit_code = 62


class AccessDeniedError(StoreError):
    """The store refused the credentials for this operation."""

    exit_code = 63


class ConfigurationError(ModelshelfError):
    """A registry URI, endpoint or setting that cannot work."""

    exit_code = 70


class TrustError(ModelshelfError):
    """The trust policy refuses an operation; nothing was loaded, pulled or changed."""

    exit_code = 80


class UntrustedVersionError(TrustError):
    """No signature by a trusted key covers exactly this version's files and card.

    Raised before any byte of the version is read, let alone unpickled.
    """

    exit_code = 81


class PickleNotAllowedError(TrustError):
    """The trust policy forbids loading pickle-based files (joblib, ``.pkl``)."""

    exit_code = 82


class ApprovalRequiredError(TrustError):
    """A canary start or promotion lacks the signed approvals the policy asks for."""

    exit_code = 83


class UntrustedTypesError(TrustError):
    """A skops file holds types the caller did not list as trusted."""

    exit_code = 84
