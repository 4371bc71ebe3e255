"""modelshelf: a model registry that is nothing but a bucket.

Push immutable, semantically versioned models with their cards to any S3-compatible store
or a local folder; serve them through audited ``active`` / ``canary`` aliases.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from typing import TYPE_CHECKING

from ._aliases import Aliases, HistoryRecord, ServedVersion
from ._card import (
    FileEntry,
    ModelCard,
    ModelVersion,
    Performance,
    TrainingData,
    canonical_json,
)
from ._errors import (
    AccessDeniedError,
    AliasNotSetError,
    ApprovalRequiredError,
    BlobsMissingError,
    CommitStateUnknownError,
    ConfigurationError,
    ConflictError,
    CorruptObjectError,
    DestinationExistsError,
    IntegrityError,
    InvalidAliasesError,
    InvalidBundleError,
    InvalidCardError,
    InvalidEventError,
    InvalidInputError,
    InvalidKeyError,
    InvalidNameError,
    InvalidPolicyError,
    InvalidReferenceError,
    InvalidSigningKeyError,
    InvalidTrustPolicyError,
    InvalidVersionError,
    KeyNotFoundError,
    ModelNotFoundError,
    ModelshelfError,
    NotFoundError,
    PickleNotAllowedError,
    PreconditionFailedError,
    PromotionConflictError,
    SchemaChangeError,
    SourceError,
    StoreError,
    StoreUnavailableError,
    TrustError,
    UntrustedTypesError,
    UntrustedVersionError,
    VersionExistsError,
    VersionNotFoundError,
)
from ._refs import ModelRef, check_name, parse_ref, parse_version
from ._registry import Registry
from ._stores import (
    CREATE,
    OVERWRITE,
    IfMatch,
    LocalStore,
    ObjectInfo,
    Store,
    StoredObject,
    SupportsContentAddressedPut,
    SupportsHashedGet,
    SupportsListFolders,
    SupportsStaleUploads,
    open_store,
)
from ._trust import (
    ApprovalGate,
    ApprovalInfo,
    KeyPair,
    SignatureInfo,
    SignatureRequirements,
    TrustedKey,
    TrustPolicy,
    new_key_pair,
    verify_folder,
)
from ._versions import Comparison, GcPlan, VersionDiff

if TYPE_CHECKING:  # imported for real on first use, by __getattr__ below
    from ._stores._s3 import S3Store

try:
    __version__ = _package_version("modelshelf")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "AccessDeniedError",
    "AliasNotSetError",
    "Aliases",
    "ApprovalGate",
    "ApprovalInfo",
    "ApprovalRequiredError",
    "CREATE",
    "BlobsMissingError",
    "CommitStateUnknownError",
    "Comparison",
    "ConfigurationError",
    "ConflictError",
    "DestinationExistsError",
    "FileEntry",
    "GcPlan",
    "HistoryRecord",
    "IfMatch",
    "CorruptObjectError",
    "IntegrityError",
    "InvalidAliasesError",
    "InvalidBundleError",
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
    "KeyPair",
    "LocalStore",
    "ModelCard",
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "ModelshelfError",
    "NotFoundError",
    "OVERWRITE",
    "ObjectInfo",
    "Performance",
    "PickleNotAllowedError",
    "PreconditionFailedError",
    "PromotionConflictError",
    "Registry",
    "S3Store",
    "SchemaChangeError",
    "ServedVersion",
    "SignatureInfo",
    "SignatureRequirements",
    "SourceError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredObject",
    "SupportsContentAddressedPut",
    "SupportsHashedGet",
    "SupportsListFolders",
    "SupportsStaleUploads",
    "TrainingData",
    "TrustError",
    "TrustPolicy",
    "TrustedKey",
    "UntrustedTypesError",
    "UntrustedVersionError",
    "VersionDiff",
    "VersionExistsError",
    "VersionNotFoundError",
    "__version__",
    "canonical_json",
    "check_name",
    "new_key_pair",
    "open_store",
    "parse_ref",
    "parse_version",
    "verify_folder",
]


def __getattr__(name: str) -> object:
    # boto3 costs ~0.3 s to import; a local-folder user should not pay for it.
    if name == "S3Store":
        from ._stores._s3 import S3Store

        return S3Store
    raise AttributeError(f"module 'modelshelf' has no attribute {name!r}")
