"""The direct transport (GetObject/PutObject without botocore) against real S3 servers.

It must be indistinguishable from botocore to the store: the same bytes, etags and metadata
either way round, signatures the server checks, and the same retry and ambiguity outcomes
when real faults hit it (a proxy that answers 503, resets connections and drops answers).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelshelf._errors import (
    AccessDeniedError,
    ConfigurationError,
    KeyNotFoundError,
    PreconditionFailedError,
)
from modelshelf._stores import OVERWRITE, IfMatch
from modelshelf._stores._s3 import S3Store
from tests.support.backends import SMALL_PART, Backend
from tests.support.blobs import multipart_uploads
from tests.support.faultproxy import Fault, FaultProxy, match_requests

KEYS = ["plain.json", "a/b/c.bin", "with space/and+plus=.txt", "ünïcödé/ключ.json", "t~il(de)!*'"]


@pytest.fixture(params=["moto-server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def server(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    result: Backend = make_backend(request.param)
    return result


def _pair(backend: Backend, **options: Any) -> tuple[S3Store, S3Store]:
    direct = backend.open(**options)
    plain = backend.open(direct_http=False, **options)
    assert isinstance(direct, S3Store) and isinstance(plain, S3Store)
    assert direct.direct, "an explicit http endpoint should use the direct transport"
    assert not plain.direct
    return direct, plain


def test_direct_and_botocore_read_each_others_writes(server: Backend, tmp_path: Path) -> None:
    direct, plain = _pair(server)
    for i, key in enumerate(KEYS):
        data = f"payload {i} {key}".encode() * (i + 1)
        writer, reader = (direct, plain) if i % 2 else (plain, direct)
        etag = writer.put(key, data)
        got = reader.get(key)
        assert got is not None and got.data == data, f"{key!r}: bytes differ across transports"
        assert got.etag == etag, f"{key!r}: etag differs across transports"
        assert reader.head(key).size == len(data)
        dest = tmp_path / f"{i}.bin"
        info, digest = reader.get_file_hashed(key, dest)
        assert dest.read_bytes() == data and info.etag == etag
    listed = [(i.key, i.size, i.etag, i.last_modified) for i in direct.list("")]
    assert sorted(k for k, *_ in listed) == sorted(KEYS)
    assert listed == [(i.key, i.size, i.etag, i.last_modified) for i in plain.list("")], (
        "the direct listing differs from botocore's"
    )
    assert direct.list_folders("") == plain.list_folders("")
    assert [i.key for i in direct.list("", start_after="a/b", limit=2)] == [
        i.key for i in plain.list("", start_after="a/b", limit=2)
    ]


def test_direct_conditions_behave_like_botocore(server: Backend) -> None:
    direct, _ = _pair(server)
    etag = direct.put("k", b"one")
    with pytest.raises(PreconditionFailedError):
        direct.put("k", b"two")  # create over an existing key
    with pytest.raises(PreconditionFailedError):
        direct.put("k", b"two", mode=IfMatch("0" * 32))
    new = direct.put("k", b"two", mode=IfMatch(etag))
    assert direct.get("k", if_none_match=new) is None, "an unchanged object must answer 304"
    got = direct.get("k", if_none_match=etag)
    assert got is not None and got.data == b"two"
    direct.put("k", b"three", mode=OVERWRITE)
    with pytest.raises(KeyNotFoundError):
        direct.get("missing")
    with pytest.raises(PreconditionFailedError):
        direct.put("missing", b"x", mode=IfMatch(etag))


@pytest.mark.seaweedfs
def test_a_wrong_secret_is_refused_by_the_server(make_backend: Any) -> None:
    backend = make_backend("seaweedfs")  # SeaweedFS checks every signature; moto does not
    store = backend.open()
    store.put("k", b"signed right")
    assert isinstance(store, S3Store) and store.direct
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        wrong = backend.open(retry_delay=0.01)
    with pytest.raises(AccessDeniedError):
        wrong.get("k")
    with pytest.raises(AccessDeniedError):
        wrong.put("k2", b"x")


def test_requests_are_observed_on_the_direct_transport(server: Backend) -> None:
    direct, _ = _pair(server)
    seen: list[str] = []
    direct.observe_requests(lambda operation, params: seen.append(operation))
    direct.put("k", b"x")
    direct.get("k")
    list(direct.list(""))
    assert seen == ["PutObject", "GetObject", "ListObjectsV2"]


@pytest.fixture
def proxied(server: Backend) -> Iterator[tuple[FaultProxy, S3Store, S3Store]]:
    with FaultProxy(upstream=str(server.endpoint_url), seed=3) as proxy:
        options = {**server.store_options, "endpoint_url": proxy.endpoint_url}
        store = S3Store(server.uri, retry_delay=0.01, max_attempts=4, **options)
        assert store.direct
        clean = server.open(direct_http=False)
        assert isinstance(clean, S3Store)
        yield proxy, store, clean


def test_a_503_is_retried(proxied: tuple[FaultProxy, S3Store, S3Store]) -> None:
    proxy, store, clean = proxied
    clean.put("k", b"data")
    proxy.set_match(match_requests("GET"))
    proxy.force(Fault.SLOWDOWN, 2)
    got = store.get("k")
    assert got is not None and got.data == b"data"
    assert proxy.stats.slowdown == 2, "the forced 503s did not fire"


def test_a_reset_connection_is_retried(proxied: tuple[FaultProxy, S3Store, S3Store]) -> None:
    proxy, store, clean = proxied
    proxy.set_match(match_requests("PUT"))
    proxy.force(Fault.RESET, 1)
    etag = store.put("k", b"data")
    got = clean.get("k")
    assert got is not None and got.data == b"data" and got.etag == etag
    assert proxy.stats.reset == 1


def test_a_dropped_answer_to_a_create_that_landed_is_success(
    proxied: tuple[FaultProxy, S3Store, S3Store],
) -> None:
    proxy, store, clean = proxied
    proxy.set_match(match_requests("PUT"))
    proxy.force(Fault.DROP_RESPONSE, 1)
    etag = store.put("k", b"ours")  # the retry meets 412 and finds our own bytes
    got = clean.get("k")
    assert got is not None and got.data == b"ours" and got.etag == etag
    assert proxy.stats.drop_response == 1


def test_a_dropped_answer_then_someone_elses_bytes_is_a_conflict(
    proxied: tuple[FaultProxy, S3Store, S3Store],
) -> None:
    proxy, store, clean = proxied
    clean.put("k", b"theirs")
    proxy.set_match(match_requests("PUT"))
    proxy.force(Fault.DROP_RESPONSE, 1)  # the server refuses (412) and the answer is lost
    with pytest.raises(PreconditionFailedError):
        store.put("k", b"ours")
    got = clean.get("k")
    assert got is not None and got.data == b"theirs", "the other writer's bytes must stay"


def test_where_the_direct_transport_is_used(server: Backend) -> None:
    endpoint = str(server.endpoint_url)
    assert S3Store("s3://b", endpoint_url=endpoint).direct
    assert not S3Store("s3://b", endpoint_url=endpoint, direct_http=False).direct
    assert not S3Store("s3://b", region="us-east-1").direct, "AWS's own endpoints use botocore"
    assert not S3Store("s3://b", client=server.s3_client()).direct, "a client passed in is used"
    # The environment is restored before the backend's own teardown talks to the server.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSHELF_DIRECT_HTTP", "off")
        assert not S3Store("s3://b", endpoint_url=endpoint).direct
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("http_proxy", "http://127.0.0.1:9")
        patch.setenv("no_proxy", "")
        assert not S3Store("s3://b", endpoint_url="http://10.1.2.3:8333").direct, "proxied"


def test_reads_on_the_direct_transport_build_no_botocore_client(
    server: Backend, tmp_path: Path
) -> None:
    # Building botocore's client costs about 0.15 s of every CLI run; a pull never needs it.
    store = server.open()
    assert isinstance(store, S3Store) and store.direct
    seen: list[str] = []
    store.observe_requests(lambda operation, _: seen.append(operation))
    store.put("k", b"some bytes")
    assert store.head("k").size == 10
    assert store.get("k") is not None
    assert [i.key for i in store.list("")] == ["k"]
    store.get_file_hashed("k", tmp_path / "k")
    store.delete("k")
    assert store.stale_uploads("", timedelta(0)) == []
    assert store._built_client is None, (
        "a read, head, listing, small put, delete or uploads listing built the client"
    )
    store.client.head_bucket(Bucket=store._bucket)  # builds it: the observer must see it
    assert store._built_client is not None
    assert seen[-1] == "HeadBucket", f"an observer added before the client missed it: {seen}"


def test_a_multipart_push_on_the_direct_transport_builds_no_client_and_keeps_its_conditions(
    server: Backend, tmp_path: Path
) -> None:
    # Create, parts, complete (conditional) and, on failure, abort all go direct.
    store = server.open(part_size=SMALL_PART)
    assert isinstance(store, S3Store) and store.direct
    seen: list[str] = []
    store.observe_requests(lambda operation, _: seen.append(operation))
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(2 * SMALL_PART + 12345))
    etag = store.put_file("m/big", src)
    assert seen == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ], f"unexpected requests: {seen}"
    assert store._built_client is None, "a multipart push on the direct transport built botocore"
    plain = server.open(direct_http=False)
    got = plain.get("m/big")
    assert got is not None and got.data == src.read_bytes(), "botocore reads other bytes back"
    assert got.etag == etag, "the etag the complete answered is not the object's"
    with pytest.raises(PreconditionFailedError):
        store.put_file("m/big", src)  # a create over an existing key, refused at the complete
    if server.name != "moto-server":  # moto ignores If-Match on CompleteMultipartUpload
        with pytest.raises(PreconditionFailedError):
            store.put_file("m/big", src, mode=IfMatch("0" * 32))
    src.write_bytes(os.urandom(SMALL_PART + 1))
    replaced = store.put_file("m/big", src, mode=IfMatch(etag))
    got = plain.get("m/big")
    assert got is not None and got.data == src.read_bytes() and got.etag == replaced
    assert multipart_uploads(server) == [], "the refused uploads were not aborted"
    assert store._built_client is None, "a refused multipart push built botocore"


class _CompleteAnswers(ThreadingHTTPServer):
    """Answers every POST with status 200 and the body it is given (an S3 that fails a
    complete after its status line, or sends something else)."""

    def __init__(self, body: bytes) -> None:
        answer = body

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"<?xml version='1.0'?><Error><Code>InternalError</Code>"
            b"<Message>We encountered an internal error.</Message></Error>",
            "InternalError",
        ),
        (b"<CompleteMultipartUploadResult></CompleteMultipartUploadResult>", "no etag"),
        (b"not xml at all", "not xml"),
    ],
)
def test_a_complete_that_fails_after_its_200_raises_what_botocore_would(
    body: bytes, expected: str
) -> None:
    from botocore.credentials import Credentials
    from botocore.exceptions import ClientError, ConnectionClosedError

    from modelshelf._stores._s3_direct import DirectS3

    server = _CompleteAnswers(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        direct = DirectS3(
            f"http://127.0.0.1:{server.server_address[1]}",
            region="us-east-1",
            credentials=Credentials("AKID", "secret").get_frozen_credentials,
            max_connections=1,
            connect_timeout=2,
            read_timeout=2,
            ca_bundle=None,
            user_agent="test",
        )
        parts = {"Parts": [{"PartNumber": 1, "ETag": '"abc"'}]}
        call = functools.partial(
            direct.complete_multipart_upload,
            Bucket="b",
            Key="k",
            UploadId="u",
            MultipartUpload=parts,
        )
        if expected == "InternalError":
            with pytest.raises(ClientError) as caught:
                call()
            assert caught.value.response["Error"]["Code"] == "InternalError", (
                "an Error document in a 200 must raise its code, as botocore does"
            )
        else:
            # Neither answer: broken after sending, so the store re-reads what landed.
            with pytest.raises(ConnectionClosedError):
                call()
    finally:
        server.shutdown()
        server.server_close()


def test_a_bad_endpoint_is_refused_when_the_store_is_made() -> None:
    with pytest.raises(ConfigurationError, match="not an endpoint"):
        S3Store("s3://b", endpoint_url="not an endpoint")


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "body"),
    [
        ("GET", "a/b c/ключ+=.json", None, {"Range": "bytes=0-99"}, b""),
        (
            "PUT",
            "m/blobs/sha256/ab",
            None,
            {"x-amz-meta-sha256": "ab" * 32, "Content-Type": "text/html; charset=utf-8"},
            b"x" * 9,
        ),
        ("GET", None, {"list-type": "2", "prefix": "a b/ü", "start-after": "a b/t~"}, {}, b""),
    ],
)
def test_signatures_equal_botocores(
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    method: str,
    key: str | None,
    query: dict[str, str] | None,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Session tokens included: the servers under test do not issue them, botocore's signer
    is the reference for the same request at the same instant."""
    import datetime as dt
    import hashlib
    from urllib.parse import quote

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from modelshelf._stores._s3_direct import DirectS3, canonical_query_string

    when = dt.datetime(2026, 12, 2, 3, 4, 5, tzinfo=dt.UTC)
    creds = Credentials("AKIDEXAMPLE", "secret/EXAMPLE+key", token)
    direct = DirectS3(
        "http://127.0.0.1:8333",
        region="eu-west-3",
        credentials=creds.get_frozen_credentials,
        max_connections=1,
        connect_timeout=1,
        read_timeout=1,
        ca_bundle=None,
        user_agent="test",
    )
    path = "/bucket" + ("" if key is None else "/" + quote(key, safe="/~"))
    canonical_query = canonical_query_string(query or {})
    payload = hashlib.sha256(body).hexdigest()
    ours = direct._sign(method, path, canonical_query, dict(headers), payload, now=when)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    url = "http://127.0.0.1:8333" + path + (f"?{canonical_query}" if canonical_query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    botocore.auth.S3SigV4Auth(creds, "s3", "eu-west-3").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"], (
        "the direct transport signs this request unlike botocore"
    )


def test_an_uploads_listing_page_is_read_as_botocore_shapes_it() -> None:
    # Pages past the first (1,000 uploads) are rare on a test server: the answer S3 documents.
    from modelshelf._stores._s3_direct import _parse_uploads

    page = _parse_uploads(
        "ListMultipartUploads",
        b"""<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>r/m/blobs/sha256/b2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>r/m/blobs/sha256/a1</Key><UploadId>u1</UploadId>
    <Initiated>2026-12-01T10:00:00.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload>
  <Upload><Key>r/m/blobs/sha256/b2</Key><UploadId>u2</UploadId>
    <Initiated>2026-12-02T11:30:00.000Z</Initiated></Upload>
  <Upload><Key>r/m/blobs/sha256/c3</Key><UploadId>u3</UploadId></Upload>
</ListMultipartUploadsResult>""",
    )
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == [
        ("r/m/blobs/sha256/a1", "u1"),
        ("r/m/blobs/sha256/b2", "u2"),
        ("r/m/blobs/sha256/c3", "u3"),
    ]
    assert "Initiated" not in page["Uploads"][2], "an unknown start must not read as a time"
    assert page["Uploads"][0]["Initiated"].isoformat() == "2026-12-01T10:00:00+00:00"
    assert page["IsTruncated"] is True, "a truncated page must say so, or gc stops early"
    assert (page["NextKeyMarker"], page["NextUploadIdMarker"]) == ("r/m/blobs/sha256/b2", "u2")


def test_a_gc_run_on_the_direct_transport_builds_no_botocore_client(
    server: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelshelf import Registry

    monkeypatch.setenv("MODELSHELF_GC_GRACE", "0.05")
    registry = Registry(server.uri, cache_dir=tmp_path / "cache", **server.store_options)
    for i in range(3):
        (tmp_path / "m.bin").write_bytes(f"weights {i}".encode())
        registry.push("m", tmp_path / "m.bin", bump="minor")
    plan = registry.gc("m", keep_last=1, dry_run=False)
    assert len(plan.delete_blobs) == 2, f"gc should have deleted two old blobs: {plan}"
    store = registry.store
    assert isinstance(store, S3Store) and store.direct
    assert store._built_client is None, (
        "a gc run (listings, deletes, its uploads sweep) built botocore"
    )
