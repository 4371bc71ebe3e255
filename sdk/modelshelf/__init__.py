"""modelshelf: a model registry that is nothing but a bucket.

Push immutable, semantically versioned models with their cards to any S3-compatible store
or a local folder; serve them through audited ``active`` / ``canary`` aliases.
"""

from __future__ import annotations

from ._card import FileEntry, ModelCard, ModelVersion, Performance, TrainingData
from ._errors import (
    AccessDeniedError,
    AliasNotSetError,
    CommitStateUnknownError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidAliasesError,
    InvalidCardError,
    InvalidEventError,
    InvalidInputError,
    InvalidKeyError,
    InvalidNameError,
    InvalidPolicyError,
    InvalidReferenceError,
    InvalidVersionError,
    KeyNotFoundError,
    ModelNotFoundError,
    ModelshelfError,
    NotFoundError,
    PreconditionFailedError,
    PromotionConflictError,
    SchemaChangeError,
    SourceError,
    StoreError,
    StoreUnavailableError,
    VersionExistsError,
    VersionNotFoundError,
)
from ._local import LocalStore
from ._refs import ModelRef, parse_ref
from ._registry import Registry
from ._store import CREATE, OVERWRITE, IfMatch, ObjectInfo, Store, StoredObject
from ._uri import open_store

__version__ = "0.1.0"

__all__ = [
    "CREATE",
    "OVERWRITE",
    "AccessDeniedError",
    "AliasNotSetError",
    "CommitStateUnknownError",
    "ConfigurationError",
    "ConflictError",
    "FileEntry",
    "IfMatch",
    "IntegrityError",
    "InvalidAliasesError",
    "InvalidCardError",
    "InvalidEventError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidNameError",
    "InvalidPolicyError",
    "InvalidReferenceError",
    "InvalidVersionError",
    "KeyNotFoundError",
    "LocalStore",
    "ModelCard",
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "ModelshelfError",
    "NotFoundError",
    "ObjectInfo",
    "Performance",
    "PreconditionFailedError",
    "PromotionConflictError",
    "Registry",
    "S3Store",
    "SchemaChangeError",
    "SourceError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredObject",
    "TrainingData",
    "VersionExistsError",
    "VersionNotFoundError",
    "__version__",
    "open_store",
    "parse_ref",
]


def __getattr__(name: str) -> object:
    # boto3 costs ~0.3 s to import; a local-folder user should not pay for it.
    if name == "S3Store":
        from ._s3 import S3Store

        return S3Store
    raise AttributeError(f"module 'modelshelf' has no attribute {name!r}")
