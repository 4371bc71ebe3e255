"""A serving principal cannot forge a promotion: each server's volume is bounded by the fleet."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from modelshelf import CREATE, Registry
from modelshelf.metrics import MetricsSummary, new_sketch, summary_key, summary_to_json
from modelshelf.metrics import window_start as window_of
from modelshelf_promoter import Promoter, update_policy

MODEL = "fraud"
ACTIVE, CANARY = "1.0.0", "1.1.0"
WINDOW = 60
# Everything easy, so that only the evidence decides: a forged volume would promote.
EASY = (
    "min_requests_per_arm=100",
    "min_step_seconds=0",
    "steps=0.05,0.5",
    "catch_error_ratio=1000",
    "error_worse_ratio=1000",
    "latency_worse_ratio=1000",
    "beta=0.5",
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="tester")
    for version in (ACTIVE, CANARY):
        reg.push(MODEL, {"weights": version}, version=version)
    reg.set_active(MODEL, ACTIVE)
    reg.start_canary(MODEL, CANARY, 0.05)
    update_policy(reg.store, MODEL, EASY)
    return reg


def put(
    reg: Registry, version: str, server: str, seq: int, when: datetime, count: int, errors: int
) -> str:
    """One metrics object; a forged one carries a sketch of ``count`` values, as checked."""
    rng = random.Random(seq)
    sketch = new_sketch()
    if count > 10_000:
        sketch.add(40.0, count - errors)  # a forger's sketch: one weighted value
    else:
        for _ in range(count - errors):
            sketch.add(rng.lognormvariate(0.0, 0.3) * 40.0)
    error_sketch = new_sketch()
    if errors:
        error_sketch.add(45.0, errors)
    summary = MetricsSummary(
        model=MODEL,
        version=version,
        server_id=server,
        seq=seq,
        window_start=window_of(when, WINDOW),
        window_seconds=WINDOW,
        count=count,
        errors=errors,
        latency=sketch,
        error_latency=error_sketch if errors else None,
    )
    key = summary_key(summary)
    reg.store.put(key, summary_to_json(summary), mode=CREATE)
    return key


def honest_window(reg: Registry, when: datetime, seq: int, servers: int = 4) -> None:
    """A canary with half its requests failing, as the fleet saw it."""
    for i in range(servers):
        put(reg, ACTIVE, f"web-{i}", seq, when, 400, 4)
        put(reg, CANARY, f"web-{i}", seq + 1, when, 40, 20)


def test_one_forged_object_per_window_does_not_promote_a_failing_canary(
    registry: Registry,
) -> None:
    started = registry.aliases(MODEL).canary_started_at
    assert started is not None
    clock = Clock(started + timedelta(seconds=WINDOW + 30))
    forged = []
    for w in range(3):
        when = started + timedelta(seconds=WINDOW * w + 5)
        honest_window(registry, when, seq=2 * w)
        # At the routed share on both arms, with sketches to match, and errors on active's
        # side so that the canary's look few: every other check passes.
        forged.append(put(registry, CANARY, "web-evil", w, when, 10**9, 0))
        forged.append(put(registry, ACTIVE, "web-evil", 100 + w, when, 19 * 10**9, 10**9))
    clock.now = started + timedelta(seconds=WINDOW * 3 + 30)
    (run,) = Promoter(registry, clock=clock).run([MODEL])
    assert run.action not in ("promote", "advance"), f"forged volume promoted: {run}"
    assert run.action == "rollback", f"a canary failing half its requests: {run}"
    assert run.read is not None
    outliers = {o.key for o in run.read.volume_outliers}
    # (active's objects of the window holding the start never count, forged or not)
    expected = set(forged) - {forged[1]}
    assert expected <= outliers, f"forged objects not reported: {run.read.volume_outliers}"
    assert all("web-evil" in o.error for o in run.read.volume_outliers), run.read.volume_outliers
    assert run.canary_requests is not None and run.canary_requests < 10**6, (
        f"the forged requests were counted: {run.canary_requests}"
    )


def test_a_forger_writing_first_is_bounded_by_the_fleet_once_it_reports(
    registry: Registry,
) -> None:
    started = registry.aliases(MODEL).canary_started_at
    assert started is not None
    when = started + timedelta(seconds=5)
    put(registry, CANARY, "web-evil", 0, when, 10**9, 0)
    clock = Clock(started + timedelta(seconds=20))
    promoter = Promoter(registry, clock=clock)
    (first,) = promoter.run([MODEL])
    honest_window(registry, when, seq=0)
    clock.now += timedelta(seconds=10)
    (second,) = promoter.run([MODEL])
    assert (
        second.canary_requests is not None
        and second.canary_requests < 10**6
        or (first.read is not None and first.read.volume_outliers)
    ), f"a lone forged object was counted and never bounded: {first} / {second}"


def test_the_policy_ceiling_bounds_a_lone_server(registry: Registry) -> None:
    update_policy(registry.store, MODEL, ["max_server_requests_per_second=1000"])
    started = registry.aliases(MODEL).canary_started_at
    assert started is not None
    key = put(registry, CANARY, "web-evil", 0, started + timedelta(seconds=5), 10**9, 0)
    (run,) = Promoter(registry, clock=Clock(started + timedelta(seconds=30))).run([MODEL])
    assert run.read is not None and [o.key for o in run.read.volume_outliers] == [key], run.read
    assert "ceiling" in run.read.volume_outliers[0].error


def test_an_uneven_but_plausible_fleet_is_counted_whole(registry: Registry) -> None:
    started = registry.aliases(MODEL).canary_started_at
    assert started is not None
    when = started + timedelta(seconds=WINDOW + 5)  # active's whole window counts
    for i, scale in enumerate((1, 1, 2, 5)):  # the biggest server carries 5x the median
        put(registry, ACTIVE, f"web-{i}", 0, when, 300 * scale, 3 * scale)
        put(registry, CANARY, f"web-{i}", 1, when, 30 * scale, 0)
    clock = Clock(started + timedelta(seconds=2 * WINDOW + 30))
    (run,) = Promoter(registry, clock=clock).run([MODEL])
    assert run.read is not None and run.read.volume_outliers == [], run.read.volume_outliers
    assert run.canary_requests == 30 * 9 and run.active_requests == 300 * 9, f"{run}"


def test_one_honest_server_is_enough_to_bound_a_forger(registry: Registry) -> None:
    started = registry.aliases(MODEL).canary_started_at
    assert started is not None
    when = started + timedelta(seconds=WINDOW + 5)
    honest_window(registry, when, seq=0, servers=1)
    key = put(registry, CANARY, "web-evil", 0, when, 10**9, 0)
    (run,) = Promoter(registry, clock=Clock(started + timedelta(seconds=2 * WINDOW + 30))).run(
        [MODEL]
    )
    assert run.read is not None and [o.key for o in run.read.volume_outliers] == [key], run.read
    assert run.canary_requests == 40, f"only the honest server's requests count: {run}"
