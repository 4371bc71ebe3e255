"""The promoter's runner and incremental reader on a local folder and on moto (in-process).

Metrics objects are written directly as the serving client writes them (MetricsSummary
JSON under ``{model}/metrics/{version}/{window}/{server}-{seq}.json``); the runner reads
them, judges, and changes aliases only through the linearizable alias update.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelshelf import Registry
from modelshelf._cli import cli
from modelshelf._errors import InvalidPolicyError
from modelshelf._stores import CREATE, ObjectInfo, PutMode, Store, StoredObject
from modelshelf.metrics import (
    MetricsSummary,
    new_sketch,
    summary_key,
    summary_to_json,
    window_start,
)
from modelshelf_promoter import (
    DecisionRecord,
    ModelRun,
    Promoter,
    PromoterState,
    decision_prefix,
    default_policy,
    load_policy,
    policy_key,
    state_key,
    update_policy,
)
from tests.support.backends import Backend

MODEL = "fraud"
ACTIVE, CANARY = "1.0.0", "1.1.0"
WINDOW = 60


def _canary_registry(backend: Backend, tmp_path: Path) -> Registry:
    reg = Registry(backend.open(retry_delay=0.01), cache_dir=tmp_path / "cache", user="tester")
    for version in (ACTIVE, CANARY):
        reg.push(MODEL, {"weights": version}, version=version)
    reg.set_active(MODEL, ACTIVE)
    reg.start_canary(MODEL, CANARY, 0.05)
    return reg


@pytest.fixture(params=["local", "moto"])
def registry(request: pytest.FixtureRequest, make_backend: Any, tmp_path: Path) -> Registry:
    """A registry with ACTIVE serving and CANARY started at 5%, on each backend."""
    return _canary_registry(make_backend(request.param), tmp_path)


@pytest.fixture
def local_registry(make_backend: Any, tmp_path: Path) -> Registry:
    """The same on a local folder, which CLI runs in child processes can reach too."""
    return _canary_registry(make_backend("local"), tmp_path)


class Clock:
    """A settable clock for the promoter."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def put_summary(
    store: Store,
    version: str,
    server: str,
    seq: int,
    when: datetime,
    count: int,
    errors: int,
    *,
    median_ms: float = 50.0,
    rng: random.Random | None = None,
) -> str:
    """Write one metrics object as a serving process would; returns its key."""
    rng = rng or random.Random(seq)
    sketch = new_sketch()
    for _ in range(count):
        sketch.add(rng.lognormvariate(0.0, 0.3) * median_ms)
    summary = MetricsSummary(
        model=MODEL,
        version=version,
        server_id=server,
        seq=seq,
        window_start=window_start(when, WINDOW),
        window_seconds=WINDOW,
        count=count,
        errors=errors,
        latency=sketch,
    )
    key = summary_key(summary)
    store.put(key, summary_to_json(summary), mode=CREATE)
    return key


def traffic(
    store: Store,
    when: datetime,
    *,
    servers: int = 3,
    active: tuple[int, int] = (400, 4),
    canary: tuple[int, int] = (40, 0),
    seq: int = 0,
) -> None:
    """Each server flushes one object per version for the window holding ``when``."""
    for i in range(servers):
        put_summary(store, ACTIVE, f"web-{i}", seq, when, *active)
        put_summary(store, CANARY, f"web-{i}", seq + 1, when, *canary)


def set_policy(reg: Registry, *settings: str) -> None:
    update_policy(reg.store, MODEL, settings)


def decisions(reg: Registry) -> list[DecisionRecord]:
    found = []
    for info in reg.store.list(decision_prefix(MODEL)):
        obj = reg.store.get(info.key)
        assert obj is not None
        found.append(DecisionRecord.model_validate_json(obj.data))
    return found


def now_after_start(reg: Registry, seconds: float = 120.0) -> datetime:
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None, "start_canary did not record canary_started_at"
    return started + timedelta(seconds=seconds)


# --- policy ---------------------------------------------------------------------------------


def test_missing_policy_means_the_defaults(registry: Registry) -> None:
    now = now_after_start(registry)
    traffic(registry.store, now - timedelta(seconds=30))
    assert load_policy(registry.store, MODEL) == (default_policy(), None), (
        "a model without policy.json did not get the default policy"
    )
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert run.status == "decided" and run.policy_source == "default", f"run: {run}"
    # The defaults need 500 requests per arm; the canary has 120.
    assert run.action == "hold" and "too few samples" in run.reason, f"run: {run}"
    (record,) = decisions(registry)
    assert record.decision.policy == default_policy(), "the decision was not judged by defaults"
    assert record.outcome == "no_change" and record.policy_source == "default", f"{record}"


def test_hold_on_few_samples_changes_nothing(registry: Registry) -> None:
    set_policy(registry, "min_requests_per_arm=1000", "min_step_seconds=0")
    now = now_after_start(registry)
    traffic(registry.store, now - timedelta(seconds=30), active=(2000, 20), canary=(300, 3))
    before = registry.aliases(MODEL)
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert (run.action, run.applied) == ("hold", False), f"few samples did not hold: {run}"
    assert run.canary_requests == 900 and run.active_requests == 6000, f"counts: {run}"
    assert registry.aliases(MODEL) == before, "a hold changed the aliases"
    (record,) = decisions(registry)
    assert record.decision.canary.requests == 900, "decision record lacks the statistics"
    assert record.canary_stats.count == 900 and record.canary_stats.latency.count == 900, (
        "decision record lacks the merged sketch"
    )


def test_policy_cli_shows_sets_and_refuses_bad_settings(local_registry: Registry) -> None:
    registry = local_registry
    runner = CliRunner()
    base = ["--registry", registry.uri, "promoter", "policy", MODEL]
    shown = runner.invoke(cli, [*base, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["source"] == "default" and data["policy"]["alpha"] == 0.05, data

    changed = runner.invoke(cli, [*base, "--set", "alpha=0.01", "--set", "steps=0.1,0.5,1"])
    assert changed.exit_code == 0, changed.output
    policy, etag = load_policy(registry.store, MODEL)
    assert policy.alpha == 0.01 and policy.steps == (0.1, 0.5, 1.0), f"stored: {policy}"

    bad = runner.invoke(cli, [*base, "--set", "alpha=0.01", "--set", "alpha=7"])
    assert bad.exit_code == InvalidPolicyError.exit_code, f"bad setting: {bad.output}"
    assert "alpha" in bad.output, f"the error does not name the field: {bad.output}"
    assert registry.store.head(policy_key(MODEL)).etag == etag, "a bad setting wrote the policy"


# --- reading ----------------------------------------------------------------------------------


def test_corrupt_metrics_object_is_skipped_and_reported(registry: Registry) -> None:
    now = now_after_start(registry)
    when = now - timedelta(seconds=30)
    traffic(registry.store, when)
    window = window_start(when, WINDOW).strftime("%Y%m%dT%H%M%SZ")
    broken = f"{MODEL}/metrics/{CANARY}/{window}/web-9-00000001.json"
    registry.store.put(broken, b'{"count": 12, "errors": ')
    # Valid JSON, but it claims to be the active version while filed under the canary.
    liar = f"{MODEL}/metrics/{CANARY}/{window}/web-8-00000002.json"
    other = MetricsSummary(
        model=MODEL,
        version=ACTIVE,
        server_id="web-8",
        seq=2,
        window_start=window_start(when, WINDOW),
        window_seconds=WINDOW,
        count=5000,
        errors=4000,
    )
    registry.store.put(liar, summary_to_json(other))

    promoter = Promoter(registry, clock=Clock(now))
    (run,) = promoter.run([MODEL])
    assert run.status == "decided", f"a corrupt object failed the run: {run}"
    assert run.read is not None
    assert sorted(c.key for c in run.read.corrupt) == sorted([broken, liar]), (
        f"corrupt objects not reported: {run.read.corrupt}"
    )
    assert run.canary_requests == 120, f"a corrupt object was merged: {run.canary_requests}"
    (record,) = decisions(registry)
    assert {c.key for c in record.read.corrupt} == {broken, liar}, "decision lacks the corrupt"

    (again,) = promoter.run([MODEL])
    assert again.read is not None and again.read.fetched == 0, (
        f"corrupt objects were read again: {again.read}"
    )
    assert again.read.corrupt_total == 2, f"corrupt total: {again.read}"


class CountingStore:
    """A Store wrapper that counts GETs per key prefix."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gets: list[str] = []
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.inner.uri

    def metric_gets(self) -> int:
        return sum(1 for key in self.gets if "/metrics/" in key)

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        with self._lock:
            self.gets.append(key)
        return self.inner.get(key, if_none_match=if_none_match)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, mode: PutMode = CREATE) -> str:
        return self.inner.put(key, data, mode=mode)

    def list(self, prefix: str = "", **kwargs: Any) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_second_run_reads_only_new_objects(registry: Registry, tmp_path: Path) -> None:
    counting = CountingStore(registry.store)
    reg = Registry(counting, cache_dir=tmp_path / "c2", user="tester")
    # Both windows after the one holding the start (whose active part is pre-canary).
    now = now_after_start(registry, 200)
    traffic(registry.store, now - timedelta(seconds=90), servers=4)
    traffic(registry.store, now - timedelta(seconds=30), servers=4, seq=2)
    clock = Clock(now)
    promoter = Promoter(reg, clock=clock)

    (first,) = promoter.run([MODEL])
    assert first.read is not None and first.read.fetched == 16, f"first read: {first.read}"
    assert counting.metric_gets() == 16, f"GETs of metric objects: {counting.metric_gets()}"

    counting.gets.clear()
    (second,) = promoter.run([MODEL])
    assert second.read is not None and second.read.fetched == 0, f"second: {second.read}"
    assert counting.metric_gets() == 0, f"an immediate second run GOT {counting.gets}"
    assert (second.canary_requests, second.active_requests) == (320, 3200), (
        f"state lost or doubled counts: {second}"
    )

    # A late object in a window that is still open is picked up, exactly once.
    put_summary(registry.store, CANARY, "web-late", 7, now - timedelta(seconds=90), 11, 1)
    counting.gets.clear()
    (third,) = promoter.run([MODEL])
    assert counting.metric_gets() == 1, f"GETs for one late object: {counting.gets}"
    assert third.canary_requests == 331, f"late object not merged once: {third}"


def test_late_object_in_a_closed_window_is_reported_not_merged(registry: Registry) -> None:
    now = now_after_start(registry)
    old = now - timedelta(seconds=30)
    traffic(registry.store, old)
    clock = Clock(now)
    promoter = Promoter(registry, clock=clock, lateness_seconds=300)
    promoter.run([MODEL])
    clock.now = now + timedelta(seconds=600)  # the first window is now closed
    traffic(registry.store, clock.now - timedelta(seconds=30), seq=10)
    promoter.run([MODEL])
    state_obj = registry.store.get(state_key(MODEL))
    assert state_obj is not None
    state = PromoterState.model_validate_json(state_obj.data)
    assert state.cursor is not None
    closed = state.cursor.arms["canary"].closed_windows
    assert closed, f"the old window was not closed: {state.cursor.arms['canary']}"

    put_summary(registry.store, CANARY, "web-slow", 3, old, 50, 50)
    (run,) = promoter.run([MODEL])
    assert run.read is not None and run.read.late_ignored == 1, f"late object: {run.read}"
    assert run.canary_requests == 240, f"a late object in a closed window was merged: {run}"
    (again,) = promoter.run([MODEL])
    assert again.read is not None and again.read.late_ignored == 0, "late object re-reported"


# --- decisions --------------------------------------------------------------------------------


def test_no_canary_is_a_noop(registry: Registry) -> None:
    registry.abort_canary(MODEL, reason="test")
    generation = registry.aliases(MODEL).generation
    (run,) = Promoter(registry).run([MODEL])
    assert run.status == "no_canary" and run.action is None, f"run: {run}"
    assert registry.aliases(MODEL).generation == generation, "a no-op changed the aliases"
    assert not list(registry.store.list(f"{MODEL}/promoter/")), "a no-op wrote promoter state"
    assert Promoter(registry).run() == [], "'all models with a canary' included a model without"
    (ghost,) = Promoter(registry).run(["ghost"])
    assert ghost.status == "error" and ghost.error_type == "ModelNotFoundError", f"{ghost}"


def test_rollback_on_a_bad_canary(registry: Registry) -> None:
    now = now_after_start(registry)
    traffic(registry.store, now - timedelta(seconds=30), active=(1000, 10), canary=(200, 60))
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert (run.action, run.applied) == ("rollback", True), f"bad canary not rolled back: {run}"
    aliases = registry.aliases(MODEL)
    assert (aliases.active, aliases.canary, aliases.ratio) == (ACTIVE, None, 0.0), (
        f"rollback must drop the canary and leave active alone: {aliases}"
    )
    last = registry.history(MODEL)[-1]
    assert last.action == "abort_canary" and last.reason is not None, f"history: {last}"
    assert last.reason.startswith("promoter rollback: "), f"reason: {last.reason}"
    assert "{" not in last.reason and len(last.reason) < 300, (
        f"the reason must be a short sentence, the numbers in details: {last.reason}"
    )
    numbers = last.details
    assert numbers is not None, f"the record lacks the structured details: {last}"
    assert (numbers["canary"]["requests"], numbers["canary"]["errors"]) == (600, 180), (
        f"the reason lacks the numbers: {numbers}"
    )
    assert numbers["decision"] == run.decision_key, "reason does not name the decision record"
    (record,) = decisions(registry)
    assert record.outcome == "applied" and record.new_generation == last.generation, f"{record}"
    assert record.decision.errors.alarm, "the decision record lacks the alarm that caused it"


def test_healthy_canary_advances_then_promotes(registry: Registry) -> None:
    # Small minimums and an easy gate: this is about the runner applying the decisions.
    set_policy(
        registry,
        "min_requests_per_arm=100",
        "min_step_seconds=60",
        "steps=0.05,0.5",
        "catch_error_ratio=1000",
        "error_worse_ratio=1000",
        "latency_worse_ratio=1000",
        "beta=0.5",
    )
    start = now_after_start(registry, 0)
    clock = Clock(start + timedelta(seconds=30))
    promoter = Promoter(registry, clock=clock)
    traffic(registry.store, clock.now - timedelta(seconds=20))
    (early,) = promoter.run([MODEL])
    assert early.action == "hold" and "step" in early.reason, f"min_step_seconds: {early}"
    clock.now += timedelta(seconds=60)
    traffic(registry.store, clock.now - timedelta(seconds=5), seq=4)
    (advance,) = promoter.run([MODEL])
    assert (advance.action, advance.next_ratio) == ("advance", 0.5), f"{advance}"
    clock.now += timedelta(seconds=90)
    # An upper bound for the canary's p99 needs some hundreds of latencies.
    traffic(registry.store, clock.now - timedelta(seconds=5), seq=8, canary=(400, 0))
    (promote,) = promoter.run([MODEL])
    assert (promote.action, promote.applied) == ("promote", True), f"{promote}"
    aliases = registry.aliases(MODEL)
    assert (aliases.active, aliases.canary) == (CANARY, None), f"not promoted: {aliases}"
    actions = [(r.action, r.state.ratio) for r in registry.history(MODEL)]
    assert actions[-2:] == [("set_ratio", 0.5), ("promote", 0.0)], f"history: {actions}"
    (after,) = promoter.run([MODEL])
    assert after.status == "no_canary", f"a promoted model was judged again: {after}"


class BarrierStore(CountingStore):
    """Holds the first read of aliases.json until every overlapping run has made it."""

    def __init__(self, inner: Store, barrier: threading.Barrier) -> None:
        super().__init__(inner)
        self.barrier = barrier
        self.waited = False

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        result = super().get(key, if_none_match=if_none_match)
        if key.endswith("/aliases.json") and not self.waited:
            self.waited = True
            self.barrier.wait(timeout=30)
        return result


def test_overlapping_runs_advance_once(registry: Registry, tmp_path: Path) -> None:
    set_policy(registry, "min_requests_per_arm=100", "min_step_seconds=0", "catch_error_ratio=1000")
    now = now_after_start(registry)
    traffic(registry.store, now - timedelta(seconds=30))
    runs = 4
    barrier = threading.Barrier(runs)
    results: list[ModelRun] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        store = BarrierStore(registry.store, barrier)
        reg = Registry(store, cache_dir=tmp_path / f"c{i}", user=f"run-{i}")
        (result,) = Promoter(reg, clock=Clock(now)).run([MODEL])
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == runs, f"runs did not finish: {results}"
    assert all(r.generation == 2 and r.action == "advance" for r in results), (
        f"every run should have judged generation 2 as an advance: {results}"
    )
    applied = [r for r in results if r.applied]
    assert len(applied) == 1, f"{len(applied)} runs advanced the same generation: {results}"
    assert all(r.status == "conflict" for r in results if not r.applied), f"{results}"
    history = registry.history(MODEL)
    assert [(r.action, r.state.ratio) for r in history[2:]] == [("set_ratio", 0.25)], (
        f"the canary was advanced more than once: {[(r.action, r.state.ratio) for r in history]}"
    )
    records = decisions(registry)
    assert sorted(r.outcome for r in records) == ["applied"] + ["conflict"] * (runs - 1), (
        f"decision records: {[r.outcome for r in records]}"
    )
    state_obj = registry.store.get(state_key(MODEL))
    assert state_obj is not None
    state = PromoterState.model_validate_json(state_obj.data)
    assert state.cursor is not None and state.cursor.arms["canary"].stats.count == 120, (
        "the state's statistics were merged more than once"
    )


# --- the run command ----------------------------------------------------------------------------


def test_run_command_once_and_in_a_loop_until_ctrl_c(local_registry: Registry) -> None:
    registry = local_registry
    traffic(registry.store, datetime.now(UTC))
    once = CliRunner().invoke(cli, ["--registry", registry.uri, "promoter", "run", "--json"])
    assert once.exit_code == 0, once.output
    data = json.loads(once.output)
    assert [m["model"] for m in data["models"]] == [MODEL], f"run all: {data}"
    assert data["models"][0]["action"] == "hold", f"{data}"

    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from modelshelf._cli import main; main()",
            "--registry",
            registry.uri,
            "promoter",
            "run",
            MODEL,
            "--every",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(decisions(registry)) < 3:
            time.sleep(0.1)
        assert len(decisions(registry)) >= 3, "the loop did not run repeatedly"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"Ctrl-C did not stop cleanly ({proc.returncode}): {err}"
    assert "stopping" in err and "Traceback" not in err, f"stderr: {err}"
    assert out.count(f"{MODEL}: hold") >= 2, f"stdout: {out}"


# --- plausibility -----------------------------------------------------------------------------


def test_a_server_reporting_counts_its_sketch_does_not_hold_is_left_out_and_named(
    registry: Registry,
) -> None:
    now = now_after_start(registry, 200)
    for seq, seconds in enumerate((130, 70)):
        traffic(registry.store, now - timedelta(seconds=seconds), servers=3, seq=10 * seq)
        # web-9 reports its canary counts x100; its latency sketch holds what it served.
        when = now - timedelta(seconds=seconds)
        summary = MetricsSummary.model_validate_json(
            summary_to_json(
                MetricsSummary(
                    model=MODEL,
                    version=CANARY,
                    server_id="web-9",
                    seq=seq,
                    window_start=window_start(when, WINDOW),
                    window_seconds=WINDOW,
                    count=40,
                    errors=0,
                    latency=_sketch(40),
                )
            )
        ).model_copy(update={"count": 4000, "errors": 400})
        registry.store.put(summary_key(summary), summary_to_json(summary), mode=CREATE)
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert run.read is not None and len(run.read.implausible) == 2, f"read: {run.read}"
    assert "latency sketches hold 40 values for 4000 requests" in run.read.implausible[0].error
    assert run.canary_requests == 240, f"the liar's counts were merged: {run}"
    (record,) = decisions(registry)
    assert record.decision.excluded_servers == ["web-9"], record.decision.excluded_servers
    liar = next(s for s in record.decision.servers if s.server_id == "web-9")
    assert liar.excluded and liar.implausible_objects == 2 and liar.reasons, liar
    assert "left out: web-9" in record.decision.reason, record.decision.reason
    assert len(record.decision.servers) == 4, "every server has its line in the record"


def _sketch(count: int) -> Any:
    rng = random.Random(count)
    sketch = new_sketch()
    for _ in range(count):
        sketch.add(rng.lognormvariate(0.0, 0.3) * 50.0)
    return sketch


def test_a_server_whose_canary_share_contradicts_its_routing_is_left_out(
    registry: Registry,
) -> None:
    now = now_after_start(registry, 200)
    when = now - timedelta(seconds=70)
    traffic(registry.store, when, servers=3)
    for seq, (version, count) in enumerate(((ACTIVE, 200), (CANARY, 300))):
        # Plausible objects, but web-7 says it routed at 5% and served 60% to the canary.
        summary = MetricsSummary(
            model=MODEL,
            version=version,
            server_id="web-7",
            seq=seq,
            window_start=window_start(when, WINDOW),
            window_seconds=WINDOW,
            count=count,
            errors=0,
            latency=_sketch(count),
            served_ratio=0.05,
        )
        registry.store.put(summary_key(summary), summary_to_json(summary), mode=CREATE)
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert run.read is not None and run.read.left_out == 2, f"read: {run.read}"
    assert run.canary_requests == 120, f"web-7 was judged: {run}"
    (record,) = decisions(registry)
    assert record.decision.excluded_servers == ["web-7"], record.decision.servers
    line = next(s for s in record.decision.servers if s.server_id == "web-7")
    assert line.expected_share == 0.05 and "canary share 0.6" in line.reasons[0], line


def test_the_first_window_counts_no_active_requests_from_before_the_canary(
    registry: Registry,
) -> None:
    start = now_after_start(registry, 0)
    traffic(registry.store, start)  # the window holding the start
    (run,) = Promoter(registry, clock=Clock(start + timedelta(seconds=30))).run([MODEL])
    assert (run.canary_requests, run.active_requests) == (120, 0), f"{run}"
    assert run.read is not None and run.read.before_start == 3, f"{run.read}"


def test_route_bucket_errors_and_served_ratios_reach_the_judge(registry: Registry) -> None:
    now = now_after_start(registry, 200)
    when = now - timedelta(seconds=70)
    for server in range(3):
        for seq, (version, count, errors, buckets) in enumerate(
            ((ACTIVE, 380, 4, {50: 2, 80: 2}), (CANARY, 20, 3, {2: 3}))
        ):
            summary = MetricsSummary(
                model=MODEL,
                version=version,
                server_id=f"web-{server}",
                seq=seq,
                window_start=window_start(when, WINDOW),
                window_seconds=WINDOW,
                count=count,
                errors=errors,
                latency=_sketch(count - errors),
                error_latency=_sketch(errors),
                served_ratio=0.05,
                route_buckets=100,
                bucket_errors=buckets,
            )
            registry.store.put(summary_key(summary), summary_to_json(summary), mode=CREATE)
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert run.read is not None and run.read.merged == 6 and not run.read.implausible, run.read
    (record,) = decisions(registry)
    evidence = record.decision.evidence
    assert evidence is not None and evidence.bucketed and evidence.windows == 1, evidence
    # All 9 canary errors in one bucket while the canary's other buckets have none: only
    # the cap's slack (2) counts against the canary.
    assert evidence.capped_canary_errors == 2 and evidence.heaviest_canary_bucket == 2, evidence
    assert record.canary_stats.error_latency.count == 9, "failed latencies not merged apart"
    state_obj = registry.store.get(state_key(MODEL))
    assert state_obj is not None
    state = PromoterState.model_validate_json(state_obj.data)
    assert state.cursor is not None
    (tally,) = state.cursor.windows.values()
    assert tally.canary_buckets == {2: 9} and tally.ratio_requests == 1200, tally


def test_tail_thresholds_are_fixed_before_the_latencies_they_count(registry: Registry) -> None:
    now = now_after_start(registry, 200)
    clock = Clock(now)
    promoter = Promoter(registry, clock=clock)
    traffic(registry.store, now - timedelta(seconds=130))  # 1,200 active latencies
    promoter.run([MODEL])
    state = _state(registry)
    assert set(state.tail_keys) == {"p95", "p99"}, f"no thresholds: {state.tail_keys}"
    (first,) = state.windows.values()
    assert not first.tails, "the window read before the thresholds existed has tail counts"
    traffic(registry.store, now - timedelta(seconds=70), seq=4)
    promoter.run([MODEL])
    state = _state(registry)
    later = state.windows[max(state.windows)]
    canary_tail, active_tail, canary_n, active_n = later.tails["p99"]
    assert (canary_n, active_n) == (120, 1200), later.tails  # old-format objects: all requests
    assert 0 <= canary_tail < 10 and 0 < active_tail < 40, later.tails


def _state(registry: Registry) -> Any:
    obj = registry.store.get(state_key(MODEL))
    assert obj is not None
    state = PromoterState.model_validate_json(obj.data)
    assert state.cursor is not None
    return state.cursor
