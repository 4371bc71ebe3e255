"""A faster parser for the timestamps S3 answers carry, given to botocore's response parser.

botocore parses every ``LastModified`` (one per key of a listing, one per GET's header)
with dateutil's general parser, about 0.06 ms each: 40% of the client CPU of a listing of 200
keys and 15% of a small GET, measured on SeaweedFS. S3 sends only two formats, ISO 8601 in
XML bodies and RFC 7231 dates in headers, which the standard library parses directly; any
other text goes to botocore's own parser, so the answers are the same datetimes as before.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.utils import parse_timestamp

__all__ = ["parse_s3_timestamp"]


def parse_s3_timestamp(value: Any) -> datetime:
    """Parse an S3 timestamp; anything but an aware ISO 8601 or HTTP date goes to botocore."""
    if isinstance(value, str):
        parsed: datetime | None = None
        try:
            if value[:1].isdigit():
                parsed = datetime.fromisoformat(value)
            elif value[-4:] == " GMT":
                parsed = parsedate_to_datetime(value)
        except (ValueError, TypeError, IndexError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    result: datetime = parse_timestamp(value)
    return result
