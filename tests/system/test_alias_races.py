"""Real processes racing alias changes, and writers killed mid-change: history stays
linearizable."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf import (
    InvalidAliasesError,
    PreconditionFailedError,
    Registry,
)
from modelshelf.layout import history_key
from tests.support.registries import (
    VERSIONS,
    backend_registry,
    make_registry,
)

SEAWEEDFS = pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)
RACE_TIMEOUT = 120


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
