"""The store contract: every backend (local folder, moto, moto over HTTP, SeaweedFS) behaves
the same for conditional writes, reads, listings, transfers and key checks.

One suite for every store, as iceberg-python's catalog tests and zarr's ``StoreTests``: a new
backend is added to ``tests/support/backends.py`` and must pass all of it.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelshelf._errors import (
    IntegrityError,
    InvalidKeyError,
    KeyNotFoundError,
    PreconditionFailedError,
)
from modelshelf._stores import OVERWRITE, IfMatch, Store
from tests.support.backends import Backend
from tests.support.blobs import MiB, multipart_uploads, sha256_of

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


def test_listing_past_one_page_in_key_order_after_a_key_and_up_to_a_limit(store: Store) -> None:
    blob_keys = [f"m/blobs/{i:05d}" for i in range(1100)]
    other = ["m/versions/1.0.0.json", "m2/blobs/x", "n/a", "m/blobs-extra", "m/aliases.json"]
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
    assert under_m == sorted(
        [*blob_keys, "m/versions/1.0.0.json", "m/blobs-extra", "m/aliases.json"]
    ), "prefix 'm/' must not include 'm2/...'"
    partial = [i.key for i in store.list("m/blobs")]
    assert partial == sorted([*blob_keys, "m/blobs-extra"]), "prefixes match characters"
    assert [i.key for i in store.list("m/blobs/0105")] == [f"m/blobs/0105{d}" for d in range(10)]
    assert list(store.list("nothing/")) == [], "an unknown prefix lists nothing"

    # start_after and limit, on the same objects (writing a second thousand costs seconds)
    after = [i.key for i in store.list("m/blobs/", start_after=blob_keys[99])]
    assert after == blob_keys[100:], "start_after must list exactly the keys after it, past a page"
    assert [i.key for i in store.list("m/blobs/", start_after=blob_keys[-1])] == [], (
        "nothing sorts after the last key"
    )
    between = "m/blobs/00050~"  # not a key: still a position
    assert [i.key for i in store.list("m/blobs/", start_after=between)] == blob_keys[51:]
    assert [i.key for i in store.list("m/blobs/", start_after="a")] == blob_keys, (
        "a position before the prefix lists the whole prefix"
    )
    assert [i.key for i in store.list("m/blobs/", limit=3)] == blob_keys[:3], "limit: the first n"
    assert [i.key for i in store.list("m/blobs/", start_after=blob_keys[1000], limit=2)] == (
        blob_keys[1001:1003]
    ), "limit and start_after combine"
    assert len(list(store.list("m/blobs/", limit=1050))) == 1050, "a limit above one page"
    assert [i.key for i in store.list("m/", start_after="m/b")] == sorted(
        [*blob_keys, "m/blobs-extra", "m/versions/1.0.0.json"]
    ), "keys sorting before start_after (m/aliases.json) are never listed"


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


def test_list_folders_names_the_first_level_below_a_prefix(store: Store) -> None:
    for key in ("iris/versions/1.0.0.json", "iris/aliases.json", "wine/blobs/sha256/ab", "top"):
        store.put(key, b"x")
    assert store.list_folders("") == ["iris", "wine"], "folders at the root"  # type: ignore[attr-defined]
    assert store.list_folders("iris/") == ["versions"]  # type: ignore[attr-defined]
    assert store.list_folders("nothing/") == []  # type: ignore[attr-defined]
