"""gc never deletes what a version committed or aliased meanwhile needs (docs/design.md,
invariants 13 and 14, "Retention"); the race in real processes is tests/system/test_gc_race.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelshelf import BlobsMissingError, ModelVersion, Registry
from modelshelf._aliases import HistoryRecord, read_aliases
from modelshelf._card import utcnow
from modelshelf._versions import run_gc
from modelshelf._versions._retention import (
    CondemnationGuard,
    read_condemnations,
    write_condemnation,
)
from modelshelf.layout import blob_key, gc_prefix, history_key, manifest_key

GRACE = 0.3


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="ops", gc_grace=GRACE)


def _two_versions(registry: Registry) -> tuple[ModelVersion, ModelVersion]:
    old = registry.push("m", {"weights": "old"}, version="1.0.0")
    new = registry.push("m", {"weights": "new"}, version="1.1.0")
    return old, new


def _blob(registry: Registry, manifest: ModelVersion) -> str:
    return blob_key("m", manifest.files[0].sha256)


def _exists(registry: Registry, key: str) -> bool:
    return any(info.key == key for info in registry.store.list(key))


def _gc_in_thread(registry: Registry, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(
        target=lambda: out.append(registry.gc("m", keep_last=1, dry_run=False, **kwargs))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not list(registry.store.list(gc_prefix("m"))):
        assert time.monotonic() < deadline, "gc never wrote its condemnation"
        time.sleep(0.005)
    return thread, out


def test_gc_condemns_before_deleting_and_leaves_no_condemnation(registry: Registry) -> None:
    old, _ = _two_versions(registry)
    thread, out = _gc_in_thread(registry)
    (entry,) = read_condemnations(registry.store, "m")
    assert entry.record.blobs == [old.files[0].sha256], "the condemnation names the candidates"
    assert _exists(registry, _blob(registry, old)), "nothing is deleted during the grace"
    thread.join()
    assert not _exists(registry, _blob(registry, old)), "the expired blob is deleted after it"
    assert list(registry.store.list(gc_prefix("m"))) == [], "the condemnation is removed"
    assert out[0].rounds == 1 and out[0].delete_blobs[0][0] == _blob(registry, old)


def test_a_push_reusing_a_condemned_blob_waits_for_gc_and_puts_it_back(
    registry: Registry,
) -> None:
    old, _ = _two_versions(registry)
    thread, _ = _gc_in_thread(registry)
    # The push finds the blob present (still condemned) and reuses it.
    again = registry.push("m", {"weights": "old"}, version="1.2.0")
    assert not thread.is_alive(), "the push must not commit while gc may still delete"
    thread.join()
    assert again.files[0].sha256 == old.files[0].sha256
    registry.verify("m:1.2.0")


def test_a_version_committed_during_the_grace_is_spared_by_the_re_read(
    registry: Registry,
) -> None:
    old, _ = _two_versions(registry)

    def commit_meanwhile(seconds: float) -> None:
        # A writer that checked before the condemnation existed commits during the grace.
        card = old.card.model_copy(update={"version": "1.2.0"})
        manifest = old.model_copy(update={"version": "1.2.0", "card": card, "created_at": utcnow()})
        registry.store.put(manifest_key("m", "1.2.0"), manifest.to_json())
        time.sleep(seconds)

    plan = run_gc(
        registry.store,
        "m",
        protected=lambda: set(),
        keep_last=1,
        grace=GRACE,
        who="ops",
        sleep=commit_meanwhile,
    )
    assert plan.spared_blobs == [_blob(registry, old)], "the re-read must spare the blob"
    assert plan.delete_blobs == []
    registry.verify("m:1.2.0")


def test_an_alias_change_claimed_during_the_grace_protects_its_version(
    registry: Registry,
) -> None:
    old, _ = _two_versions(registry)
    registry.set_active("m", "1.1.0")
    current, _ = read_aliases(registry.store, "m")

    def claim_meanwhile(seconds: float) -> None:
        # Claimed but not yet installed: the change is in flight.
        state = current.model_copy(update={"active": "1.0.0", "generation": 2})
        record = HistoryRecord(
            generation=2, action="set_active", previous=current, state=state, who="x", when=utcnow()
        )
        registry.store.put(history_key("m", 2), record.to_json())
        time.sleep(seconds)

    plan = run_gc(
        registry.store,
        "m",
        protected=lambda: registry._ever_aliased("m"),
        keep_last=1,
        grace=GRACE,
        who="ops",
        sleep=claim_meanwhile,
    )
    assert _blob(registry, old) in plan.spared_blobs, "an in-flight alias change keeps 1.0.0"
    registry.verify("m:1.0.0")


def test_alias_changes_refuse_a_version_whose_blobs_were_collected(registry: Registry) -> None:
    _two_versions(registry)
    registry.push("m", {"weights": "newest"}, version="1.2.0")
    registry.set_active("m", "1.2.0")
    registry.gc("m", keep_last=1, dry_run=False)  # 1.0.0 and 1.1.0 expire
    keys_before = {info.key: info.etag for info in registry.store.list("")}
    with pytest.raises(BlobsMissingError, match=r"m:1\.0\.0 cannot serve"):
        registry.start_canary("m", "1.0.0", 0.1)
    with pytest.raises(BlobsMissingError, match="no alias was changed"):
        registry.set_active("m", "1.1.0")
    assert {info.key: info.etag for info in registry.store.list("")} == keys_before, (
        "a refused alias change wrote something"
    )
    assert BlobsMissingError.exit_code == 25
    assert registry.collected("m") == {"1.0.0", "1.1.0"}
    assert registry.missing_blobs("m:1.0.0")[0].path == "model.joblib"


def test_a_promoter_step_refuses_a_canary_whose_blobs_are_gone(registry: Registry) -> None:
    _two_versions(registry)
    registry.set_active("m", "1.0.0")
    canary = registry.push("m", {"weights": "canary"}, version="1.2.0")
    registry.start_canary("m", "1.2.0", 0.05)
    registry.store.delete(_blob(registry, canary))  # lost behind gc's back
    generation = registry.aliases("m").generation
    with pytest.raises(BlobsMissingError):
        registry.set_ratio("m", 0.25, expect_generation=generation)
    with pytest.raises(BlobsMissingError):
        registry.promote("m", expect_generation=generation)
    registry.abort_canary("m", expect_generation=generation)  # removing traffic never blocks
    assert registry.aliases("m").canary is None


def test_a_writer_outwaits_the_condemnation_of_a_gc_that_died(registry: Registry) -> None:
    old, _ = _two_versions(registry)
    write_condemnation(registry.store, "m", [old.files[0].sha256], who="killed", grace=0.05)
    started = time.monotonic()
    registry.push("m", {"weights": "old"}, version="1.2.0")
    waited = time.monotonic() - started
    assert 0.15 <= waited < 5, f"the push waited {waited:.2f} s, not three of the dead graces"
    time.sleep(0.2)  # stale by the store's clock too
    registry.gc("m", keep_last=10, dry_run=False)
    registry.push("m", {"weights": "filler"}, version="1.3.0")
    registry.gc("m", keep_last=1, dry_run=False)
    assert list(registry.store.list(gc_prefix("m"))) == [], "gc removes a dead run's record"


def test_the_grace_resolves_argument_then_environment_then_sixty_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelshelf import ConfigurationError
    from modelshelf._settings import gc_grace_setting

    monkeypatch.delenv("MODELSHELF_GC_GRACE", raising=False)
    assert gc_grace_setting() == 60.0
    monkeypatch.setenv("MODELSHELF_GC_GRACE", "2m")
    assert gc_grace_setting() == 120.0
    assert gc_grace_setting(0.5) == 0.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("MODELSHELF_GC_GRACE", bad)
        with pytest.raises(ConfigurationError, match="MODELSHELF_GC_GRACE"):
            gc_grace_setting()


def test_a_push_puts_back_a_blob_a_gc_run_deleted_between_its_upload_and_its_look(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upload found the blob present; a whole gc run (condemn, wait, delete, remove the
    # condemnation) then fits before the push lists the condemnations and finds none.
    old, _ = _two_versions(registry)
    _gc_before_the_first_look(registry, monkeypatch)
    again = registry.push("m", {"weights": "old"}, version="1.2.0")
    assert again.files[0].sha256 == old.files[0].sha256
    assert _exists(registry, _blob(registry, old)), (
        "the push committed a version whose blob gc deleted before the push looked"
    )
    registry.verify("m:1.2.0")


def test_an_alias_change_refuses_a_version_a_gc_run_collected_before_its_look(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_versions(registry)
    registry.push("m", {"weights": "newest"}, version="1.2.0")
    registry.set_active("m", "1.2.0")
    generation = registry.aliases("m").generation
    _gc_before_the_first_look(registry, monkeypatch)  # 1.0.0 and 1.1.0 expire meanwhile
    with pytest.raises(BlobsMissingError, match=r"m:1\.0\.0 cannot serve.*no alias was changed"):
        registry.set_active("m", "1.0.0")
    assert registry.aliases("m").active == "1.2.0"
    assert registry.aliases("m").generation == generation, "the refused change was recorded"


def _gc_before_the_first_look(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one whole gc run right before the writer's first look for condemnations."""
    original = CondemnationGuard.before_commit
    ran: list[Any] = []

    def gc_first(self: CondemnationGuard, digests: Any, repair: Any) -> None:
        if not ran:
            ran.append(registry.gc("m", keep_last=1, dry_run=False))
            assert ran[0].delete_blobs, "the gc run injected before the look deleted nothing"
        original(self, digests, repair)

    monkeypatch.setattr(CondemnationGuard, "before_commit", gc_first)


class _SlowCondemnationCreate:
    """The store, but a condemnation's create reaches it ``delay`` seconds after it is sent,
    and ``just_before`` runs right before it becomes visible."""

    def __init__(self, inner: Any, delay: float, just_before: Any) -> None:
        self.inner = inner
        self.delay = delay
        self.just_before = just_before

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        if key.startswith(gc_prefix("m")):
            time.sleep(self.delay)
            self.just_before()
        return self.inner.put(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_slow_condemnation_create_still_gives_a_writer_that_just_missed_it_half_a_grace(
    registry: Registry,
) -> None:
    grace = 1.0  # the commit lands 0.6 s before the re-read: room for a loaded machine
    old, _ = _two_versions(registry)
    commits: list[threading.Thread] = []

    def writer_looks_and_commits() -> None:
        assert read_condemnations(registry.store, "m") == [], "the writer looks before it exists"

        def commit() -> None:
            time.sleep(grace / 2 - 0.1)  # within its half grace of that look
            card = old.card.model_copy(update={"version": "1.2.0"})
            manifest = old.model_copy(
                update={"version": "1.2.0", "card": card, "created_at": utcnow()}
            )
            registry.store.put(manifest_key("m", "1.2.0"), manifest.to_json())

        commits.append(threading.Thread(target=commit))
        commits[0].start()

    store = _SlowCondemnationCreate(registry.store, grace - 0.05, writer_looks_and_commits)
    plan = run_gc(store, "m", protected=lambda: set(), keep_last=1, grace=grace, who="ops")
    commits[0].join()
    assert plan.spared_blobs == [_blob(registry, old)], (
        "gc's re-read came less than a grace after its condemnation appeared and missed a "
        "commit made within half a grace of a look that just missed the condemnation"
    )
    registry.verify("m:1.2.0")
