"""The store contract: every backend (local folder, moto, moto over HTTP, SeaweedFS) behaves
the same for conditional writes, reads, listings, transfers and key checks.

The second half drives S3Store's retry and ambiguity rules with faults injected through
botocore's event hooks, against real S3 servers.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from conftest import SMALL_PART, Backend

from modelshelf._errors import (
    AccessDeniedError,
    CommitStateUnknownError,
    ConfigurationError,
    IntegrityError,
    InvalidKeyError,
    KeyNotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from modelshelf._stores._local import LocalStore
from modelshelf._stores._s3 import S3Store
from modelshelf._stores import OVERWRITE, IfMatch, Store

MiB = 1024 * 1024


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def multipart_uploads(backend: Backend) -> list[str]:
    """Keys of multipart uploads still open in the backend's bucket."""
    answer = backend.s3_client().list_multipart_uploads(Bucket=backend.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", ())]


# -- conditional writes -------------------------------------------------------------------


def test_create_twice_keeps_the_first(store: Store) -> None:
    etag = store.put("m/versions/1.0.0.json", b"first")
    with pytest.raises(PreconditionFailedError):
        store.put("m/versions/1.0.0.json", b"second")
    got = store.get("m/versions/1.0.0.json")
    assert got is not None, "an unconditional get never answers 'unchanged'"
    assert got.data == b"first", "a refused create must leave the first content in place"
    assert got.etag == etag, "a refused create must not change the etag"


def test_create_is_the_default_mode(store: Store) -> None:
    store.put("k", b"one")
    with pytest.raises(PreconditionFailedError):
        store.put("k", b"two")
    assert store.head("k").size == 3, "put without a mode must not overwrite"


def test_if_match_with_current_etag_replaces(store: Store) -> None:
    first = store.put("m/aliases.json", b"v1")
    second = store.put("m/aliases.json", b"v2", mode=IfMatch(first))
    assert second != first, "a replaced object must get a new etag"
    got = store.get("m/aliases.json")
    assert got is not None and got.data == b"v2", "if-match with the current etag must write"
    assert got.etag == second, "put must return the etag a later read sees"
    assert store.head("m/aliases.json").etag == second, "head must report the new etag"


def test_if_match_with_stale_or_wrong_etag_fails(store: Store) -> None:
    first = store.put("m/aliases.json", b"v1")
    second = store.put("m/aliases.json", b"v2", mode=IfMatch(first))
    with pytest.raises(PreconditionFailedError):
        store.put("m/aliases.json", b"v3", mode=IfMatch(first))
    with pytest.raises(PreconditionFailedError):
        store.put("m/aliases.json", b"v4", mode=IfMatch("0123456789abcdef"))
    got = store.get("m/aliases.json")
    assert got is not None and got.data == b"v2", "a failed if-match must not write"
    assert got.etag == second, "a failed if-match must not change the etag"


def test_if_match_on_missing_key_fails(store: Store) -> None:
    with pytest.raises(PreconditionFailedError):
        store.put("m/aliases.json", b"v1", mode=IfMatch("0123456789abcdef"))
    with pytest.raises(KeyNotFoundError):
        store.head("m/aliases.json")


def test_overwrite_writes_unconditionally(store: Store) -> None:
    first = store.put("k", b"one", mode=OVERWRITE)
    second = store.put("k", b"two!", mode=OVERWRITE)
    got = store.get("k")
    assert got is not None and got.data == b"two!", "overwrite must replace existing content"
    assert second != first and got.etag == second, "overwrite must return the new etag"


# -- reads --------------------------------------------------------------------------------


def test_missing_keys_raise_key_not_found(store: Store, tmp_path: Path) -> None:
    store.put("m/blobs/sha256/aa", b"x")
    for key in ("nothing", "m/blobs/sha256/ab", "m/blobs", "m/blobs/sha256"):
        with pytest.raises(KeyNotFoundError):
            store.get(key)
        with pytest.raises(KeyNotFoundError):
            store.head(key)
        with pytest.raises(KeyNotFoundError):
            store.get_file(key, tmp_path / "out")


def test_conditional_get(store: Store) -> None:
    etag = store.put("m/aliases.json", b'{"active": "1.0.0"}')
    assert store.get("m/aliases.json", if_none_match=etag) is None, (
        "get with the current etag must answer 'unchanged'"
    )
    new = store.put("m/aliases.json", b'{"active": "1.1.0"}', mode=IfMatch(etag))
    got = store.get("m/aliases.json", if_none_match=etag)
    assert got is not None, "get with an old etag must return the changed object"
    assert got.data == b'{"active": "1.1.0"}' and got.etag == new, "wrong data or etag"
    assert store.get("m/aliases.json", if_none_match=new) is None, "the new etag must match"
    with pytest.raises(KeyNotFoundError):
        store.get("m/other.json", if_none_match=etag)


def test_head_matches_put(store: Store) -> None:
    etag = store.put("a/b/c", b"12345")
    info = store.head("a/b/c")
    assert (info.key, info.size, info.etag) == ("a/b/c", 5, etag), f"head gave {info}"


def test_empty_objects(store: Store, tmp_path: Path) -> None:
    etag = store.put("empty", b"")
    got = store.get("empty")
    assert got is not None and got.data == b"" and got.etag == etag, "empty object mangled"
    assert store.head("empty").size == 0, "an empty object must have size 0"
    src = tmp_path / "empty-src"
    src.write_bytes(b"")
    store.put_file("empty-file", src, sha256=hashlib.sha256(b"").hexdigest())
    dest = tmp_path / "empty-dest"
    dest.write_bytes(b"stale bytes")
    info = store.get_file("empty-file", dest)
    assert dest.read_bytes() == b"" and info.size == 0, "get_file must truncate to 0 bytes"
    sizes = {i.key: i.size for i in store.list()}
    assert sizes == {"empty": 0, "empty-file": 0}, f"listing of empty objects: {sizes}"


# -- listing ------------------------------------------------------------------------------


def test_listing_past_one_page_in_key_order(store: Store) -> None:
    blob_keys = [f"m/blobs/{i:05d}" for i in range(1100)]
    other = ["m/versions/1.0.0.json", "m2/blobs/x", "n/a", "m/blobs-extra"]
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), blob_keys + other))

    listed = list(store.list("m/blobs/"))
    assert [i.key for i in listed] == blob_keys, "list must return every key, in key order"
    assert all(i.size == len(i.key) for i in listed), "listed sizes must match the objects"
    sample = listed[1050]
    assert sample.etag == store.head(sample.key).etag, "listed etag must match head"

    everything = [i.key for i in store.list()]
    assert everything == sorted(blob_keys + other), "an empty prefix must list all keys"
    under_m = [i.key for i in store.list("m/")]
    assert under_m == sorted([*blob_keys, "m/versions/1.0.0.json", "m/blobs-extra"]), (
        "prefix 'm/' must not include 'm2/...'"
    )
    partial = [i.key for i in store.list("m/blobs")]
    assert partial == sorted([*blob_keys, "m/blobs-extra"]), "prefixes match characters"
    assert [i.key for i in store.list("m/blobs/0105")] == [f"m/blobs/0105{d}" for d in range(10)]
    assert list(store.list("nothing/")) == [], "an unknown prefix lists nothing"


# -- files --------------------------------------------------------------------------------


def test_multipart_file_round_trip(store: Store, backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(12 * MiB + 12345))
    digest = sha256_of(src)
    sent: list[int] = []
    etag = store.put_file("m/blobs/sha256/big", src, sha256=digest, progress=sent.append)
    assert sum(sent) == src.stat().st_size, "upload progress must add up to the file size"
    if backend.is_s3:
        assert etag.endswith("-3"), f"a 12 MiB file with 5 MiB parts must go in 3 parts: {etag}"
        assert multipart_uploads(backend) == [], "no multipart upload may stay open"

    dest = tmp_path / "copy.bin"
    received: list[int] = []
    info = store.get_file("m/blobs/sha256/big", dest, progress=received.append)
    assert sha256_of(dest) == digest, "downloaded bytes differ from the uploaded file"
    assert (info.size, info.etag) == (src.stat().st_size, etag), f"get_file returned {info}"
    assert sum(received) == info.size, "download progress must add up to the object size"

    with pytest.raises(PreconditionFailedError):
        store.put_file("m/blobs/sha256/big", tmp_path / "model.bin")
    assert store.head("m/blobs/sha256/big").etag == etag, "a refused create must not write"
    if backend.is_s3:
        assert multipart_uploads(backend) == [], "a refused upload must be aborted"


def test_multipart_file_if_match(store: Store, backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(6 * MiB))
    first = store.put("m/big", b"small first version")
    second = store.put_file("m/big", src, mode=IfMatch(first))
    assert store.head("m/big").etag == second, "if-match multipart upload must replace"
    if backend.name in ("moto", "moto-server"):
        return  # moto ignores If-Match on CompleteMultipartUpload
    with pytest.raises(PreconditionFailedError):
        store.put_file("m/big", src, mode=IfMatch(first))
    assert store.head("m/big").etag == second, "a stale if-match upload must not write"


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["single", "multipart"])
def test_put_file_with_wrong_sha256_writes_nothing(
    store: Store, backend: Backend, tmp_path: Path, size: int
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(size))
    with pytest.raises(IntegrityError):
        store.put_file("m/blobs/sha256/bad", src, sha256="0" * 64)
    with pytest.raises(KeyNotFoundError):
        store.head("m/blobs/sha256/bad")
    assert [i.key for i in store.list()] == [], "a failed upload must leave no object"
    if backend.is_s3:
        assert multipart_uploads(backend) == [], "a failed upload must be aborted"


def test_put_file_without_sha256(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(6 * MiB))
    store.put_file("m/f", src)
    dest = tmp_path / "back.bin"
    store.get_file("m/f", dest)
    assert sha256_of(dest) == sha256_of(src), "round trip without a given sha256 failed"


# -- keys and deletes ---------------------------------------------------------------------

BAD_KEYS = ["", "/abs", "a/../b", "..", "a//b", "./a", "a/", "a\\b"]


def test_invalid_keys_are_refused(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for key in BAD_KEYS:
        calls: dict[str, Callable[[], Any]] = {
            "put": lambda key=key: store.put(key, b"x"),
            "get": lambda key=key: store.get(key),
            "head": lambda key=key: store.head(key),
            "delete": lambda key=key: store.delete(key),
            "put_file": lambda key=key: store.put_file(key, src),
            "get_file": lambda key=key: store.get_file(key, tmp_path / "out"),
        }
        for name, call in calls.items():
            with pytest.raises(InvalidKeyError):
                call()
                pytest.fail(f"{name}({key!r}) accepted an invalid key")
    assert list(store.list()) == [], "a refused key must write nothing"


def test_delete_is_idempotent(store: Store) -> None:
    store.delete("never/written")
    store.put("a/b", b"x")
    store.put("a/c", b"y")
    store.delete("a/b")
    store.delete("a/b")
    store.delete("a")  # a "folder" is not an object: nothing to delete, no error
    with pytest.raises(KeyNotFoundError):
        store.head("a/b")
    assert [i.key for i in store.list()] == ["a/c"], "delete removed the wrong objects"
    store.put("a/b", b"again")
    got = store.get("a/b")
    assert got is not None and got.data == b"again", "a deleted key must be creatable again"


# -- races --------------------------------------------------------------------------------

_RACER = textwrap.dedent(
    """
    import sys
    from modelshelf._errors import PreconditionFailedError
    from modelshelf._stores._local import LocalStore

    store = LocalStore(sys.argv[1])
    me, rounds = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(rounds):
        try:
            store.put(f"race/{n}", me.encode())
            print("won", n, flush=True)
        except PreconditionFailedError:
            print("lost", n, flush=True)
    """
)


def test_local_create_race_between_processes(tmp_path: Path) -> None:
    root, writers, rounds = tmp_path / "registry", 8, 10
    LocalStore(root)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(root), f"writer-{w}", str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
            "a racing process failed to start"
        )
    for proc in procs:  # release them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = {}
    for w, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"writer-{w} crashed"
        outputs[f"writer-{w}"] = out.split("\n")
    store = LocalStore(root)
    for n in range(rounds):
        winners = [w for w, lines in outputs.items() if f"won {n}" in lines]
        losers = [w for w, lines in outputs.items() if f"lost {n}" in lines]
        assert len(winners) == 1, f"round {n}: {len(winners)} writers won a create race"
        assert len(losers) == writers - 1, f"round {n}: a writer neither won nor lost"
        got = store.get(f"race/{n}")
        assert got is not None and got.data == winners[0].encode(), (
            f"round {n}: the stored bytes are not the winner's"
        )


@pytest.mark.parametrize("name", ["local", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_create_race_between_threads(make_backend: Any, name: str) -> None:
    # Not on moto: its check-then-write for If-None-Match is not atomic under threads.
    store = make_backend(name).open()
    barrier = threading.Barrier(4)

    def racer(n: int) -> bool:
        barrier.wait()
        try:
            store.put("race", f"writer-{n}".encode())
            return True
        except PreconditionFailedError:
            return False

    with cf.ThreadPoolExecutor(4) as pool:
        won = list(pool.map(racer, range(4)))
    assert won.count(True) == 1, f"{won.count(True)} of 4 racing creates won"
    got = store.get("race")
    assert got is not None and got.data == f"writer-{won.index(True)}".encode(), (
        "the stored bytes are not the winner's"
    )


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
    with pytest.raises(ConfigurationError, match="bucket does not exist"):
        store.get("k")


def test_s3_unreachable_endpoint_is_unavailable() -> None:
    from _servers import free_port

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


def test_list_folders_names_the_first_level_below_a_prefix(store: Store) -> None:
    for key in ("iris/versions/1.0.0.json", "iris/aliases.json", "wine/blobs/sha256/ab", "top"):
        store.put(key, b"x")
    assert store.list_folders("") == ["iris", "wine"], "folders at the root"  # type: ignore[attr-defined]
    assert store.list_folders("iris/") == ["versions"]  # type: ignore[attr-defined]
    assert store.list_folders("nothing/") == []  # type: ignore[attr-defined]


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
