"""The registry API on every backend: push, versions, refusals, pull/load, cache, integrity."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pytest

from modelshelf import (
    OVERWRITE,
    IntegrityError,
    InvalidCardError,
    InvalidInputError,
    InvalidNameError,
    InvalidReferenceError,
    InvalidVersionError,
    ModelCard,
    ModelNotFoundError,
    Registry,
    SchemaChangeError,
    SourceError,
    VersionExistsError,
    VersionNotFoundError,
)
from modelshelf._hashing import copy_and_hash

IRIS_INPUT = {
    "type": "object",
    "properties": {
        name: {"type": "number"}
        for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
    },
}
IRIS_OUTPUT = {"type": "string", "enum": ["setosa", "versicolor", "virginica"]}


@pytest.fixture
def registry(backend: Any, tmp_path: Path) -> Registry:
    return Registry(
        backend.uri, cache_dir=tmp_path / "cache", user="alice@lab", **backend.store_options
    )


@pytest.fixture
def local_registry(tmp_path: Path) -> Registry:
    """For rules that do not depend on the backend: refused before the store is touched."""
    return Registry(tmp_path / "registry", cache_dir=tmp_path / "cache", user="alice@lab")


def keys(registry: Registry) -> list[str]:
    return [info.key for info in registry.store.list("")]


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def card(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "description": "iris classifier",
        "author": "alice",
        "framework": "sklearn 1.5",
        "input_schema": IRIS_INPUT,
        "output_schema": IRIS_OUTPUT,
    }
    return {**base, **overrides}


# -- pushing -------------------------------------------------------------------------------


def test_push_a_file_a_folder_and_an_object(registry: Registry, tmp_path: Path) -> None:
    single = write(tmp_path / "weights.bin", b"\x00\x01" * 5000)
    v1 = registry.push("iris", single, card=card())
    assert (v1.version, [f.path for f in v1.files]) == ("1.0.0", ["weights.bin"]), (
        "a first push without version or bump must be 1.0.0, holding the file by its name"
    )
    assert v1.files[0].sha256 == hashlib.sha256(single.read_bytes()).hexdigest(), (
        "the file entry must carry the file's own sha256"
    )
    assert v1.files[0].size == 10000 and v1.created_by == "alice@lab", "size or author wrong"

    folder = tmp_path / "model"
    write(folder / "config.json", '{"depth": 3}')
    write(folder / "weights" / "layer1.bin", b"a" * 3000)
    write(folder / "weights" / "deep" / "layer2.bin", b"b" * 10)
    v2 = registry.push("iris", folder, card=card())
    assert v2.version == "1.1.0", "a later push without version or bump must bump MINOR"
    assert [f.path for f in v2.files] == [
        "config.json",
        "weights/deep/layer2.bin",
        "weights/layer1.bin",
    ], "a folder push must keep every file's relative path"

    obj = {"coef": [1.5, 2.5], "classes": ["setosa", "versicolor"]}
    v3 = registry.push("iris", obj, card=card())
    assert [f.path for f in v3.files] == ["model.joblib"], "an object is pushed as model.joblib"
    loaded, loaded_card = registry.load("iris")
    assert loaded == obj, "load must return the pushed object"
    assert loaded_card.version == "1.2.0" and loaded_card.name == "iris", (
        "the registry must fill the card's name and version"
    )
    assert registry.models() == ["iris"], "models() must list the pushed model"
    assert registry.get("iris:1.1.0") == v2, "get() must return the committed manifest"


def test_versions_sort_by_semver_and_bumps_start_from_the_highest(
    registry: Registry, tmp_path: Path
) -> None:
    src = write(tmp_path / "m.bin", b"model")
    for version in ("1.9.0", "1.10.0", "1.2.0"):
        registry.push("iris", src, version=version)
    assert registry.versions("iris") == ["1.2.0", "1.9.0", "1.10.0"], "versions not in semver order"
    assert str(registry.resolve("iris")) == "iris:1.10.0", "latest must be the semver-highest"
    assert str(registry.resolve("iris:latest")) == "iris:1.10.0", "iris:latest differs from iris"
    pushed = [registry.push("iris", src, bump=b).version for b in ("minor", "patch", "major")]
    assert pushed == ["1.11.0", "1.11.1", "2.0.0"], f"bumps above 1.10.0 gave {pushed}"


def test_a_taken_version_names_who_made_it_when_and_the_next_free_ones(
    registry: Registry, backend: Any, tmp_path: Path
) -> None:
    first = registry.push("iris", write(tmp_path / "a.bin", b"first"), version="1.0.0")
    bob = Registry(backend.uri, cache_dir=tmp_path / "bob", user="bob@lab", **backend.store_options)
    with pytest.raises(VersionExistsError) as caught:
        bob.push("iris", write(tmp_path / "b.bin", b"second"), version="1.0.0")
    message = str(caught.value)
    for expected in ("iris:1.0.0", "alice@lab", first.created_at.isoformat(), "1.0.1", "1.1.0"):
        assert expected in message, f"VersionExistsError must mention {expected!r}: {message}"
    assert registry.get("iris:1.0.0") == first, "the losing push changed the committed version"


def test_an_identical_repush_returns_the_existing_version(
    registry: Registry, tmp_path: Path
) -> None:
    src = write(tmp_path / "m.bin", b"same bytes")
    first = registry.push("iris", src, version="1.0.0", card=card())
    again = registry.push("iris", src, version="1.0.0", card=card())
    assert again == first, "an identical re-push must return the committed version unchanged"
    assert registry.versions("iris") == ["1.0.0"], "an identical re-push must not add a version"
    with pytest.raises(VersionExistsError):
        registry.push("iris", src, version="1.0.0", card=card(author="mallory"))


def test_a_schema_change_needs_a_major_bump_or_an_explicit_override(
    registry: Registry, tmp_path: Path
) -> None:
    src = write(tmp_path / "m.bin", b"v1")
    registry.push("iris", src, card=card())
    wider = {**IRIS_INPUT, "properties": {**IRIS_INPUT["properties"], "color": {"type": "string"}}}
    before = keys(registry)
    big = write(tmp_path / "big.bin", b"x" * 100_000)
    for changed in (card(input_schema=wider), card(output_schema={"type": "integer"})):
        for kwargs in ({"bump": "minor"}, {"bump": "patch"}, {"version": "1.5.0"}, {}):
            with pytest.raises(SchemaChangeError, match="MAJOR"):
                registry.push("iris", big, card=changed, **kwargs)
    assert keys(registry) == before, "a refused schema change must write nothing, not even blobs"

    major = registry.push("iris", big, card=card(input_schema=wider), bump="major")
    assert major.version == "2.0.0" and not major.schema_change_allowed, "major bump refused"
    allowed = registry.push(
        "iris",
        src,
        card=card(output_schema={"type": "integer"}),
        bump="minor",
        allow_schema_change=True,
    )
    assert allowed.version == "2.1.0" and allowed.schema_change_allowed, "override not recorded"
    stored = json.loads(registry.store.get("iris/versions/2.1.0.json").data)  # type: ignore[union-attr]
    assert stored["schema_change_allowed"] is True, "the override must be in the stored manifest"
    same_schema = registry.push("iris", src, card=card(output_schema={"type": "integer"}))
    assert same_schema.version == "2.2.0", "an unchanged schema must not need an override"


BAD_PUSHES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("Iris", {}, InvalidNameError, "invalid model name"),
    ("../iris", {}, InvalidNameError, "invalid model name"),
    ("a/b", {}, InvalidNameError, "invalid model name"),
    ("a..b", {}, InvalidNameError, "invalid model name"),
    (".hidden", {}, InvalidNameError, "invalid model name"),
    ("x" * 129, {}, InvalidNameError, "invalid model name"),
    ("", {}, InvalidNameError, "invalid model name"),
    ("iris", {"version": "1.0"}, InvalidVersionError, "MAJOR.MINOR.PATCH"),
    ("iris", {"version": "01.0.0"}, InvalidVersionError, "leading zeros"),
    ("iris", {"version": "v1.0.0"}, InvalidVersionError, "MAJOR.MINOR.PATCH"),
    ("iris", {"version": "1.0.0-rc1"}, InvalidVersionError, "MAJOR.MINOR.PATCH"),
    ("iris", {"version": "1.0.0.0"}, InvalidVersionError, "MAJOR.MINOR.PATCH"),
    ("iris", {"bump": "huge"}, InvalidVersionError, "'major', 'minor' or 'patch'"),
    ("iris", {"version": "1.0.0", "bump": "minor"}, InvalidVersionError, "not both"),
    ("iris", {"card": {"performance": {"accuracy": 2}}}, InvalidCardError, "performance.accuracy"),
    ("iris", {"card": {"training_data": {"samples": -1}}}, InvalidCardError, "samples"),
    ("iris", {"card": {"limitations": 3}}, InvalidCardError, "limitations"),
    ("iris", {"card": "a string"}, InvalidCardError, "mapping"),
    ("iris", {"card": {"name": "other"}}, InvalidCardError, "'other'"),
    ("iris", {"card": {"version": "2.0.0"}, "version": "1.0.0"}, InvalidCardError, "2.0.0"),
    ("iris", {"card": {"version": "2.0"}}, InvalidCardError, "2.0"),
]


def _refused(
    registry: Registry,
    source: Path,
    name: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    before = keys(registry)
    with pytest.raises(error) as caught:
        registry.push(name, source, **kwargs)
    assert isinstance(caught.value, InvalidInputError), "bad input must be an InvalidInputError"
    assert words in str(caught.value), f"the error must say {words!r}: {caught.value}"
    assert keys(registry) == before, f"a refused push wrote to the store: {error.__name__}"


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "words"),
    BAD_PUSHES,
    ids=[f"{n[:10]}-{'-'.join(map(str, k.values()))[:30]}" for n, k, _, _ in BAD_PUSHES],
)
def test_bad_input_is_refused_before_anything_is_written(
    local_registry: Registry,
    tmp_path: Path,
    name: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    local_registry.push("iris", write(tmp_path / "seed.bin", b"seed"), version="0.1.0")
    _refused(local_registry, write(tmp_path / "m.bin", b"new"), name, kwargs, error, words)


def test_bad_input_writes_nothing_on_any_backend(registry: Registry, tmp_path: Path) -> None:
    registry.push("iris", write(tmp_path / "seed.bin", b"seed"), version="0.1.0")
    source = write(tmp_path / "m.bin", b"new bytes")
    for name, kwargs, error, words in BAD_PUSHES[::4]:
        _refused(registry, source, name, kwargs, error, words)
    _refused(registry, tmp_path / "missing", "iris", {}, SourceError, "does not exist")


@pytest.mark.parametrize("make", ["missing", "dangling-link", "empty-folder"])
def test_a_source_that_cannot_be_read_is_refused(
    local_registry: Registry, tmp_path: Path, make: str
) -> None:
    path = tmp_path / "source"
    if make == "dangling-link":
        path.symlink_to(tmp_path / "nowhere")
    elif make == "empty-folder":
        (path / "sub").mkdir(parents=True)
    before = keys(local_registry)
    with pytest.raises(SourceError, match="source"):
        local_registry.push("iris", path)
    assert keys(local_registry) == before, "a refused source wrote to the store"


def test_bad_references_are_refused(local_registry: Registry, tmp_path: Path) -> None:
    local_registry.push("iris", write(tmp_path / "m.bin", b"m"))
    registry = local_registry
    for ref in ("iris:1.0", "iris@prod", "Iris", "iris:1.0.0:x", "iris@active:1.0.0", "", "iris:"):
        for call in (registry.get, registry.verify, lambda r: registry.pull(r, tmp_path / "out")):
            with pytest.raises(InvalidReferenceError, match="NAME:MAJOR.MINOR.PATCH|alias"):
                call(ref)
    assert not (tmp_path / "out").exists(), "a refused pull created its destination"


def test_missing_models_and_versions_are_told_apart(registry: Registry, tmp_path: Path) -> None:
    assert registry.models() == [] and registry.versions("iris") == [], "a new registry is empty"
    with pytest.raises(ModelNotFoundError, match="'iris'"):
        registry.get("iris")
    registry.push("iris", write(tmp_path / "m.bin", b"m"))
    with pytest.raises(VersionNotFoundError, match="1.0.0"):
        registry.get("iris:3.0.0")


def test_the_full_card_round_trips_and_keeps_unknown_fields(
    registry: Registry, tmp_path: Path
) -> None:
    full = card(
        algorithm="RandomForestClassifier",
        hyperparameters={"n_estimators": 100, "max_depth": None},
        training_data={"source": "iris.csv", "samples": 150, "features": 4, "owner": "team-x"},
        performance={"accuracy": 0.97, "f1_score": 0.96, "latency_ms": 1.2, "auc": 0.99},
        limitations="only three species",
        ticket="ML-42",
    )
    pushed = registry.push("iris", write(tmp_path / "m.bin", b"m"), card=ModelCard(**full))
    got = registry.get("iris").card
    assert got == pushed.card, "the stored card differs from the pushed one"
    assert got.model_extra == {"ticket": "ML-42"}, "an unknown card field was dropped"
    assert got.training_data is not None and got.training_data.model_extra == {"owner": "team-x"}
    assert got.performance is not None and got.performance.model_extra == {"auc": 0.99}
    assert got.limitations == ["only three species"], "a single limitation must become a list"
    assert got.created_at is not None and got.updated_at is not None, "dates not filled in"


# -- downloading ---------------------------------------------------------------------------


def test_pull_writes_every_file_and_a_second_load_downloads_nothing(
    registry: Registry, backend: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    write(folder / "a.txt", "alpha")
    write(folder / "deep" / "b.bin", bytes(range(256)) * 100)
    registry.push("iris", folder)
    pulled = registry.pull("iris:1.0.0", tmp_path / "out")
    for entry in pulled.files:
        assert (tmp_path / "out" / entry.path).read_bytes() == (folder / entry.path).read_bytes(), (
            f"pulled {entry.path} differs from the pushed file"
        )

    obj = {"weights": list(range(1000))}
    pushed = registry.push("iris", obj)
    fresh = Registry(backend.uri, cache_dir=tmp_path / "fresh-cache", **backend.store_options)
    model, _ = fresh.load("iris")
    assert model == obj, "load returned another object"
    assert fresh.cache.bytes_downloaded == pushed.size, "the first load must download the blob"
    model, _ = fresh.load("iris")
    again = Registry(backend.uri, cache_dir=tmp_path / "fresh-cache", **backend.store_options)
    again.load("iris:1.1.0")
    assert fresh.cache.bytes_downloaded == pushed.size, "a second load downloaded bytes"
    assert again.cache.bytes_downloaded == 0, "a load through the same cache folder downloaded"


def _trip(path: str, padding: str) -> Tripwire:
    Path(path).write_text("unpickled")
    return Tripwire(path, padding)


@dataclass
class Tripwire:
    """Unpickling it creates ``path``: proof that bytes were unpickled."""

    path: str
    padding: str

    def __reduce__(self) -> tuple[Callable[..., Tripwire], tuple[str, str]]:
        return (_trip, (self.path, self.padding))


def test_one_tampered_byte_fails_verify_load_and_pull_and_nothing_is_unpickled(
    registry: Registry, backend: Any, tmp_path: Path
) -> None:
    wire = tmp_path / "unpickled.txt"
    pushed = registry.push("iris", Tripwire(str(wire), "A" * 4096))
    blob_key = f"iris/blobs/sha256/{pushed.files[0].sha256}"
    stored = registry.store.get(blob_key)
    assert stored is not None
    at = stored.data.index(b"AAAA")
    corrupt = stored.data[:at] + b"B" + stored.data[at + 1 :]

    # The corrupt bytes still unpickle (and trip the wire): only verification stands between.
    write(tmp_path / "probe.joblib", corrupt)
    joblib.load(tmp_path / "probe.joblib")
    assert wire.exists(), "the probe did not trip: the test cannot see an unpickle"
    wire.unlink()

    registry.store.put(blob_key, corrupt, mode=OVERWRITE)
    fresh = Registry(backend.uri, cache_dir=tmp_path / "fresh-cache", **backend.store_options)
    with pytest.raises(IntegrityError, match=pushed.files[0].sha256):
        fresh.verify("iris:1.0.0")
    with pytest.raises(IntegrityError, match="corrupt"):
        fresh.load("iris")
    assert not wire.exists(), "a corrupt blob was unpickled"
    with pytest.raises(IntegrityError):
        fresh.pull("iris", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), (
        "a failed pull left files behind"
    )
    cached = list((tmp_path / "fresh-cache").rglob("*"))
    assert not [p for p in cached if p.is_file()], f"corrupt bytes reached the cache: {cached}"

    registry.store.delete(blob_key)
    with pytest.raises(IntegrityError, match="missing"):
        fresh.verify("iris")


def test_verify_passes_on_intact_versions(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write(folder / "a.bin", b"a" * 70_000)
    write(folder / "b.bin", b"b")
    pushed = registry.push("iris", folder)
    assert registry.verify("iris") == pushed, "verify must return the manifest it checked"
    assert not list((tmp_path / "cache").rglob("*.bin")), "verify must bypass the cache"


def test_pull_refuses_a_manifest_that_points_outside_the_destination(
    local_registry: Registry, tmp_path: Path
) -> None:
    pushed = local_registry.push("iris", write(tmp_path / "m.bin", b"payload"))
    forged = pushed.model_dump(mode="json")
    forged["files"][0]["path"] = "../escaped.bin"
    local_registry.store.put(
        "iris/versions/1.0.0.json", json.dumps(forged).encode(), mode=OVERWRITE
    )
    with pytest.raises(IntegrityError, match="unsafe path"):
        local_registry.pull("iris:1.0.0", tmp_path / "out" / "model")
    assert not (tmp_path / "out" / "escaped.bin").exists(), "pull wrote outside its folder"
    assert not (tmp_path / "out" / "model").exists(), "a refused pull created its folder"


def test_pushes_and_pulls_work_where_the_kernel_cannot_copy(
    local_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Across filesystems (or on old kernels) copy_file_range fails: bytes go through Python.
    def refuse(*args: Any) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    data = os.urandom(3 * 1024 * 1024 + 17)
    pushed = local_registry.push("iris", write(tmp_path / "m.bin", data))
    assert pushed.files[0].sha256 == hashlib.sha256(data).hexdigest(), "wrong digest on fallback"
    local_registry.pull("iris", tmp_path / "out")
    assert (tmp_path / "out" / "m.bin").read_bytes() == data, "fallback pull changed the bytes"
    local_registry.verify("iris")


def test_a_source_that_shrinks_while_it_is_copied_is_refused(tmp_path: Path) -> None:
    source = write(tmp_path / "m.bin", b"x" * 1000)
    with (
        open(source, "rb") as src,
        open(tmp_path / "copy", "w+b") as dst,
        pytest.raises(IntegrityError, match="changed while"),
    ):
        copy_and_hash(src.fileno(), dst.fileno(), 5000)


def test_a_card_without_a_schema_does_not_count_as_a_schema_change(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    registry.push("iris", {"w": 1}, card={"input_schema": {"type": "array"}})
    retrained = registry.push("iris", {"w": 2}, bump="minor")  # no card: no claim about schemas
    assert retrained.version == "1.1.0"
    with pytest.raises(SchemaChangeError):
        registry.push("iris", {"w": 3}, bump="minor", card={"input_schema": {"type": "object"}})


def test_reading_a_registry_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "nowhere", cache_dir=tmp_path / "cache")
    assert registry.models() == [] and registry.versions("iris") == []
    assert not (tmp_path / "nowhere").exists(), "a read must not create the registry folder"
