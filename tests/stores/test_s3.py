"""S3Store only: URIs and settings, then the retry and ambiguity rules, driven with faults
injected through botocore's event hooks against real S3 servers (moto's and SeaweedFS).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

from modelshelf._errors import (
    AccessDeniedError,
    CommitStateUnknownError,
    ConfigurationError,
    KeyNotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from modelshelf._stores import OVERWRITE, IfMatch
from modelshelf._stores._s3 import S3Store
from tests.support.backends import SMALL_PART, Backend
from tests.support.blobs import MiB, multipart_uploads, sha256_of

# -- S3Store: URIs and settings -----------------------------------------------------------


def test_s3_uri_parsing() -> None:
    fake: Any = object()
    assert S3Store("s3://bucket", client=fake).prefix == "", "a bare bucket has no prefix"
    store = S3Store("s3://bucket/a/b/", client=fake)
    assert (store.bucket, store.prefix, store.uri) == ("bucket", "a/b", "s3://bucket/a/b")
    for bad in ("s3://", "s3:///x", "s3://b/../x", "s3://b/a//c", "http://b/x", "s3://b/x?y=1"):
        with pytest.raises(ConfigurationError):
            S3Store(bad, client=fake)


def test_s3_settings_argument_then_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    fake: Any = object()
    store = S3Store("s3://b", client=fake)
    assert (store._part_size, store._concurrency, store._max_attempts) == (64 * MiB, 8, 6)
    monkeypatch.setenv("MODELSHELF_PART_SIZE", "8MiB")
    monkeypatch.setenv("MODELSHELF_CONCURRENCY", "3")
    monkeypatch.setenv("MODELSHELF_MAX_ATTEMPTS", "2")
    store = S3Store("s3://b", client=fake)
    assert (store._part_size, store._concurrency, store._max_attempts) == (8 * MiB, 3, 2)
    store = S3Store("s3://b", client=fake, part_size=6 * MiB, max_concurrency=1, max_attempts=9)
    assert (store._part_size, store._concurrency, store._max_attempts) == (6 * MiB, 1, 9)
    monkeypatch.setenv("MODELSHELF_PART_SIZE", "lots")
    with pytest.raises(ConfigurationError):
        S3Store("s3://b", client=fake)
    with pytest.raises(ConfigurationError):
        S3Store("s3://b", client=fake, part_size=MiB)


def test_s3_client_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    client = S3Store("s3://b").client
    assert client.meta.endpoint_url == "http://127.0.0.1:9", "AWS_ENDPOINT_URL_S3 ignored"
    assert client.meta.config.s3["addressing_style"] == "path", "an endpoint needs path style"
    assert client.meta.config.retries["total_max_attempts"] == 1, "botocore must not retry"
    explicit = S3Store("s3://b", endpoint_url="http://127.0.0.1:10").client
    assert explicit.meta.endpoint_url == "http://127.0.0.1:10", "endpoint_url must win"
    with pytest.raises(ConfigurationError):
        S3Store("s3://b", profile="no-such-profile")


def test_s3_prefix_isolates_the_registry(s3_backend: Backend) -> None:
    raw = s3_backend.s3_client()
    raw.put_object(Bucket=s3_backend.bucket, Key="registry2/k", Body=b"sibling")
    raw.put_object(Bucket=s3_backend.bucket, Key="k", Body=b"root")
    store = s3_backend.open()
    store.put("k", b"mine")
    assert [i.key for i in store.list()] == ["k"], "listing leaked keys outside the prefix"
    got = store.get("k")
    assert got is not None and got.data == b"mine", "keys must live under the prefix"
    assert raw.head_object(Bucket=s3_backend.bucket, Key="registry/k")["ContentLength"] == 4


def test_s3_missing_bucket_is_a_configuration_error(s3_backend: Backend) -> None:
    store = S3Store(
        f"s3://no-such-bucket-{os.getpid()}/x", **s3_backend.store_options, max_attempts=1
    )
    with pytest.raises(ConfigurationError, match=r"bucket 'no-such-bucket-\d+' does not exist"):
        store.get("k")


def test_s3_unreachable_endpoint_is_unavailable() -> None:
    from tests.support.servers import free_port

    store = S3Store(
        "s3://b/x",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        max_attempts=3,
        retry_delay=0.01,
    )
    with pytest.raises(StoreUnavailableError):
        store.get("k")
    with pytest.raises(StoreUnavailableError):
        store.put("k", b"x")  # nothing was ever sent: not ambiguous


# -- S3Store: retries and ambiguous writes, with injected faults --------------------------


class Faults:
    """Inject failures into one store's client, counting what happened."""

    def __init__(self, store: S3Store) -> None:
        self.events = store.client.meta.events
        self.calls: dict[str, int] = {}

    def answer(self, operation: str, status: int, code: str, times: int) -> None:
        """Answer the next ``times`` requests with an error; nothing reaches the server."""
        state = {"left": times}

        def before_call(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            # A before-call answer skips sending altogether (a before-send one would not
            # stop moto's in-process mock from carrying the request out).
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if state["left"] <= 0:
                return None
            state["left"] -= 1
            http = AWSResponse("injected://", status, {}, None)
            parsed = {
                "Error": {"Code": code, "Message": "injected by the test"},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
            }
            return http, parsed

        self.events.register(f"before-call.s3.{operation}", before_call)

    def count(self, operation: str) -> None:
        """Only count the requests for ``operation``."""
        self.answer(operation, 500, "unused", times=0)

    def lose_response(self, operation: str, times: int = 1) -> None:
        """Let the server carry out the next requests, then break the connection."""
        state = {"left": times}

        def after_call(http_response: Any, **_: Any) -> None:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if state["left"] > 0 and http_response.status_code < 300:
                state["left"] -= 1
                raise ConnectionClosedError(endpoint_url="injected://connection-reset")

        self.events.register(f"after-call.s3.{operation}", after_call)


@pytest.fixture(params=["moto-server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def server(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """An S3 server reached over HTTP (the in-process mock would only repeat moto-server)."""
    result: Backend = make_backend(request.param)
    return result


def _fault_store(backend: Backend, **options: Any) -> S3Store:
    # botocore's event hooks see only botocore's requests: these tests drive the retry loop
    # through them, so GetObject/PutObject stay on botocore here. The direct transport meets
    # the same faults for real, through a proxy (tests/stores/test_s3_direct.py).
    options.setdefault("direct_http", False)
    store = backend.open(part_size=SMALL_PART, retry_delay=0.01, **options)
    assert isinstance(store, S3Store)
    return store


def test_5xx_and_throttling_are_retried(server: Backend) -> None:
    store = _fault_store(server)
    faults = Faults(store)
    faults.answer("PutObject", 503, "SlowDown", times=2)
    faults.answer("GetObject", 500, "InternalError", times=1)
    etag = store.put("k", b"data", mode=OVERWRITE)
    assert faults.calls["PutObject"] == 3, "two 503s then success: three attempts expected"
    got = store.get("k")
    assert got is not None and got.data == b"data" and got.etag == etag, "retried read wrong"
    assert faults.calls["GetObject"] == 2, "one 500 then success: two attempts expected"


def test_conflict_409_is_retried(server: Backend) -> None:
    store = _fault_store(server)
    faults = Faults(store)
    faults.answer("PutObject", 409, "ConditionalRequestConflict", times=2)
    etag = store.put("k", b"data")
    assert faults.calls["PutObject"] == 3, "409 ConditionalRequestConflict must be retried"
    assert store.head("k").etag == etag, "the retried create must have written"


def test_retries_are_bounded(server: Backend) -> None:
    store = _fault_store(server, max_attempts=3)
    faults = Faults(store)
    faults.answer("GetObject", 503, "SlowDown", times=100)
    with pytest.raises(StoreUnavailableError):
        store.get("k")
    assert faults.calls["GetObject"] == 3, "max_attempts=3 must mean three attempts"


def test_412_is_never_retried(server: Backend) -> None:
    store = _fault_store(server)
    store.put("k", b"one")
    faults = Faults(store)
    faults.count("PutObject")
    with pytest.raises(PreconditionFailedError):
        store.put("k", b"two")
    assert faults.calls["PutObject"] == 1, "a plain 412 must not be retried"


def test_access_denied(server: Backend) -> None:
    store = _fault_store(server)
    Faults(store).answer("GetObject", 403, "AccessDenied", times=1)
    with pytest.raises(AccessDeniedError):
        store.get("k")


def test_ambiguous_create_that_landed_is_success(server: Backend) -> None:
    store = _fault_store(server)
    faults = Faults(store)
    faults.lose_response("PutObject")
    etag = store.put("m/versions/1.0.0.json", b"manifest")
    assert faults.calls["PutObject"] == 2, "the lost answer must have been retried once"
    head = store.head("m/versions/1.0.0.json")
    assert etag == head.etag, "success must return the etag of the object that landed"
    got = store.get("m/versions/1.0.0.json")
    assert got is not None and got.data == b"manifest", "our bytes must be stored"


def test_ambiguous_create_over_foreign_identical_object_is_success(
    server: Backend,
) -> None:
    # An object written without our sha256 label is compared by its bytes.
    server.s3_client().put_object(Bucket=server.bucket, Key="registry/blob", Body=b"same bytes")
    store = _fault_store(server)
    Faults(store).answer("PutObject", 500, "InternalError", times=1)
    etag = store.put("blob", b"same bytes")
    assert etag == store.head("blob").etag, "identical content must count as landed"


def test_genuine_conflict_after_ambiguous_attempt(server: Backend) -> None:
    store = _fault_store(server)
    other = store.put("m/versions/1.0.0.json", b"someone else's manifest")
    faults = Faults(store)
    faults.answer("PutObject", 500, "InternalError", times=1)
    with pytest.raises(PreconditionFailedError):
        store.put("m/versions/1.0.0.json", b"our manifest")
    assert faults.calls["PutObject"] == 2, "the 500 must be retried before the 412"
    got = store.get("m/versions/1.0.0.json")
    assert got is not None and got.data == b"someone else's manifest", "the winner must stay"
    assert got.etag == other, "a lost race must not change the object"


def test_ambiguous_if_match_that_landed_is_success(server: Backend) -> None:
    store = _fault_store(server)
    first = store.put("m/aliases.json", b"generation 1")
    faults = Faults(store)
    faults.lose_response("PutObject")
    etag = store.put("m/aliases.json", b"generation 2", mode=IfMatch(first))
    assert faults.calls["PutObject"] == 2, "the lost answer must have been retried once"
    got = store.get("m/aliases.json")
    assert got is not None and got.data == b"generation 2", "our replacement must be stored"
    assert got.etag == etag, "success must return the current etag"


def test_ambiguous_if_match_beaten_by_another_writer(server: Backend) -> None:
    store = _fault_store(server)
    first = store.put("m/aliases.json", b"generation 1")
    store.put("m/aliases.json", b"generation 2 by someone else", mode=IfMatch(first))
    Faults(store).answer("PutObject", 502, "BadGateway", times=1)
    with pytest.raises(PreconditionFailedError):
        store.put("m/aliases.json", b"generation 2 by us", mode=IfMatch(first))


def test_ambiguous_multipart_complete_that_landed_is_success(
    server: Backend, tmp_path: Path
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    store = _fault_store(server)
    faults = Faults(store)
    faults.lose_response("CompleteMultipartUpload")
    etag = store.put_file("m/blobs/big", src, sha256=sha256_of(src))
    assert faults.calls["CompleteMultipartUpload"] >= 1, "the fault was not injected"
    assert store.head("m/blobs/big").etag == etag, "success must return the stored etag"
    dest = tmp_path / "back.bin"
    store.get_file("m/blobs/big", dest)
    assert sha256_of(dest) == sha256_of(src), "the stored object is not our file"


def test_failed_part_upload_is_retried(server: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    store = _fault_store(server)
    faults = Faults(store)
    faults.answer("UploadPart", 503, "SlowDown", times=2)
    store.put_file("m/blobs/big", src)
    assert faults.calls["UploadPart"] == 5, "3 parts and 2 retried failures expected"
    dest = tmp_path / "back.bin"
    store.get_file("m/blobs/big", dest)
    assert sha256_of(dest) == sha256_of(src), "retried parts corrupted the object"


def test_failed_part_aborts_the_upload(server: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    store = _fault_store(server, max_attempts=2)
    Faults(store).answer("UploadPart", 500, "InternalError", times=100)
    with pytest.raises(StoreUnavailableError):
        store.put_file("m/blobs/big", src)
    assert multipart_uploads(server) == [], "a failed upload must be aborted"
    with pytest.raises(KeyNotFoundError):
        store.head("m/blobs/big")


def test_unreadable_outcome_is_commit_state_unknown(server: Backend) -> None:
    store = _fault_store(server, max_attempts=2)
    faults = Faults(store)
    faults.lose_response("PutObject")
    faults.answer("HeadObject", 500, "InternalError", times=100)
    with pytest.raises(CommitStateUnknownError):
        store.put("k", b"data")


def test_exhausted_ambiguous_write_is_commit_state_unknown(server: Backend) -> None:
    store = _fault_store(server, max_attempts=3)
    Faults(store).answer("PutObject", 500, "InternalError", times=100)
    with pytest.raises(CommitStateUnknownError):
        store.put("k", b"data")


def test_ranged_download_is_retried(server: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    store = _fault_store(server)
    store.put_file("m/blobs/big", src)
    faults = Faults(store)
    faults.lose_response("GetObject", times=1)
    dest = tmp_path / "back.bin"
    store.get_file("m/blobs/big", dest)
    assert faults.calls["GetObject"] == 4, "3 ranges and 1 retried range expected"
    assert sha256_of(dest) == sha256_of(src), "a retried range corrupted the download"


@pytest.mark.parametrize("checksums", [True, False], ids=["part-sha256", "signed-body"])
def test_multipart_with_and_without_part_checksums(
    s3_backend: Backend, tmp_path: Path, checksums: bool
) -> None:
    store = s3_backend.open(part_size=SMALL_PART, part_checksums=checksums)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    digest = sha256_of(src)
    store.put_file("m/blobs/sha256/x", src, sha256=digest)
    dest = tmp_path / "back.bin"
    store.get_file("m/blobs/sha256/x", dest)
    assert sha256_of(dest) == digest, f"round trip with part_checksums={checksums} corrupted"


def test_part_checksums_default_off_only_for_plain_http(s3_backend: Backend) -> None:
    store = s3_backend.open()
    expected = not (s3_backend.endpoint_url or "").startswith("http://")
    assert store._checksums is expected, "per-part checksums default: on, except plain http"  # type: ignore[attr-defined]
