"""The fast timestamp parser answers exactly what botocore's own parser answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from modelshelf._stores._s3_timestamps import parse_s3_timestamp

moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments, st.sampled_from(["Z", "+00:00", "+02:00", "-05:30"]), st.booleans())
def test_iso_8601_as_in_listings(moment: datetime, zone: str, fraction: bool) -> None:
    offset = (
        timedelta(0)
        if zone in ("Z", "+00:00")
        else timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
    )
    local = moment.astimezone(timezone(offset))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond:06d}" if fraction else "")
    text += zone
    parsed = parse_s3_timestamp(text)
    assert parsed == parse_timestamp(text), f"{text!r} parsed unlike botocore"
    assert parsed.utcoffset() == offset, f"{text!r} lost its offset"


@given(moments)
def test_http_dates_as_in_headers(moment: datetime) -> None:
    text = format_datetime(moment.replace(microsecond=0), usegmt=True)
    assert parse_s3_timestamp(text) == parse_timestamp(text), f"{text!r} parsed unlike botocore"


def test_other_forms_go_to_botocore() -> None:
    for text in ("1700000000", "2026-12-02", "2026-12-02 01:02:03", "Wed, 02 Dec 2026 01:02:03"):
        assert parse_s3_timestamp(text) == parse_timestamp(text), f"{text!r} differs"
    assert parse_s3_timestamp(1700000000) == parse_timestamp(1700000000)


def test_the_s3_client_uses_it(tmp_path: object) -> None:
    from modelshelf._stores._s3 import S3Store

    store = S3Store("s3://bucket", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    parser = store.client._endpoint._response_parser_factory.create_parser("rest-xml")
    assert parser._timestamp_parser is parse_s3_timestamp, "S3 answers are parsed by dateutil"
