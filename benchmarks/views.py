"""The report and the UI on a large registry: generation time, size, page latency.

Builds, in a temporary local-folder registry (through the real API):

- ``--versions`` versions (50) with full cards;
- alias changes until the history holds ``--history`` records (500): canaries started,
  stepped, promoted or aborted, blue-green flips;
- a last canary with ``--hours`` (2) of per-minute metrics from ``--servers`` (4) serving
  processes per arm, judged by the real promoter every 5 minutes of it.

Then it times, in this process:

- ``build_report`` twice (the first includes starting the chart engine, about 0.5 s), and
  prints the report's size; targets: under 5 s and under 3 MB;
- every UI page over HTTP (uvicorn on 127.0.0.1, one keep-alive client): the first answer
  and the median and worst of ``--repeat`` more; target: under 300 ms.

Usage: ``python benchmarks/views.py [--versions 50] [--history 500] [--hours 2] [--servers 4]``
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from modelshelf import Registry
from modelshelf._views._app import create_app
from modelshelf._views._report import build_report
from modelshelf.metrics import MetricsSummary, new_sketch, summary_key, summary_to_json
from modelshelf_promoter import Promoter, update_policy

MODEL = "ranker"


def _card(i: int, rng: random.Random) -> dict[str, object]:
    return {
        "description": f"weekly retrain {i}: gradient boosting on clicks and dwell time",
        "author": "ranking team",
        "framework": "lightgbm 4.3",
        "algorithm": "gradient boosted trees",
        "hyperparameters": {
            "num_leaves": 31 + i % 7,
            "learning_rate": round(0.05 + 0.001 * i, 4),
            "n_estimators": 500 + 10 * i,
            "min_child_samples": 20,
            "feature_fraction": 0.8,
        },
        "training_data": {
            "source": f"s3://warehouse/clicks/2026-{1 + i // 5:02d}",
            "samples": 1_000_000 + 5_000 * i,
            "date_collected": f"2026-{1 + i // 5:02d}-01",
        },
        "performance": {
            "accuracy": round(0.80 + rng.random() * 0.05, 4),
            "precision": round(0.70 + rng.random() * 0.1, 4),
            "recall": round(0.60 + rng.random() * 0.1, 4),
            "f1_score": round(0.65 + rng.random() * 0.1, 4),
            "latency_ms": round(3 + rng.random(), 3),
            "ndcg_at_10": round(0.4 + rng.random() * 0.05, 4),
        },
        "input_schema": {"features": [f"f{j}" for j in range(40)]},
        "output_schema": {"type": "number"},
        "limitations": ["trained on logged-in traffic only"],
    }


def _plus(start: datetime, minutes: int) -> datetime:
    """The simulated clock of one promoter run, ``minutes`` after ``start``."""
    return start + timedelta(minutes=minutes)


def build(
    root: Path, versions: int, history: int, hours: float, servers: int, uri: str | None = None
) -> Registry:
    rng = random.Random(15)
    reg = Registry(uri or root / "reg", cache_dir=root / "cache", user="bench@host")
    names = []
    for i in range(versions):
        names.append(reg.push(MODEL, {"w": i}, card=_card(i, rng), version=f"1.{i}.0").version)
    reg.set_active(MODEL, names[0], reason="first release")
    n = 1
    i = 0
    # Leave room for the last canary: its start and the promoter's steps.
    while n < history - 4:
        current = reg.aliases(MODEL).active
        candidate = names[(names.index(current or names[0]) + 1 + i % 3) % len(names)]
        i += 1
        if candidate == current:
            continue
        reg.start_canary(MODEL, candidate, 0.05, reason=f"canary of {candidate}")
        n += 1
        for ratio in (0.25, 0.5):
            if n >= history - 5:
                break
            reg.set_ratio(MODEL, ratio, reason="step")
            n += 1
        if n >= history - 5:
            reg.abort_canary(MODEL, reason="make room")
        elif i % 4 == 0:
            reg.abort_canary(MODEL, reason="p99 regression seen by hand")
        else:
            reg.promote(MODEL, reason="healthy")
        n += 1
    active = reg.aliases(MODEL).active
    canary = names[-1] if names[-1] != active else names[-2]
    reg.start_canary(MODEL, canary, 0.05, reason="the canary under watch")
    started = reg.aliases(MODEL).canary_started_at
    assert started is not None and active is not None
    minutes = int(hours * 60)
    epoch = started.replace(second=0, microsecond=0)
    for minute in range(minutes):
        window = epoch + timedelta(minutes=minute)
        for version in (active, canary):
            for s in range(servers):
                sketch = new_sketch()
                count = 200
                for _ in range(count):
                    sketch.add(rng.lognormvariate(2.3, 0.35))
                summary = MetricsSummary(
                    model=MODEL,
                    version=version,
                    server_id=f"web-{s}",
                    seq=minute,
                    window_start=window,
                    window_seconds=60,
                    count=count,
                    errors=sum(rng.random() < 0.01 for _ in range(count)),
                    latency=sketch,
                )
                reg.store.put(summary_key(summary), summary_to_json(summary))
    logging.getLogger("modelshelf.promoter").addHandler(logging.NullHandler())
    logging.getLogger("modelshelf.promoter").propagate = False
    # The promoter runs on a simulated clock while alias changes carry the real time, so a
    # step would look old at once: a day-long step keeps the canary under watch (it holds).
    update_policy(reg.store, MODEL, ["min_step_seconds=86400", "max_canary_seconds=172800"])
    for minute in range(5, minutes + 1, 5):
        Promoter(reg, clock=functools.partial(_plus, started, minute)).run([MODEL])
    return reg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    python = platform.python_version()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {python}")
    with tempfile.TemporaryDirectory(prefix="modelshelf-views-") as tmp:
        began = time.perf_counter()
        reg = build(Path(tmp), args.versions, args.history, args.hours, args.servers)
        records = reg.history(MODEL)
        started = reg.aliases(MODEL).canary_started_at
        assert started is not None
        end = started + timedelta(hours=args.hours)
        decisions = sum(1 for _ in reg.store.list(f"{MODEL}/promoter/decisions/"))
        metrics = sum(1 for _ in reg.store.list(f"{MODEL}/metrics/"))
        print(
            f"registry: {len(reg.versions(MODEL))} versions, {len(records)} history records, "
            f"{metrics} metric objects ({args.hours:g} h x {args.servers} servers x 2 arms), "
            f"{decisions} promoter decisions; built in {time.perf_counter() - began:.1f} s"
        )

        times = []
        cpu = []
        html = ""
        for _ in range(2):
            t, c = time.perf_counter(), time.process_time()
            html = build_report(reg, MODEL, now=end)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        size = len(html.encode())
        print(
            f"report: first {times[0]:.2f} s (engine start included), then {times[1]:.2f} s; "
            f"CPU {cpu[0]:.2f} s / {cpu[1]:.2f} s; {size / 1e6:.2f} MB  [targets < 5 s, < 3 MB: "
            f"{'met' if max(times) < 5 and size < 3e6 else 'NOT met'}]"
        )
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        _ui(reg, end, args.repeat)


def _ui(reg: Registry, end: datetime, repeat: int) -> None:
    port = _free_port()

    def judge(reader: Registry, name: str) -> dict[str, object]:
        # What modelshelf ui passes: the promoter's dry run, on the app's read-cached registry.
        run = Promoter(reader, clock=lambda: end).run_model(name, dry_run=True)
        assert run.decision is not None, run.reason
        return run.decision.model_dump(mode="json")

    app = create_app(reg, clock=lambda: end, judge=judge)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    versions = reg.versions(MODEL)
    pages = [
        "/",
        f"/models/{MODEL}",
        f"/models/{MODEL}/compare",
        f"/models/{MODEL}/compare?diff_only=1&last=10",
        f"/models/{MODEL}/versions/{versions[-1]}",
        f"/models/{MODEL}/timeline",
        f"/models/{MODEL}/canary",
        f"/models/{MODEL}/canary/panel",
        f"/api/models/{MODEL}/aliases",
        f"/models/{MODEL}/actions/promote",
    ]
    worst_all = 0.0
    print(
        f"UI pages over HTTP, first answer / median / worst of {repeat} more (ms), and the "
        "median CPU ms of client and server (both in this process):"
    )
    with httpx.Client(base_url=base, timeout=30) as client:
        for path in pages:
            samples = []
            cpu = []
            size = 0
            for _ in range(repeat + 1):
                t, c = time.perf_counter(), time.process_time()
                response = client.get(path)
                samples.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                response.raise_for_status()
                size = len(response.content)
            first, rest = samples[0], samples[1:]
            worst_all = max(worst_all, max(rest))
            print(
                f"  {path:<44} {first:7.1f} / {statistics.median(rest):6.1f} / "
                f"{max(rest):6.1f}   CPU median {statistics.median(cpu[1:]):6.1f}"
                f"   {size / 1024:7.1f} KiB"
            )
    print(
        f"UI: worst repeated answer {worst_all:.0f} ms  [target < 300 ms: "
        f"{'met' if worst_all < 300 else 'NOT met'}]"
    )
    server.should_exit = True
    thread.join(10)


if __name__ == "__main__":
    main()
