"""Pushes and alias changes through a proxy that injects 10% faults.

Every operation must either succeed exactly once or fail with a clear ModelshelfError;
afterwards (faults off) the store holds no duplicate version, no history gap and no
corrupt blob, and every operation reported as successful is there exactly once.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf import ModelshelfError, Registry
from tests.support.faultproxy import Fault, FaultProxy, FaultRates, match_requests

SEED = int(os.environ.get("MODELSHELF_FAULT_SEED", "10"))


@pytest.fixture(params=["moto-server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def faulty(request: pytest.FixtureRequest, make_backend: Any, tmp_path: Path) -> Iterator[Any]:
    backend = make_backend(request.param)
    with FaultProxy(upstream=backend.endpoint_url, seed=SEED) as proxy:

        def registry(name: str) -> Registry:
            return Registry(
                backend.uri,
                endpoint_url=proxy.endpoint_url,
                cache_dir=tmp_path / f"cache-{name}",
                user=name,
                retry_delay=0.02,
                max_attempts=8,
                part_size=5 * 1024 * 1024,
            )

        clean = Registry(backend.uri, cache_dir=tmp_path / "cache-clean", **backend.store_options)
        yield request.param, proxy, registry, clean


def test_pushes_under_ten_percent_faults_land_exactly_once(
    faulty: Any, tmp_path: Path, report_figure: Any
) -> None:
    backend, proxy, make, clean = faulty
    registry = make("pusher")
    rng = random.Random(SEED)
    big = tmp_path / "big.bin"
    big.write_bytes(rng.randbytes(11 * 1024 * 1024))  # three 5 MiB parts: multipart path
    proxy.set_rates(FaultRates.uniform(0.10))

    succeeded: dict[str, str] = {}  # version -> files digest
    failures: list[str] = []
    for i in range(12):
        source: Any = big if i == 5 else {"weights": i, "noise": rng.random()}
        try:
            manifest = registry.push("m", source, bump="minor")
        except ModelshelfError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        assert manifest.version not in succeeded, f"{manifest.version} reported twice"
        succeeded[manifest.version] = manifest.files_digest()
    proxy.set_rates(FaultRates())
    stats = proxy.stats

    versions = clean.versions("m")
    digests = [clean.get(f"m:{v}").files_digest() for v in versions]
    assert len(set(digests)) == len(digests), "a retried push committed the same content twice"
    for version, digest in succeeded.items():
        assert version in versions, f"push of {version} reported success but is not there"
        assert clean.get(f"m:{version}").files_digest() == digest
    for version in versions:
        clean.verify(f"m:{version}")  # every blob present and matching its sha256
    report_figure(
        f"[{backend}] pushes: {len(succeeded)} ok, {len(failures)} failed cleanly; "
        f"faults injected: slowdown={stats.slowdown} reset={stats.reset} delay={stats.delay} "
        f"drop_response={stats.drop_response} of {stats.requests} requests"
    )
    assert stats.faults > 0, "the proxy injected no fault: the test proved nothing"
    assert len(succeeded) >= 9, f"too many pushes failed under 10% faults: {failures}"


def test_alias_changes_under_ten_percent_faults_keep_history_whole(
    faulty: Any, report_figure: Any
) -> None:
    backend, proxy, make, clean = faulty
    for i in range(3):
        clean.push("m", {"weights": i}, version=f"1.{i}.0")
    clean.set_active("m", "1.0.0", reason="initial")
    registry = make("changer")
    proxy.set_rates(FaultRates.uniform(0.10))
    rng = random.Random(SEED)
    ok: list[str] = []
    failed: list[str] = []
    for i in range(30):
        reason = f"change-{i}"
        try:
            if i % 3 == 0:
                registry.start_canary("m", rng.choice(["1.1.0", "1.2.0"]), 0.05, reason=reason)
            elif i % 3 == 1:
                registry.set_ratio("m", round(rng.uniform(0.1, 0.9), 3), reason=reason)
            else:
                registry.abort_canary("m", reason=reason)
            ok.append(reason)
        except ModelshelfError as exc:
            failed.append(f"{reason}: {type(exc).__name__}: {exc}")
    proxy.set_rates(FaultRates())
    stats = proxy.stats

    records = clean.history("m")
    assert [r.generation for r in records] == list(range(1, len(records) + 1)), "history gap"
    for earlier, later in zip(records, records[1:], strict=False):
        assert later.previous == earlier.state, f"record {later.generation} broke the chain"
    assert clean.aliases("m") == records[-1].state, "aliases.json is not the last record"
    reasons = [r.reason for r in records]
    for reason in ok:
        assert reasons.count(reason) == 1, (
            f"{reason} reported ok but recorded {reasons.count(reason)}x"
        )
    assert len(reasons) == len(set(reasons)), "a retried change was applied twice"
    report_figure(
        f"[{backend}] alias changes: {len(ok)} ok, {len(failed)} failed cleanly, "
        f"{len(records) - 1} recorded; faults injected: {stats.faults} of {stats.requests}"
    )
    assert stats.faults > 0


@pytest.mark.parametrize("target", ["/versions/", "/history/", "/aliases.json"])
def test_a_dropped_response_after_a_commit_is_reported_as_success(faulty: Any, target: str) -> None:
    _, proxy, make, clean = faulty
    clean.push("m", {"weights": 0}, version="1.0.0")
    clean.set_active("m", "1.0.0")
    registry = make("dropper")
    proxy.set_rates(FaultRates())
    proxy.set_match(match_requests("PUT", contains=target))
    proxy.force(Fault.DROP_RESPONSE, 1)
    if target == "/versions/":
        manifest = registry.push("m", {"weights": 1}, version="1.1.0")
        assert manifest.version == "1.1.0"
        assert clean.versions("m") == ["1.0.0", "1.1.0"], "the dropped commit must count once"
    else:
        registry.push("m", {"weights": 1}, version="1.1.0")
        state = registry.start_canary("m", "1.1.0", 0.1, reason="dropped")
        assert state.canary == "1.1.0"
        assert [r.reason for r in clean.history("m")].count("dropped") == 1
        assert clean.aliases("m").generation == 2
    assert proxy.stats.drop_response == 1, "the forced fault did not fire"
