"""The one table that turns botocore failures into modelshelf errors.

:func:`kind_of` classifies a failure (retry, lost precondition, miss, denied, ...);
:func:`translate` builds the modelshelf error for it. ``S3Store`` calls them at its boundary
and nowhere else (docs/design.md, "Retries and ambiguous outcomes").
"""

from __future__ import annotations

from enum import Enum

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .._errors import (
    AccessDeniedError,
    ConfigurationError,
    IntegrityError,
    KeyNotFoundError,
    ModelshelfError,
    PreconditionFailedError,
    StoreError,
    StoreUnavailableError,
)
from ._protocol import IfMatch, PutMode

__all__ = ["Kind", "error_code", "http_status", "kind_of", "outcome_unknown", "translate"]

_RETRY_CODES = frozenset(
    {
        "ConditionalRequestConflict",
        "OperationAborted",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        # The body was damaged in transit and refused: sending it again is the cure.
        *(_DIGEST_CODES := ("BadDigest", "XAmzContentSHA256Mismatch")),
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


class Kind(Enum):
    """What a failure means for the caller, decided in one place."""

    RETRY = "retry"
    PRECONDITION = "precondition"
    MISSING = "missing"
    NO_BUCKET = "no-bucket"
    NO_UPLOAD = "no-upload"
    DENIED = "denied"
    CREDENTIALS = "credentials"
    OTHER = "other"


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def kind_of(exc: Exception) -> Kind:
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        if code in _PRECONDITION_CODES or status == 412:
            return Kind.PRECONDITION
        if code == "NoSuchBucket":
            return Kind.NO_BUCKET
        if code == "NoSuchUpload":
            return Kind.NO_UPLOAD
        if code in _MISSING_CODES:
            return Kind.MISSING
        if code in _DENIED_CODES or status == 403:
            return Kind.DENIED
        if code in _RETRY_CODES or status == 429 or (status >= 500 and status != 501):
            return Kind.RETRY
        return Kind.OTHER
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
        return Kind.CREDENTIALS
    if isinstance(
        exc,
        HTTPClientError
        | BotoConnectionError
        | IncompleteReadError
        | FlexibleChecksumError
        | ChecksumError,
    ):
        return Kind.RETRY
    return Kind.OTHER


def outcome_unknown(exc: Exception) -> bool:
    """True when the request may have been carried out although we saw a failure.

    A connection that could not be opened (``EndpointConnectionError``, connect timeouts)
    sent nothing. A reset or read timeout after sending, or a 5xx, may follow a write the
    server already made durable.
    """
    if isinstance(exc, ClientError):
        status = http_status(exc)
        return status >= 500 and status != 501
    return isinstance(exc, HTTPClientError)


def translate(
    exc: Exception, *, action: str, mode: PutMode | None = None, bucket: str | None = None
) -> ModelshelfError:
    """The modelshelf error for a failed S3 call; the single place where that is decided.

    Args:
        exc: What boto3 raised.
        action: What was attempted, for the message ("write 'a/b' to s3://bucket/prefix").
        mode: The put mode of a write: replacing by etag a key that is gone is a lost race,
            not a miss.
        bucket: The bucket, named in the advice when it does not exist.
    """
    detail = str(exc)
    kind = kind_of(exc)
    if kind is Kind.PRECONDITION:
        return PreconditionFailedError(f"cannot {action}: a precondition failed ({detail})")
    if kind is Kind.MISSING:
        if isinstance(mode, IfMatch):
            return PreconditionFailedError(
                f"cannot {action}: the object is gone, so its etag cannot match ({detail})"
            )
        return KeyNotFoundError(f"cannot {action}: no such object")
    if kind is Kind.NO_BUCKET:
        name = bucket or "BUCKET"
        return ConfigurationError(
            f"cannot {action}: the bucket {name!r} does not exist. Create it (for example "
            f"`aws s3 mb s3://{name}`, with --endpoint-url for an S3-compatible store), or "
            "fix the registry URI or the endpoint (endpoint_url / AWS_ENDPOINT_URL_S3)"
        )
    if kind is Kind.DENIED:
        return AccessDeniedError(
            f"cannot {action}: access denied ({detail}). Check the credentials, profile and "
            "the bucket policy (reads need s3:GetObject and s3:ListBucket, writes s3:PutObject)"
        )
    if kind is Kind.CREDENTIALS:
        return ConfigurationError(
            f"cannot {action}: no usable AWS credentials ({detail}). Set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance role applies"
        )
    if kind is Kind.RETRY:
        if isinstance(exc, ClientError) and error_code(exc) in _DIGEST_CODES:
            # Refused on every attempt: not the network's doing but bytes that are not the
            # ones hashed (a file written while it was sent).
            return IntegrityError(
                f"cannot {action}: the bytes did not reach the store as they were hashed, on "
                f"any attempt ({detail}); the file changed since it was hashed, or its bytes "
                "are damaged on the way. Nothing was written: push it again"
            )
        return StoreUnavailableError(f"cannot {action}: the store kept failing ({detail})")
    if kind is Kind.NO_UPLOAD:
        return StoreError(f"cannot {action}: the multipart upload was aborted ({detail})")
    return StoreError(f"cannot {action}: {detail}")
