"""S3Store's large transfers: downloads hashed in order as the ranges arrive (never read back),
uploads streamed from the file, and what a corrupt or changing object does to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from modelshelf import Registry
from modelshelf._errors import IntegrityError
from modelshelf._stores import OVERWRITE, SupportsHashedGet, SupportsUploadDigest
from modelshelf._stores import _s3 as s3_module
from modelshelf._stores import _s3_transfer as transfer_module
from modelshelf._stores._s3 import S3Store
from modelshelf._stores._s3_errors import Kind, kind_of, translate
from modelshelf._stores._s3_transfer import RangeHasher
from modelshelf.layout import blob_key
from tests.support.backends import SMALL_PART, Backend
from tests.support.blobs import MiB, multipart_uploads, sha256_of


def _counted(store: S3Store) -> dict[str, int]:
    calls: dict[str, int] = {}

    def count(operation: str, params: Any) -> None:
        calls[operation] = calls.get(operation, 0) + 1

    store.observe_requests(count)
    return calls


def test_range_hasher_hashes_ranges_written_in_any_order_from_many_threads(
    tmp_path: Path,
) -> None:
    data = os.urandom(3 * MiB + 12345)
    path = tmp_path / "download"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, len(data))
        ranges = [(o, min(o + 300_000, len(data))) for o in range(0, len(data), 300_000)]
        hasher = RangeHasher(fd, ranges)
        hashing = threading.Thread(target=hasher.run)
        hashing.start()
        order = list(range(len(ranges)))
        random.Random(7).shuffle(order)

        def write(indexes: list[int]) -> None:
            for i in indexes:
                start, end = ranges[i]
                for at in range(start, end, 65536):  # each range in pieces, reported as written
                    piece = data[at : min(at + 65536, end)]
                    os.pwrite(fd, piece, at)
                    hasher.advance(i, at + len(piece))

        writers = [threading.Thread(target=write, args=(order[i::4],)) for i in range(4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        hashing.join(10)
        assert not hashing.is_alive(), "the hasher did not finish once every range was written"
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest(), "ranges hashed out of order"
    finally:
        os.close(fd)


def test_range_hasher_stops_on_cancel_and_refuses_a_digest(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "download", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, 200)
        hasher = RangeHasher(fd, [(0, 100), (100, 200)])
        hashing = threading.Thread(target=hasher.run)
        hashing.start()
        hasher.advance(1, 200)  # the second range only: nothing to hash yet
        hashing.join(0.2)
        assert hashing.is_alive(), "the hasher ran past a range that was not written"
        hasher.cancel()
        hashing.join(5)
        assert not hashing.is_alive(), "cancel() must stop the hasher"
        with pytest.raises(RuntimeError, match="not hashed to its end"):
            hasher.hexdigest()
    finally:
        os.close(fd)


def test_range_hasher_reports_a_file_truncated_under_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "download", os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"x" * 100, 0)
        hasher = RangeHasher(fd, [(0, 200)])
        hasher.advance(0, 200)  # claimed written, but the file holds 100 bytes
        hasher.run()
        with pytest.raises(OSError, match="truncated"):
            hasher.hexdigest()
    finally:
        os.close(fd)


def test_s3_store_declares_hashed_get(s3_backend: Backend) -> None:
    assert isinstance(s3_backend.open(), SupportsHashedGet), "S3Store must hash while downloading"


def test_hashed_download_of_a_multipart_object_reads_nothing_back(
    s3_backend: Backend, tmp_path: Path
) -> None:
    store = s3_backend.open(part_size=SMALL_PART, max_concurrency=3)
    assert isinstance(store, S3Store)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(23 * MiB + 7))
    store.put_file("m/blobs/big", src)
    calls = _counted(store)
    dest = tmp_path / "back.bin"
    info, digest = store.get_file_hashed("m/blobs/big", dest)
    assert digest == sha256_of(src), "the streamed digest is not the object's sha256"
    assert dest.read_bytes() == src.read_bytes(), "the download wrote other bytes"
    assert info.size == src.stat().st_size
    assert calls == {"GetObject": 5}, f"expected 5 ranged GETs and no HEAD, made {calls}"


@pytest.mark.parametrize("size", [0, 1, SMALL_PART - 1, SMALL_PART, SMALL_PART + 1])
def test_hashed_download_of_small_objects_is_one_request(
    s3_backend: Backend, tmp_path: Path, size: int
) -> None:
    store = s3_backend.open(part_size=SMALL_PART)
    assert isinstance(store, S3Store)
    data = os.urandom(size)
    store.put("m/blobs/small", data)
    calls = _counted(store)
    info, digest = store.get_file_hashed("m/blobs/small", tmp_path / "out")
    assert (info.size, digest) == (size, hashlib.sha256(data).hexdigest())
    assert (tmp_path / "out").read_bytes() == data
    expected = 2 if size == 0 else 1 if size <= SMALL_PART else 2
    assert calls.get("GetObject") == expected and "HeadObject" not in calls, (
        f"{size} bytes took {calls}"
    )


def _corrupt_in_place(backend: Backend, key: str, original: bytes, offset: int) -> None:
    """Replace the object under ``key`` by a multipart object with one byte flipped."""
    bad = bytearray(original)
    bad[offset] ^= 0xFF
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"corrupt-{os.getpid()}.bin"
    tmp.write_bytes(bytes(bad))
    try:
        # A hostile or broken writer: labels the object with the digest of what it wrote.
        hostile = backend.open(part_size=SMALL_PART)
        hostile.put_file(key, tmp, mode=OVERWRITE)
    finally:
        tmp.unlink()


def test_a_corrupt_byte_in_the_middle_of_a_multipart_object_is_caught_and_nothing_placed(
    s3_backend: Backend, tmp_path: Path
) -> None:
    store = s3_backend.open(part_size=SMALL_PART, max_concurrency=4)
    registry = Registry(store, cache_dir=tmp_path / "cache", user="tester")
    src = tmp_path / "model.bin"
    original = os.urandom(4 * SMALL_PART + 999)
    src.write_bytes(original)
    manifest = registry.push("big", src)
    key = blob_key("big", manifest.files[0].sha256)
    _corrupt_in_place(s3_backend, key, original, 2 * SMALL_PART + 4321)

    dest = tmp_path / "pulled"
    with pytest.raises(IntegrityError, match="corrupt"):
        registry.pull("big", dest)
    assert not dest.exists(), "a failed pull placed something"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pulled")], "staging left"

    with pytest.raises(IntegrityError, match="corrupt"):
        registry.fetch("big")
    cached = list((tmp_path / "cache").rglob("*"))
    assert not [p for p in cached if p.is_file()], f"a corrupt blob reached the cache: {cached}"


def test_upload_of_a_file_that_does_not_match_its_digest_writes_nothing(
    s3_backend: Backend, tmp_path: Path
) -> None:
    store = s3_backend.open(part_size=SMALL_PART)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * SMALL_PART))
    with pytest.raises(IntegrityError, match="sha256"):
        store.put_file("m/blobs/x", src, sha256="0" * 64)
    assert multipart_uploads(s3_backend) == [], "the refused upload was not aborted"
    assert not list(store.list("m/")), "a refused upload left an object"


def test_upload_of_a_file_changed_meanwhile_writes_nothing(
    s3_backend: Backend, tmp_path: Path
) -> None:
    store = s3_backend.open(part_size=SMALL_PART, max_concurrency=1)
    assert isinstance(store, S3Store)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * SMALL_PART))
    digest = sha256_of(src)
    touched = threading.Event()

    def rewrite_during_first_part(operation: str, params: Any) -> None:
        if operation == "UploadPart" and not touched.is_set():
            touched.set()
            with open(src, "r+b") as fh:  # same bytes, but written: ctime moves
                fh.write(fh.read(1))

    store.observe_requests(rewrite_during_first_part)  # on either transport
    with pytest.raises(IntegrityError, match="changed"):
        store.put_file("m/blobs/x", src, sha256=digest)
    assert touched.is_set()
    assert multipart_uploads(s3_backend) == [], "the refused upload was not aborted"
    assert not list(store.list("m/")), "a refused upload left an object"


def test_streamed_parts_round_trip(s3_backend: Backend, tmp_path: Path) -> None:
    store = s3_backend.open(part_size=SMALL_PART, max_concurrency=2)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(2 * SMALL_PART + 3))
    digest = sha256_of(src)
    store.put_file("m/blobs/y", src, sha256=digest)
    info, back = store.get_file_hashed("m/blobs/y", tmp_path / "back")  # type: ignore[attr-defined]
    assert back == digest and info.size == src.stat().st_size


def _direct_store(s3_backend: Backend, **options: Any) -> S3Store:
    store = s3_backend.open(part_size=SMALL_PART, max_concurrency=2, **options)
    assert isinstance(store, S3Store)
    if not store.direct:
        pytest.skip("the in-process mock answers botocore only: no direct transport")
    return store


def test_a_push_reads_a_large_file_once_before_its_upload_and_never_hashes_on_the_way(
    s3_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _direct_store(s3_backend)
    assert isinstance(store, SupportsUploadDigest), "S3Store must hash parts with the file"
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * SMALL_PART + 11))
    passes: list[int] = []
    real = transfer_module.hash_parts

    def counted(fd: int, size: int, part_size: int) -> tuple[str, list[bytes]]:
        passes.append(size)
        return real(fd, size, part_size)

    monkeypatch.setattr(transfer_module, "hash_parts", counted)
    monkeypatch.setattr(s3_module, "hash_range", lambda *a: pytest.fail("the upload re-hashed"))
    calls = _counted(store)
    digest = store.digest_for_upload(src)
    assert digest == sha256_of(src), "digest_for_upload gave another sha256"
    store.put_file("m/blobs/x", src, sha256=digest)
    assert passes == [src.stat().st_size], f"the file was hashed {len(passes)} times, not once"
    assert calls == {"CreateMultipartUpload": 1, "UploadPart": 4, "CompleteMultipartUpload": 1}, (
        f"unexpected requests {calls}"
    )
    info, back = store.get_file_hashed("m/blobs/x", tmp_path / "back")
    assert back == digest and info.size == src.stat().st_size, "the object is not the file"


def test_a_file_changed_between_its_digest_and_its_upload_writes_nothing(
    s3_backend: Backend, tmp_path: Path
) -> None:
    store = _direct_store(s3_backend)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * SMALL_PART))
    digest = store.digest_for_upload(src)
    with open(src, "r+b") as fh:  # same size, other bytes: the kept part digests must not serve
        fh.write(os.urandom(16))
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        store.put_file("m/blobs/x", src, sha256=digest)
    assert multipart_uploads(s3_backend) == [], "the refused upload was not aborted"
    assert not list(store.list("m/")), "a refused upload left an object"


def test_the_server_refuses_a_part_whose_bytes_are_not_the_ones_hashed(
    s3_backend: Backend, tmp_path: Path
) -> None:
    # What a part changed after its digest was taken looks like to the server: it must
    # check every part against the digest sent with it, and nothing may be written.
    if s3_backend.name == "moto-server":
        pytest.skip("moto checks neither a part's signed sha256 nor its checksum; S3 does")
    store = _direct_store(s3_backend, max_attempts=2, retry_delay=0.01)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * SMALL_PART))
    digest = store.digest_for_upload(src)
    with open(src, "rb") as fh:
        prepared = store._prepared.take(fh.fileno(), SMALL_PART)
    assert prepared is not None and prepared.sha256 == digest, "the digest was not kept"
    forged = [hashlib.sha256(b"other bytes").digest(), *prepared.parts[1:]]
    store._prepared.keep(dataclasses.replace(prepared, parts=forged))
    with pytest.raises(IntegrityError, match="did not reach"):
        store.put_file("m/blobs/x", src, sha256=digest)
    assert multipart_uploads(s3_backend) == [], "the refused upload was not aborted"
    assert not list(store.list("m/")), "a refused upload left an object"


def test_a_digest_refused_on_every_attempt_is_an_integrity_error_not_an_outage() -> None:
    # BadDigest is retried (bytes damaged on the way are cured by sending them again); once
    # every attempt was refused, the bytes are not the ones hashed.
    refused = ClientError(
        {
            "Error": {"Code": "BadDigest", "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "UploadPart",
    )
    assert kind_of(refused) is Kind.RETRY, "a digest refusal must be retried first"
    error = translate(refused, action="upload the file 'm.bin' to 'k' (part 2)")
    assert isinstance(error, IntegrityError), f"a persistent digest refusal gave {error!r}"
    assert "did not reach the store as they were hashed" in str(error)
