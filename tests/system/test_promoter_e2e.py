"""End to end over HTTP: serving processes log metrics, scheduled promoter runs judge them.

Everything talks to an S3 server on 127.0.0.1 (moto's, then a real SeaweedFS) through the
real code paths: the serving client (:class:`modelshelf.serving.ModelServer`: alias polling,
routing, metric flushes) and the promoter (:class:`modelshelf_promoter.Promoter`: incremental
reads, the judge, conditional alias changes). Two models run side by side: ``good`` has a
canary with the same error rate as active, ``bad`` one with a clearly higher error rate. Runs
are scheduled every half second with small policy minimums (1-second metric windows and
steps), so the whole promotion takes seconds instead of hours.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelshelf import HistoryRecord, Registry
from modelshelf._card import ModelVersion
from modelshelf.serving import ModelServer
from modelshelf_promoter import ModelRun, Promoter, update_policy
from tests.support.backends import Backend

ACTIVE, CANARY = "1.0.0", "1.1.0"
ERROR_RATES = {
    "good": {ACTIVE: 0.02, CANARY: 0.02},
    "bad": {ACTIVE: 0.02, CANARY: 0.25},
}
POLICY = [
    "min_requests_per_arm=150",
    "min_step_seconds=1",
    # Equal error rates must not trip the test in CI: a wide margin and a small alpha keep
    # a false rollback far below one in a thousand runs.
    "alpha=0.01",
    "error_margin.value=0.5",
    "latency_p95_ratio=2",
    "latency_p99_ratio=2",
    "latency_min_samples=100",
    # The promotion gate, on seconds of traffic: "materially worse" is 3x here.
    "error_worse_ratio=3",
    "catch_error_ratio=10",
    "latency_worse_ratio=3",
]
DEADLINE_SECONDS = 45.0


def _version_loader(manifest: ModelVersion, files: Mapping[str, Path]) -> Any:
    return manifest.version


@pytest.fixture(
    params=["moto-server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)],
)
def server_backend(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """A fresh bucket on an S3 server over HTTP: moto's, then a real SeaweedFS."""
    backend: Backend = make_backend(request.param)
    return backend


@pytest.fixture
def registry(server_backend: Backend, tmp_path: Path) -> Registry:
    """Models 'good' and 'bad', each with a canary at 5% and a small-minimums policy."""
    backend = server_backend
    reg = Registry(
        backend.uri, cache_dir=tmp_path / "admin", user="release", **backend.store_options
    )
    for model in ERROR_RATES:
        for version in (ACTIVE, CANARY):
            reg.push(model, {"model": model, "weights": version}, version=version)
        reg.set_active(model, ACTIVE)
        update_policy(reg.store, model, POLICY)
        reg.start_canary(model, CANARY, 0.05, reason="release 1.1.0")
    return reg


@pytest.fixture
def fleet(
    registry: Registry, server_backend: Backend, tmp_path: Path
) -> Iterator[list[ModelServer]]:
    """Two serving processes per model, each with a traffic thread of its own."""
    stop = threading.Event()
    servers: list[ModelServer] = []
    threads: list[threading.Thread] = []
    for model in ERROR_RATES:
        for i in range(2):
            server_registry = Registry(
                server_backend.uri,
                cache_dir=tmp_path / f"{model}-{i}",
                **server_backend.store_options,
            )
            server = ModelServer(
                server_registry,
                model,
                poll_interval=0.2,
                flush_interval=0.3,
                server_id=f"{model}-web-{i}",
                loader=_version_loader,
                metrics_window=1,
            ).start()
            servers.append(server)
            rng = random.Random(f"{model}-{i}")
            thread = threading.Thread(
                target=_serve, args=(server, ERROR_RATES[model], rng, stop), daemon=True
            )
            thread.start()
            threads.append(thread)
    try:
        yield servers
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for server in servers:
            server.close(timeout=10)


def _serve(
    server: ModelServer, error_rates: dict[str, float], rng: random.Random, stop: threading.Event
) -> None:
    """About 500 requests a second: route, then record a synthetic outcome."""
    median = math.log(40.0)
    while not stop.is_set():
        for _ in range(25):
            version, _ = server.route(f"user-{rng.randrange(1_000_000)}")
            server.record(
                version, rng.lognormvariate(median, 0.2), rng.random() < error_rates[version]
            )
        stop.wait(0.05)


def _reason(record: HistoryRecord) -> dict[str, Any]:
    text = record.reason
    assert text is not None and text.startswith("promoter "), f"not a promoter reason: {text}"
    assert "{" not in text, f"the reason must be a sentence, its numbers in details: {text}"
    assert record.details is not None, f"a promoter change without details: {record}"
    return record.details


def test_good_canary_is_promoted_and_bad_one_rolled_back(
    registry: Registry, fleet: list[ModelServer]
) -> None:
    promoter = Promoter(registry, lateness_seconds=60)
    runs: list[ModelRun] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    pending = set(ERROR_RATES)
    while pending and time.monotonic() < deadline:
        for run in promoter.run(sorted(pending)):
            runs.append(run)
            assert run.status != "error", f"promoter run failed: {run}"
            if run.status == "no_canary":
                pending.discard(run.model)
        time.sleep(0.5)
    trail = [(r.model, r.action, r.ratio, r.reason) for r in runs if r.action != "hold"]
    assert not pending, f"still undecided after {DEADLINE_SECONDS}s: {pending}; decisions {trail}"

    good = registry.history("good")
    path = [(r.action, r.state.ratio) for r in good if r.generation > 2]
    # Promotion happens from the last step below 100%, where active is still the control.
    assert path == [
        ("set_ratio", 0.25),
        ("set_ratio", 0.5),
        ("promote", 0.0),
    ], f"the good canary did not walk 5% -> 25% -> 50% -> promoted: {path}"
    for record in good[2:]:
        reason = _reason(record)
        assert reason["canary"]["requests"] >= 150, f"advanced on too few requests: {reason}"
        assert reason["action"] in ("advance", "promote"), f"{reason}"
        assert record.who == "release", f"alias change not attributed: {record.who}"
    assert registry.aliases("good").active == CANARY, "the good canary is not active"

    bad = registry.history("bad")
    bad_path = [(r.action, r.state.ratio) for r in bad if r.generation > 2]
    assert bad_path == [("abort_canary", 0.0)], f"the bad canary was not rolled back: {bad_path}"
    reason = _reason(bad[-1])
    assert reason["action"] == "rollback", f"rollback reason: {reason}"
    assert reason["canary"]["errors"] / reason["canary"]["requests"] > 0.1, f"{reason}"
    assert registry.aliases("bad").active == ACTIVE, "a rolled-back canary touched active"

    # Every decision, holds included, is in the store with its statistics.
    written = [r.decision_key for r in runs if r.decision_key]
    for key in written:
        obj = registry.store.get(key)
        assert obj is not None and b'"canary_stats"' in obj.data, f"decision {key} incomplete"

    # The fleet follows: the good servers serve the promoted version only, the bad ones
    # their old active only.
    follow_deadline = time.monotonic() + 10
    while time.monotonic() < follow_deadline:
        snapshots = [(s.name, s.snapshot.active, s.snapshot.canary) for s in fleet if s.snapshot]
        if sorted(set(snapshots)) == [("bad", ACTIVE, None), ("good", CANARY, None)]:
            break
        time.sleep(0.1)
    assert sorted(set(snapshots)) == [("bad", ACTIVE, None), ("good", CANARY, None)], (
        f"the fleet did not follow the decisions: {snapshots}"
    )
