"""Aliases: validation, linearizable updates from racing processes, crash roll-forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelshelf import (
    AliasNotSetError,
    InvalidAliasesError,
    InvalidVersionError,
    Registry,
)
from modelshelf.layout import aliases_key
from tests.support.registries import make_registry, store_snapshot

SEAWEEDFS = pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)
RACE_TIMEOUT = 120


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


def test_a_corrupt_aliases_object_is_reported(registry: Registry) -> None:
    registry.set_active("iris", "1.0.0")
    obj = registry.store.get(aliases_key("iris"))
    assert obj is not None
    registry.store.put(aliases_key("iris"), b'{"ratio": 7}', mode="overwrite")
    with pytest.raises(InvalidAliasesError):
        registry.aliases("iris")
