"""The pluggable store layer: the protocol, its capabilities, and the two backends.

``S3Store`` is imported lazily (boto3 costs ~0.3 s to import; a local-folder user should
not pay for it): use ``from modelshelf._stores._s3 import S3Store`` or
:func:`open_store`.
"""

from __future__ import annotations

from ._local import LocalStore
from ._protocol import (
    CREATE,
    OVERWRITE,
    ContentOutcome,
    IfMatch,
    ObjectInfo,
    ProgressCallback,
    PutMode,
    Store,
    StoredObject,
    SupportsContentAddressedPut,
    SupportsHashedGet,
    SupportsListFolders,
    SupportsStaleUploads,
    SupportsUploadDigest,
    check_key,
)
from ._uri import open_store

__all__ = [
    "CREATE",
    "OVERWRITE",
    "ContentOutcome",
    "IfMatch",
    "LocalStore",
    "ObjectInfo",
    "ProgressCallback",
    "PutMode",
    "Store",
    "StoredObject",
    "SupportsContentAddressedPut",
    "SupportsHashedGet",
    "SupportsUploadDigest",
    "SupportsListFolders",
    "SupportsStaleUploads",
    "check_key",
    "open_store",
]
