"""Aliases: validation, linearizable updates from racing processes, crash roll-forward."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelshelf import (
    AliasNotSetError,
    InvalidAliasesError,
    InvalidVersionError,
    LocalStore,
    Registry,
)
from modelshelf._aliases import aliases_key, history_key

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"]


def make_registry(root: Path) -> Registry:
    registry = Registry(root / "reg", cache_dir=root / "cache", user="tester")
    for i, version in enumerate(VERSIONS):
        registry.push("iris", {"weights": i}, version=version)
    return registry


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
    served = {s.version for s in registry.served_at("iris", just_after_first, grace=timedelta(0))}
    assert served == {"1.0.0"}
    # with a grace window the replaced state still counts right after the change
    served = {
        s.version for s in registry.served_at("iris", datetime.now(UTC), grace=timedelta(hours=1))
    }
    assert served == {"1.0.0", "1.1.0"}


# -- racing processes ------------------------------------------------------------------


def _random_changes(root: str, seed: int, count: int) -> int:
    registry = Registry(Path(root) / "reg", cache_dir=Path(root) / f"cache-{seed}", user=f"w{seed}")
    rng = random.Random(seed)
    done = 0
    while done < count:
        op = rng.choice(["active", "canary", "ratio", "promote", "abort", "rollback"])
        try:
            if op == "active":
                registry.set_active("iris", rng.choice(VERSIONS[:4]), reason=f"w{seed}-{done}")
            elif op == "canary":
                registry.start_canary(
                    "iris", rng.choice(VERSIONS[:4]), rng.random(), reason=f"w{seed}-{done}"
                )
            elif op == "ratio":
                registry.set_ratio("iris", rng.random(), reason=f"w{seed}-{done}")
            elif op == "promote":
                registry.promote("iris", reason=f"w{seed}-{done}")
            elif op == "abort":
                registry.abort_canary("iris", reason=f"w{seed}-{done}")
            else:
                registry.rollback("iris", reason=f"w{seed}-{done}")
        except InvalidAliasesError:
            continue  # not applicable in the state this writer saw; nothing was written
        done += 1
    return done


def test_eight_processes_hundred_changes_each_linearizable(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    registry.set_active("iris", "1.0.0", reason="initial")
    ctx = mp.get_context("spawn")
    with ctx.Pool(8) as pool:
        counts = pool.starmap(_random_changes, [(str(tmp_path), seed, 100) for seed in range(8)])
    assert counts == [100] * 8

    records = registry.history("iris")
    assert len(records) == 801, f"expected 800 changes + 1 initial record, got {len(records)}"
    assert [r.generation for r in records] == list(range(1, 802)), "history has gaps"
    for earlier, later in zip(records, records[1:], strict=False):
        assert later.previous == earlier.state, (
            f"record {later.generation}'s previous state differs from record "
            f"{earlier.generation}'s state: a change was lost or applied twice"
        )
    assert registry.aliases("iris") == records[-1].state, "aliases.json is not the last record"
    reasons = [r.reason for r in records[1:]]
    assert len(set(reasons)) == 800, "some change was recorded twice"


def _claim_then_die(root: str) -> None:
    registry = Registry(Path(root) / "reg", cache_dir=Path(root) / "cache-dead", user="doomed")
    store = registry.store
    assert isinstance(store, LocalStore)
    real_put = store.put

    def put_and_die(key: str, data: bytes, **kwargs):  # type: ignore[no-untyped-def]
        etag = real_put(key, data, **kwargs)
        if "/history/" in key:
            os.kill(os.getpid(), signal.SIGKILL)  # between the claim and the swap
        return etag

    store.put = put_and_die  # type: ignore[method-assign]
    registry.start_canary("iris", "1.1.0", 0.1, reason="dies half-way")


def test_a_writer_killed_after_its_claim_is_completed_by_the_next(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    registry.set_active("iris", "1.0.0")
    proc = mp.get_context("spawn").Process(target=_claim_then_die, args=(str(tmp_path),))
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
    assert [r.reason for r in records] == [None, "dies half-way", "next writer"]
    assert records[2].previous == records[1].state


def test_a_corrupt_aliases_object_is_reported(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    obj = registry.store.get(aliases_key("iris"))
    assert obj is not None
    registry.store.put(aliases_key("iris"), b'{"ratio": 7}', mode="overwrite")
    with pytest.raises(InvalidAliasesError):
        registry.aliases("iris")
