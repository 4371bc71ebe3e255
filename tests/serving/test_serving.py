"""The serving client: polling, load-before-switch, keeping the last good state, metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf import (
    AliasNotSetError,
    IntegrityError,
    LocalStore,
    Registry,
    StoreUnavailableError,
)
from modelshelf._stores import OVERWRITE, ObjectInfo, PutMode, Store, StoredObject
from modelshelf.layout import aliases_key, blob_key
from modelshelf.metrics import (
    ArmStats,
    MetricsSummary,
    metrics_prefix,
    summary_from_json,
    summary_key,
)
from modelshelf.serving import ModelServer
from tests.support.faultproxy import FaultProxy, FaultRates

POLL = 0.2
VERSIONS = ["1.0.0", "1.1.0", "1.2.0"]


class Weights:
    """A tiny picklable "model": predict returns its tag, fail() raises."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def predict(self, x: Any) -> str:
        return f"{self.tag}:{x}"

    def fail(self, x: Any) -> str:
        raise ValueError("model failure")


class CountingStore:
    """Wraps a real store; counts GETs of one key and the bytes they returned; can fail.

    ``down`` simulates an outage: every call raises ``StoreUnavailableError`` while it is set.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.lock = threading.Lock()
        self.gets: dict[str, int] = {}
        self.not_modified: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _check(self) -> None:
        if self.down.is_set():
            raise StoreUnavailableError(f"{self.inner.uri} is unreachable (simulated outage)")

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        self._check()
        obj = self.inner.get(key, if_none_match=if_none_match)
        with self.lock:
            self.gets[key] = self.gets.get(key, 0) + 1
            if obj is None:
                self.not_modified[key] = self.not_modified.get(key, 0) + 1
            else:
                self.bytes[key] = self.bytes.get(key, 0) + len(obj.data)
        return obj

    def head(self, key: str) -> ObjectInfo:
        self._check()
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, mode: PutMode = "create") -> str:
        self._check()
        return self.inner.put(key, data, mode=mode)

    def put_file(self, key: str, path: Path, **kwargs: Any) -> str:
        self._check()
        return self.inner.put_file(key, path, **kwargs)

    def get_file(self, key: str, dest: Path, **kwargs: Any) -> ObjectInfo:
        self._check()
        return self.inner.get_file(key, dest, **kwargs)

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        self._check()
        return self.inner.list(prefix, **kwargs)

    def delete(self, key: str) -> None:
        self._check()
        self.inner.delete(key)


def push_versions(registry: Registry, versions: list[str] = VERSIONS) -> None:
    for version in versions:
        registry.push("iris", Weights(version), version=version)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(LocalStore(tmp_path / "reg"), cache_dir=tmp_path / "pusher-cache", user="ops")
    push_versions(reg)
    reg.set_active("iris", "1.0.0")
    return reg


def serving_registry(registry: Registry, tmp_path: Path, store: Store | None = None) -> Registry:
    """A separate registry object for the server: own cache, optionally a wrapped store."""
    cache = tmp_path / f"server-cache-{time.monotonic_ns()}"
    return Registry(store or registry.store, cache_dir=cache, user="server")


# -- polling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend_name",
    ["local", "moto-server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)],
)
def test_a_promote_is_picked_up_within_two_intervals(
    backend_name: str, make_backend: Any, tmp_path: Path
) -> None:
    backend = make_backend(backend_name)
    admin = Registry(backend.open(), cache_dir=tmp_path / "admin", user="ops")
    push_versions(admin, ["1.0.0", "1.1.0"])
    admin.set_active("iris", "1.0.0")
    admin.start_canary("iris", "1.1.0", 0.5)
    counting = CountingStore(backend.open())
    server = ModelServer(
        Registry(counting, cache_dir=tmp_path / "srv"),
        "iris",
        poll_interval=POLL,
        flush_interval=60,
    )
    with server:
        assert server.status().generation == 2, "start() must load the current state"
        versions = {server.route(f"k{i}")[0] for i in range(200)}
        assert versions == {"1.0.0", "1.1.0"}, f"a 50% canary must get traffic, got {versions}"
        admin.promote("iris")
        waited = wait_for(
            lambda: server.route()[0] == "1.1.0" and server.status().canary is None,
            timeout=5,
            what="the promote to reach the server",
        )
        assert waited <= 2 * POLL * 1.2 + 0.5, f"promote took {waited:.2f} s, over two intervals"
        assert {server.route(f"k{i}")[0] for i in range(200)} == {"1.1.0"}, (
            "after a promote every request must go to the new active version"
        )
        assert server.route("k1")[1].predict(1) == "1.1.0:1", "the loaded model is not 1.1.0's"
        # Unchanged polls are conditional GETs answered 304: no body moves.
        key = aliases_key("iris")
        before = (
            counting.gets.get(key, 0),
            counting.not_modified.get(key, 0),
            counting.bytes.get(key, 0),
        )
        time.sleep(POLL * 5)
        gets = counting.gets[key] - before[0]
        unchanged = counting.not_modified.get(key, 0) - before[1]
        assert gets >= 2, f"only {gets} polls in {POLL * 5:.1f} s at a {POLL} s interval"
        assert unchanged == gets, f"{gets - unchanged} of {gets} idle polls were not 304s"
        assert counting.bytes[key] == before[2], "an unchanged poll downloaded the aliases body"
        assert server.status().unchanged_polls >= unchanged, "status must count unchanged polls"


def test_start_without_an_active_alias_is_a_clear_error(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "reg"), cache_dir=tmp_path / "cache")
    push_versions(reg, ["1.0.0"])
    server = ModelServer(reg, "iris", poll_interval=POLL)
    with pytest.raises(AliasNotSetError, match="alias set iris"):
        server.start()
    # wait=False comes up empty and starts serving once an active version appears.
    with ModelServer(reg, "iris", poll_interval=POLL).start(wait=False) as late:
        with pytest.raises(AliasNotSetError):
            late.route()
        assert not late.ready, "nothing can be ready before an alias exists"
        reg.set_active("iris", "1.0.0")
        wait_for(lambda: late.ready, timeout=5, what="the background first load")
        assert late.route()[0] == "1.0.0", "after the first load active must be served"


def test_corrupt_aliases_keep_the_last_good_state_and_log_once(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelshelf.serving")
    with ModelServer(serving_registry(registry, tmp_path), "iris", poll_interval=0.05) as server:
        registry.store.put(aliases_key("iris"), b'{"active": "1.0.0", "rat', mode=OVERWRITE)
        wait_for(
            lambda: server.status().consecutive_failures >= 3,
            timeout=10,
            what="the server to fail several polls on the corrupt object",
        )
        assert server.route("user")[0] == "1.0.0", "a corrupt aliases object must not switch"
        last_error = server.status().last_error or ""
        assert "InvalidAliasesError" in last_error, f"status must name the failure: {last_error}"
        warnings = [r for r in caplog.records if "poll failed" in r.getMessage()]
        assert len(warnings) == 1, (
            f"{len(warnings)} warnings for one failure repeated "
            f"{server.status().consecutive_failures} times: log it once"
        )
        # An object naming an unknown version is refused too, then a fix is followed.
        registry.store.put(
            aliases_key("iris"),
            registry.history("iris")[-1]
            .state.model_copy(update={"active": "7.7.7", "generation": 9})
            .to_json(),
            mode=OVERWRITE,
        )
        wait_for(
            lambda: "7.7.7" in (server.status().last_error or ""),
            timeout=10,
            what="the unknown version to be refused",
        )
        assert server.route("user")[0] == "1.0.0", "an unknown version must not be switched to"
        registry.set_active("iris", "1.2.0", reason="fix")
        wait_for(
            lambda: server.route("user")[0] == "1.2.0",
            timeout=10,
            what="the server to recover after the fix (backoff is at most 8 intervals)",
        )
        assert server.status().consecutive_failures == 0, "a good poll must reset the failures"


def test_a_tampered_blob_is_never_switched_to(registry: Registry, tmp_path: Path) -> None:
    with ModelServer(serving_registry(registry, tmp_path), "iris", poll_interval=POLL) as server:
        manifest = registry.get("iris:1.1.0")
        for entry in manifest.files:
            registry.store.put(blob_key("iris", entry.sha256), b"x" * entry.size, mode=OVERWRITE)
        registry.set_active("iris", "1.1.0")
        wait_for(
            lambda: "IntegrityError" in (server.status().last_error or ""),
            timeout=5,
            what="the tampered blob to be refused",
        )
        assert server.route()[0] == "1.0.0", "a version with a corrupt blob must not be served"
        assert server.status().generation == 1, "the old generation must stay in place"
        with pytest.raises(IntegrityError):
            server.refresh()


def test_route_keeps_answering_while_the_store_is_down(registry: Registry, tmp_path: Path) -> None:
    counting = CountingStore(registry.store)
    with ModelServer(
        serving_registry(registry, tmp_path, counting), "iris", poll_interval=0.05
    ) as server:
        counting.down.set()
        registry.set_active("iris", "1.1.0")  # the admin still reaches the store
        wait_for(
            lambda: server.status().consecutive_failures >= 3,
            timeout=10,
            what="polls to fail during the outage",
        )
        start = time.perf_counter()
        answers = {server.route(f"u{i}")[0] for i in range(10_000)}
        elapsed = time.perf_counter() - start
        assert answers == {"1.0.0"}, "during an outage the last good version must be served"
        assert elapsed < 1.0, f"route() took {elapsed:.2f} s for 10k calls during an outage"
        counting.down.clear()
        wait_for(
            lambda: server.route()[0] == "1.1.0",
            timeout=10,
            what="the server to catch up once the store is back",
        )


def test_ratio_changes_reuse_loaded_models(registry: Registry, tmp_path: Path) -> None:
    loads: list[str] = []

    def loader(manifest: Any, files: Any) -> Any:
        loads.append(manifest.version)
        from modelshelf.serving import joblib_loader

        return joblib_loader(manifest, files)

    with ModelServer(
        serving_registry(registry, tmp_path), "iris", poll_interval=POLL, loader=loader
    ) as server:
        registry.start_canary("iris", "1.1.0", 0.05)
        wait_for(lambda: server.status().canary == "1.1.0", 5, "the canary")
        registry.set_ratio("iris", 0.5)
        wait_for(lambda: server.status().ratio == 0.5, 5, "the ratio change")
        registry.promote("iris")
        wait_for(lambda: server.status().active == "1.1.0", 5, "the promote")
    assert loads == ["1.0.0", "1.1.0"], f"each version must be loaded once, loads were {loads}"


def test_predict_returns_the_version_and_records_errors(registry: Registry, tmp_path: Path) -> None:
    with ModelServer(serving_registry(registry, tmp_path), "iris", poll_interval=POLL) as server:
        result, version = server.predict("predict", 7, key="user-1")
        assert (result, version) == ("1.0.0:7", "1.0.0"), "predict must name the serving version"
        doubled = server.predict(lambda model, x: model.predict(x * 2), 4)
        assert doubled.result == "1.0.0:8" and doubled.version == "1.0.0", "callables must work"
        with pytest.raises(ValueError, match="model failure"):
            server.predict("fail", 1)
        counts = server.recorder.unwritten()
        assert counts == {"1.0.0": (3, 1)}, f"expected 3 requests and 1 error, got {counts}"


# -- metrics ----------------------------------------------------------------------------


def stored_stats(store: Store) -> dict[str, ArmStats]:
    """Every flushed summary of iris, parsed by the metrics module and merged per version."""
    by_version: dict[str, list[MetricsSummary]] = {}
    for info in store.list(metrics_prefix("iris")):
        obj = store.get(info.key)
        assert obj is not None
        summary = summary_from_json(obj.data, info.key)
        assert summary_key(summary) == info.key, f"{info.key} holds another summary's key"
        by_version.setdefault(summary.version, []).append(summary)
    return {v: ArmStats.merge_all(parts) for v, parts in by_version.items()}


class FlakyWrites(CountingStore):
    """Writes fail while ``down`` is set (reads keep working); with ``land_then_fail`` they
    land first and then fail.

    ``land_then_fail`` is the ambiguous outcome: the object is written but the caller hears
    an error (a response lost in transit), so a retry must not count it twice.
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.land_then_fail = threading.Event()

    def _check(self) -> None:
        pass  # polls and loads keep working; only writes fail

    def put(self, key: str, data: bytes, *, mode: PutMode = "create") -> str:
        if self.down.is_set():
            raise StoreUnavailableError(f"cannot write {key} (simulated outage)")
        if self.land_then_fail.is_set():
            self.inner.put(key, data, mode=mode)
            raise StoreUnavailableError(f"lost the answer for {key} (simulated)")
        return self.inner.put(key, data, mode=mode)


def test_flushes_write_summaries_the_metrics_module_reads(
    registry: Registry, tmp_path: Path
) -> None:
    registry.start_canary("iris", "1.1.0", 0.3)
    with ModelServer(
        serving_registry(registry, tmp_path), "iris", poll_interval=POLL, server_id="web-1"
    ) as server:
        served: dict[str, int] = {}
        for i in range(2000):
            _, version = server.predict("predict", i, key=f"user-{i}")
            served[version] = served.get(version, 0) + 1
        for _ in range(50):
            server.record("1.1.0", 250.0, error=True)
        assert server.flush() == 0, "a flush to a healthy store must leave nothing pending"
        stats = stored_stats(registry.store)
        assert {v: s.count for v, s in stats.items()} == {
            "1.0.0": served["1.0.0"],
            "1.1.0": served["1.1.0"] + 50,
        }, f"flushed counts {stats} differ from the requests served {served}"
        assert stats["1.1.0"].errors == 50 and stats["1.0.0"].errors == 0, "errors miscounted"
        # Failed requests' latencies are kept apart from the successful ones' (issue 12).
        failed = stats["1.1.0"].error_latency
        assert failed.count == 50 and 240 < failed.get_quantile_value(0.5) < 260, (
            f"the failed-request sketch lost the 250 ms failures: {failed.count} values"
        )
        served_fast = stats["1.1.0"].quantile(0.999)
        assert served_fast is not None and served_fast < 240, (
            f"failed requests' latencies leaked into the successful ones': {served_fast}"
        )
        assert stats["1.1.0"].latency.count == served["1.1.0"], "one latency per success"
        keys = [info.key for info in registry.store.list(metrics_prefix("iris"))]
        assert all("/web-1-" in key for key in keys), f"keys must carry the server id: {keys}"
        assert server.flush() == 0, "an empty flush must leave nothing pending"
        after = [info.key for info in registry.store.list(metrics_prefix("iris"))]
        assert after == keys, "a flush with nothing recorded must write nothing"


def test_a_failed_flush_is_retried_and_nothing_is_lost_or_doubled(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelshelf.serving")
    flaky = FlakyWrites(registry.store)
    server = ModelServer(
        serving_registry(registry, tmp_path, flaky), "iris", poll_interval=POLL, server_id="web-2"
    )
    with server:
        for _ in range(300):
            server.record("1.0.0", 3.0)
        flaky.down.set()
        assert server.flush() > 0, "a flush to a failing store must report pending summaries"
        for _ in range(200):
            server.record("1.0.0", 3.0, error=True)
        assert server.flush() > 0, "still down: still pending"
        assert server.status().pending_metrics == 500, "every unwritten request must be kept"
        failures = [r for r in caplog.records if "metrics flush" in r.getMessage()]
        assert len(failures) == 1, f"one outage must be logged once, got {len(failures)}"
        flaky.down.clear()
        flaky.land_then_fail.set()  # the retry lands but its answer is lost
        assert server.flush() > 0, "a write whose answer was lost must stay pending"
        flaky.land_then_fail.clear()
        assert server.flush() == 0, "the retry after the store recovered must clear everything"
        assert server.status().pending_metrics == 0, "nothing may stay pending once written"
    stats = stored_stats(registry.store)
    assert (stats["1.0.0"].count, stats["1.0.0"].errors) == (500, 200), (
        f"after the outage the store must hold each request exactly once, got "
        f"{stats['1.0.0'].count} requests / {stats['1.0.0'].errors} errors"
    )


def test_background_flush_and_close_flush(registry: Registry, tmp_path: Path) -> None:
    with ModelServer(
        serving_registry(registry, tmp_path), "iris", poll_interval=POLL, flush_interval=0.2
    ) as background:
        background.record("1.0.0", 1.0)
        wait_for(
            lambda: "1.0.0" in stored_stats(registry.store), timeout=5, what="the background flush"
        )
    # With an hour between flushes only close() can write these.
    server = ModelServer(serving_registry(registry, tmp_path), "iris", flush_interval=3600)
    with server:
        for _ in range(9):
            server.record("1.1.0", 1.0)
    assert stored_stats(registry.store)["1.1.0"].count == 9, (
        "close() must flush what was recorded since the last flush"
    )


def test_an_unreachable_s3_store_never_reaches_requests(make_backend: Any, tmp_path: Path) -> None:
    """moto over HTTP behind a proxy that answers 503 or resets every request for a while."""
    backend = make_backend("moto-server")
    admin = Registry(backend.open(), cache_dir=tmp_path / "admin", user="ops")
    push_versions(admin, ["1.0.0", "1.1.0"])
    admin.set_active("iris", "1.0.0")
    with FaultProxy(backend.endpoint_url, seed=3) as proxy:
        registry = Registry(
            backend.uri,
            endpoint_url=proxy.endpoint_url,
            max_attempts=2,
            retry_delay=0.01,
            cache_dir=tmp_path / "srv",
        )
        with ModelServer(registry, "iris", poll_interval=0.05, server_id="web-9") as server:
            proxy.set_rates(FaultRates(slowdown=0.5, reset=0.5))
            admin.set_active("iris", "1.1.0")  # the admin does not go through the proxy
            for _ in range(40):
                server.predict("predict", 1, key="user")
            assert server.flush() > 0, "a flush through a dead endpoint must stay pending"
            wait_for(
                lambda: server.status().consecutive_failures >= 3,
                timeout=20,
                what="polls to fail while the endpoint is down",
            )
            assert {server.route(f"u{i}")[0] for i in range(1000)} == {"1.0.0"}, (
                "while S3 is unreachable the last good version must keep serving"
            )
            proxy.set_rates(FaultRates())
            wait_for(
                lambda: server.route()[0] == "1.1.0",
                timeout=20,
                what="the server to follow the change once S3 answers again",
            )
            assert server.flush() == 0, "the kept metrics must land once S3 answers"
        assert proxy.stats.faults > 0, "the proxy injected no fault: the test proved nothing"
    assert stored_stats(backend.open())["1.0.0"].count == 40, (
        "requests recorded during the outage must be written exactly once afterwards"
    )


def test_keyed_errors_are_counted_per_route_bucket_with_the_served_ratio(
    registry: Registry, tmp_path: Path
) -> None:
    registry.start_canary("iris", "1.1.0", 0.3)
    failing = {"user-7"}  # one client whose every request fails, whichever arm serves it

    def call(model: Any, key: str) -> Any:
        if key in failing:
            raise ValueError("bad input")
        return model

    with ModelServer(
        serving_registry(registry, tmp_path), "iris", poll_interval=POLL, server_id="web-2"
    ) as server:
        for i in range(600):
            key = f"user-{i % 50}"
            try:
                server.predict(call, key, key=key)
            except ValueError:
                pass
        assert server.flush() == 0
        summaries = []
        for info in registry.store.list(metrics_prefix("iris")):
            obj = registry.store.get(info.key)
            assert obj is not None
            summaries.append(summary_from_json(obj.data, info.key))
    from modelshelf.metrics import latency_mismatch, route_bucket
    from modelshelf.serving import route_point

    snapshot_salt = registry.aliases("iris").salt
    bucket = route_bucket(route_point(snapshot_salt, "user-7"))
    errors = sum(s.errors for s in summaries)
    assert errors == 12, f"{errors} errors for one client's 12 requests"
    by_bucket: dict[int, int] = {}
    for s in summaries:
        assert s.route_buckets == 100 and s.served_ratio == pytest.approx(0.3), (
            f"routing not recorded: {s}"
        )
        assert latency_mismatch(s) is None, f"one latency per request: {s}"
        assert s.error_latency is not None and s.error_latency.count == s.errors, s
        for b, n in s.bucket_errors.items():
            by_bucket[b] = by_bucket.get(b, 0) + n
    assert by_bucket == {bucket: 12}, f"the client's errors are not in its bucket: {by_bucket}"


def test_a_summary_without_the_new_fields_is_written_as_before() -> None:
    from datetime import UTC, datetime

    from modelshelf.metrics import summary_to_json

    summary = MetricsSummary(
        model="iris",
        version="1.0.0",
        server_id="web-1",
        seq=0,
        window_start=datetime(2025, 1, 1, tzinfo=UTC),
        window_seconds=60,
        count=0,
        errors=0,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    data = summary_to_json(summary).decode()
    for name in ("error_latency", "served_ratio", "route_buckets", "bucket_errors"):
        assert name not in data, f"an unset {name} changed the format older readers read"
    again = summary_to_json(summary_from_json(data.encode())).decode()
    assert again == data, "an old-format object does not round-trip byte for byte"
