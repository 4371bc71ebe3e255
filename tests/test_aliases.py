"""Aliases: validation, linearizable updates from racing processes, crash roll-forward."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import (
    AliasNotSetError,
    InvalidAliasesError,
    InvalidVersionError,
    PreconditionFailedError,
    Registry,
)
from modelshelf._layout import aliases_key, history_key

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"]
SEAWEEDFS = pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)
RACE_TIMEOUT = 120


def push_iris(registry: Registry) -> Registry:
    for i, version in enumerate(VERSIONS):
        registry.push("iris", {"weights": i}, version=version)
    return registry


def make_registry(root: Path) -> Registry:
    return push_iris(Registry(root / "reg", cache_dir=root / "cache", user="tester"))


def backend_registry(backend: Any, root: Path) -> Registry:
    """``iris`` with every version pushed, on a backend that child processes can reach."""
    registry = Registry(
        backend.uri, cache_dir=root / "cache", user="tester", **backend.store_options
    )
    return push_iris(registry)


def store_snapshot(registry: Registry) -> dict[str, str]:
    return {info.key: info.etag for info in registry.store.list("")}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return make_registry(tmp_path)


def test_a_fresh_model_has_empty_aliases_and_unset_refs(registry: Registry) -> None:
    state = registry.aliases("iris")
    assert (state.active, state.canary, state.ratio, state.generation) == (None, None, 0.0, 0)
    with pytest.raises(AliasNotSetError):
        registry.resolve("iris@active")


def test_blue_green_canary_promote_and_refs(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0", reason="first release")
    registry.start_canary("iris", "1.1.0", 0.05, reason="try it")
    assert str(registry.resolve("iris@canary")) == "iris:1.1.0"
    registry.set_ratio("iris", 0.25)
    state = registry.promote("iris", reason="healthy")
    assert (state.active, state.canary, state.ratio) == ("1.1.0", None, 0.0)
    assert str(registry.resolve("iris@active")) == "iris:1.1.0"
    records = registry.history("iris")
    assert [r.action for r in records] == ["set_active", "start_canary", "set_ratio", "promote"]
    assert records[0].reason == "first release" and records[0].who == "tester"
    assert records[-1].previous is not None and records[-1].previous.canary == "1.1.0"


def test_rollback_returns_to_the_previous_active_in_one_call(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    registry.start_canary("iris", "1.2.0", 0.5)
    registry.promote("iris")
    registry.start_canary("iris", "1.3.0", 0.1)
    state = registry.rollback("iris", reason="bad release")
    assert (state.active, state.canary) == ("1.0.0", None), "rollback must undo the promotion"
    assert registry.history("iris")[-1].reason == "bad release"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.start_canary("iris", "1.1.0", 0.1), InvalidAliasesError),  # no active yet
        (lambda r: r.set_active("iris", "9.9.9"), InvalidAliasesError),  # not committed
        (lambda r: r.set_active("iris", "1.0"), InvalidVersionError),
        (lambda r: r.set_ratio("iris", 0.3), InvalidAliasesError),  # no canary
        (lambda r: r.promote("iris"), InvalidAliasesError),
        (lambda r: r.abort_canary("iris"), InvalidAliasesError),
        (lambda r: r.rollback("iris"), InvalidAliasesError),
    ],
)
def test_refused_changes_write_nothing(registry: Registry, call, error) -> None:  # type: ignore[no-untyped-def]
    before = store_snapshot(registry)
    with pytest.raises(error):
        call(registry)
    assert store_snapshot(registry) == before, "a refused alias change must not write"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda r: r.start_canary("iris", "1.0.0", 0.1), "both"),
        (lambda r: r.start_canary("iris", "2.0.0", 0.1), "MAJOR"),
        (lambda r: r.start_canary("iris", "1.1.0", 1.5), "ratio"),
        (lambda r: r.start_canary("iris", "1.1.0", -0.1), "ratio"),
    ],
)
def test_canary_rules(registry: Registry, call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    registry.set_active("iris", "1.0.0")
    before = store_snapshot(registry)
    with pytest.raises(InvalidAliasesError, match=fragment):
        call(registry)
    assert store_snapshot(registry) == before


def test_major_canary_allowed_explicitly(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    state = registry.start_canary("iris", "2.0.0", 0.1, allow_major=True)
    assert state.canary == "2.0.0"


def test_served_at_answers_from_history(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    registry.start_canary("iris", "1.1.0", 0.2)
    records = registry.history("iris")
    during = records[1].when + timedelta(seconds=1)
    served = {(s.version, s.role) for s in registry.served_at("iris", during, grace=timedelta(0))}
    assert served == {("1.0.0", "active"), ("1.1.0", "canary")}
    before = records[0].when - timedelta(seconds=1)
    assert registry.served_at("iris", before) == []
    just_after_first = records[0].when + (records[1].when - records[0].when) / 2
    versions = {s.version for s in registry.served_at("iris", just_after_first, grace=timedelta(0))}
    assert versions == {"1.0.0"}
    # with a grace window the replaced state still counts right after the change
    versions = {
        s.version for s in registry.served_at("iris", datetime.now(UTC), grace=timedelta(hours=1))
    }
    assert versions == {"1.0.0", "1.1.0"}


# -- racing processes ------------------------------------------------------------------


def _random_changes(
    uri: str,
    options: dict[str, Any],
    cache: str,
    seed: int,
    count: int,
    barrier: Any,
    results: Any,
) -> None:
    """One writer: ``count`` random alias changes; reports (seed, done, conflicts, error)."""
    try:
        registry = Registry(uri, cache_dir=cache, user=f"w{seed}", **options)
        store = registry.store
        real_put = store.put
        conflicts = 0

        def counting_put(key: str, data: bytes, **kwargs: Any) -> str:
            nonlocal conflicts
            try:
                return real_put(key, data, **kwargs)
            except PreconditionFailedError:
                conflicts += 1  # lost a claim or a swap to another writer
                raise

        store.put = counting_put  # type: ignore[method-assign]
        rng = random.Random(seed)
        barrier.wait(timeout=RACE_TIMEOUT)  # start together, so the writers really race
        done = 0
        while done < count:
            op = rng.choice(["active", "canary", "ratio", "promote", "abort", "rollback"])
            why = f"w{seed}-{done}"
            try:
                if op == "active":
                    registry.set_active("iris", rng.choice(VERSIONS[:4]), reason=why)
                elif op == "canary":
                    registry.start_canary(
                        "iris", rng.choice(VERSIONS[:4]), rng.random(), reason=why
                    )
                elif op == "ratio":
                    registry.set_ratio("iris", rng.random(), reason=why)
                elif op == "promote":
                    registry.promote("iris", reason=why)
                elif op == "abort":
                    registry.abort_canary("iris", reason=why)
                else:
                    registry.rollback("iris", reason=why)
            except InvalidAliasesError:
                continue  # not applicable in the state this writer saw; nothing was written
            done += 1
        results.put((seed, done, conflicts, None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((seed, 0, 0, f"{type(exc).__name__}: {exc}"))


def race(registry: Registry, options: dict[str, Any], root: Path, writers: int, count: int) -> int:
    """Run ``writers`` spawned processes of ``count`` changes each; returns their conflicts."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(
            target=_random_changes,
            args=(
                registry.uri,
                options,
                str(root / f"cache-{seed}"),
                seed,
                count,
                barrier,
                results,
            ),
        )
        for seed in range(writers)
    ]
    for proc in procs:
        proc.start()
    try:
        got = sorted(results.get(timeout=RACE_TIMEOUT) for _ in procs)
    except queue.Empty:
        codes = [proc.exitcode for proc in procs]
        raise AssertionError(f"a writer never reported (exit codes {codes})") from None
    finally:
        for proc in procs:
            proc.join(RACE_TIMEOUT)
    failures = [(seed, error) for seed, _, _, error in got if error]
    assert not failures, f"writers failed: {failures}"
    assert [done for _, done, _, _ in got] == [count] * writers, f"changes missing: {got}"
    return sum(conflicts for _, _, conflicts, _ in got)


def assert_linearizable(registry: Registry, changes: int) -> None:
    """One initial record, then every change exactly once, each on top of the one before."""
    records = registry.history("iris")
    assert len(records) == changes + 1, (
        f"expected {changes} changes + 1 initial record, got {len(records)}"
    )
    assert [r.generation for r in records] == list(range(1, changes + 2)), "history has gaps"
    for earlier, later in zip(records, records[1:], strict=False):
        assert later.previous == earlier.state, (
            f"record {later.generation}'s previous state differs from record "
            f"{earlier.generation}'s state: a change was lost or applied twice"
        )
    assert registry.aliases("iris") == records[-1].state, "aliases.json is not the last record"
    reasons = [r.reason for r in records[1:]]
    assert len(set(reasons)) == changes, "some change was recorded twice"
    strangers = [r for r in records[1:] if not (r.reason or "").startswith(f"{r.who}-")]
    assert not strangers, f"records attributed to another writer: {strangers[:3]}"


def test_eight_processes_hundred_changes_each_linearizable(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    registry.set_active("iris", "1.0.0", reason="initial")
    conflicts = race(registry, {}, tmp_path, writers=8, count=100)
    assert conflicts > 0, "eight writers never collided: the race proved nothing"
    assert_linearizable(registry, 800)


@pytest.fixture
def atomic_moto() -> Iterator[None]:
    """Make moto's PutObject check-and-write atomic, as S3's conditional writes are.

    moto checks If-None-Match / If-Match and then stores the object as two steps, so two
    server threads can both pass the check: racing writers would see an emulator artefact,
    not a bug of ours. One lock around moto's PutObject handler closes that window.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    real = S3Response.put_object

    def put_object(self: Any) -> Any:
        with lock:
            return real(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S3Response, "put_object", put_object)
        yield


@pytest.mark.parametrize("backend_name", ["moto-server", SEAWEEDFS])
def test_racing_processes_stay_linearizable_on_s3(
    backend_name: str, make_backend: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Kept small: SeaweedFS can answer the losers of a conditional race after back-offs of
    # about a second, and spawning the writers is most of the time anyway.
    if backend_name == "moto-server":
        request.getfixturevalue("atomic_moto")
    backend = make_backend(backend_name)
    registry = backend_registry(backend, tmp_path)
    registry.set_active("iris", "1.0.0", reason="initial")
    conflicts = race(registry, backend.store_options, tmp_path, writers=3, count=8)
    assert conflicts > 0, "three writers never collided: the race proved nothing"
    assert_linearizable(registry, 24)


def _claim_then_die(uri: str, options: dict[str, Any], cache: str) -> None:
    registry = Registry(uri, cache_dir=cache, user="doomed", **options)
    store = registry.store
    real_put = store.put

    def put_and_die(key: str, data: bytes, **kwargs: Any) -> str:
        etag = real_put(key, data, **kwargs)
        if "/history/" in key:
            os.kill(os.getpid(), signal.SIGKILL)  # between the claim and the swap
        return etag

    store.put = put_and_die  # type: ignore[method-assign]
    registry.start_canary("iris", "1.1.0", 0.1, reason="dies half-way")


@pytest.mark.parametrize("backend_name", ["local", "moto-server", SEAWEEDFS])
def test_a_writer_killed_after_its_claim_is_completed_by_the_next(
    backend_name: str, make_backend: Any, tmp_path: Path
) -> None:
    backend = make_backend(backend_name)
    registry = backend_registry(backend, tmp_path)
    registry.set_active("iris", "1.0.0")
    proc = mp.get_context("spawn").Process(
        target=_claim_then_die,
        args=(backend.uri, backend.store_options, str(tmp_path / "cache-dead")),
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL, f"the writer should have been killed: {proc.exitcode}"
    assert registry.aliases("iris").generation == 1, "the dead writer must not have swapped"
    assert registry.store.head(history_key("iris", 2)), "the claim must exist"

    state = registry.set_ratio("iris", 0.3, reason="next writer")
    assert (state.generation, state.canary, state.ratio) == (3, "1.1.0", 0.3), (
        "the next writer must roll the dead writer's change forward and apply its own on top"
    )
    records = registry.history("iris")
    assert [r.reason for r in records] == [None, "dies half-way", "next writer"], (
        f"history must hold the dead writer's change and the next one's: {records}"
    )
    assert records[2].previous == records[1].state, "the next change is not on top of the claim"
    assert registry.aliases("iris") == records[2].state, "aliases.json is not the last record"


def test_a_corrupt_aliases_object_is_reported(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    obj = registry.store.get(aliases_key("iris"))
    assert obj is not None
    registry.store.put(aliases_key("iris"), b'{"ratio": 7}', mode="overwrite")
    with pytest.raises(InvalidAliasesError):
        registry.aliases("iris")
