"""A promoter run over a fleet-sized pile of metrics objects, against moto's S3 server.

Writes ``--servers`` x ``--windows`` metrics objects for each of the two versions (active
and canary; 1,000 x 12 x 2 = 24,000 objects by default) straight into the store, as the
serving client would flush them, in parallel threads. Then it times one promoter run (wall
time: list, GET and merge every object, judge, write the decision and the state) and an
immediate second run, counting the S3 requests each makes with a botocore event hook. The
second run should GET no metrics object at all: the cursor in ``promoter/state.json`` says
they are all merged already.

Everything runs on 127.0.0.1 (moto's ``ThreadedMotoServer``, in a child process so that it
does not compete with the promoter for this process's interpreter lock); the figures
measure the promoter's own work plus botocore's and moto's per-request costs, not a network.

Usage: ``python benchmarks/promoter_store_scale.py [--servers 1000] [--windows 12]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from modelshelf import Registry
from modelshelf._stores import CREATE
from modelshelf._stores._s3 import S3Store
from modelshelf.metrics import (
    MetricsSummary,
    new_sketch,
    summary_key,
    summary_to_json,
    window_start,
)
from modelshelf_promoter import Promoter, state_key, update_policy

MODEL = "ranker"
ACTIVE, CANARY = "1.0.0", "1.1.0"
WINDOW_SECONDS = 60


class RequestCounter:
    """Counts the S3 requests of one store, on either transport."""

    def __init__(self, store: S3Store) -> None:
        self.calls: Counter[str] = Counter()
        self.metric_gets = 0
        self._lock = threading.Lock()
        store.observe_requests(self._count)

    def _count(self, operation: str, params: Any) -> None:
        with self._lock:
            self.calls[operation] += 1
            if operation == "GetObject" and "/metrics/" in str(params.get("Key", "")):
                self.metric_gets += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.metric_gets = 0


def _write_fleet(store: S3Store, started: Any, servers: int, windows: int, workers: int) -> int:
    """Write servers x windows objects per version; returns the number written."""
    rng = random.Random(11)
    # A handful of sketches reused across objects: building 24,000 distinct ones would
    # measure the generator, not the store. The promoter merges them all the same.
    templates: dict[str, list[tuple[int, Any]]] = {}
    for version, count in ((ACTIVE, 95), (CANARY, 5)):
        templates[version] = []
        for _ in range(64):
            sketch = new_sketch()
            for _ in range(count):
                sketch.add(rng.lognormvariate(3.7, 0.4))
            templates[version].append((count, sketch))
    first = window_start(started, WINDOW_SECONDS)

    def one(index: int) -> None:
        server, window = divmod(index, windows)
        when = first + timedelta(seconds=window * WINDOW_SECONDS)
        draw = random.Random(index)  # errors drawn per object: both arms at 1%
        for offset, version in enumerate((ACTIVE, CANARY)):
            count, sketch = templates[version][(server * 7 + window) % 64]
            errors = sum(draw.random() < 0.01 for _ in range(count))
            summary = MetricsSummary(
                model=MODEL,
                version=version,
                server_id=f"web-{server:04d}",
                seq=2 * window + offset,
                window_start=when,
                window_seconds=WINDOW_SECONDS,
                count=count,
                errors=errors,
                latency=sketch,
            )
            store.put(summary_key(summary), summary_to_json(summary), mode=CREATE)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(servers * windows)))
    return 2 * servers * windows


def _serve_moto(ready: Any, stop: Any) -> None:
    """Child process: run moto's threaded server until told to stop."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ready.put(server.get_host_and_port())
    stop.wait()
    server.stop()


@contextlib.contextmanager
def moto_in_a_process() -> Iterator[str]:
    """Moto's ThreadedMotoServer on 127.0.0.1 in a child process.

    A child, so that moto's request handling does not share this process's interpreter
    lock with the promoter being measured.
    """
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    child = context.Process(target=_serve_moto, args=(ready, stop), daemon=True)
    child.start()
    try:
        host, port = ready.get(timeout=60)
        yield f"http://{host}:{port}"
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.kill()


def store_scale_run(servers: int = 1000, windows: int = 12, workers: int = 32) -> dict[str, Any]:
    """Write the fleet's metrics, then time two promoter runs; returns the figures."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    with moto_in_a_process() as endpoint:
        uri = "s3://promoter-scale/registry"
        writer = S3Store(uri, endpoint_url=endpoint, max_concurrency=workers)
        writer.client.create_bucket(Bucket="promoter-scale")
        with tempfile.TemporaryDirectory(prefix="modelshelf-bench-") as cache:
            admin = Registry(writer, cache_dir=cache, user="bench")
            for version in (ACTIVE, CANARY):
                admin.push(MODEL, {"weights": version}, version=version)
            admin.set_active(MODEL, ACTIVE)
            admin.start_canary(MODEL, CANARY, 0.05)
            update_policy(writer, MODEL, ["min_requests_per_arm=100", "min_step_seconds=3600"])
            started = admin.aliases(MODEL).canary_started_at
            assert started is not None

            began = time.monotonic()
            written = _write_fleet(writer, started, servers, windows, workers)
            write_seconds = time.monotonic() - began

            # The promoter looks just after the last window closed.
            now = window_start(started, WINDOW_SECONDS) + timedelta(
                seconds=(windows + 1) * WINDOW_SECONDS
            )
            store = S3Store(uri, endpoint_url=endpoint)
            counter = RequestCounter(store)
            clock = [now]
            promoter = Promoter(
                Registry(store, cache_dir=cache, user="promoter"), clock=lambda: clock[0]
            )

            began = time.monotonic()
            (first,) = promoter.run([MODEL])
            first_seconds = time.monotonic() - began
            first_calls, first_metric_gets = dict(counter.calls), counter.metric_gets

            counter.reset()
            clock[0] = now + timedelta(seconds=1)
            began = time.monotonic()
            (second,) = promoter.run([MODEL])
            second_seconds = time.monotonic() - began
            second_calls, second_metric_gets = dict(counter.calls), counter.metric_gets
            state_bytes = writer.head(state_key(MODEL)).size
    if first.read is None or second.read is None:
        raise RuntimeError(f"the runs did not both read metrics: {first}\n{second}")
    return {
        "objects": written,
        "write_seconds": write_seconds,
        "first_seconds": first_seconds,
        "first_fetched": first.read.fetched,
        "first_metric_gets": first_metric_gets,
        "first_calls": first_calls,
        "first_action": f"{first.action}: {first.reason}",
        "canary_requests": first.canary_requests,
        "active_requests": first.active_requests,
        "second_seconds": second_seconds,
        "second_fetched": second.read.fetched,
        "second_metric_gets": second_metric_gets,
        "second_calls": second_calls,
        "state_bytes": state_bytes,
    }


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))


def main(argv: list[str] | None = None) -> int:
    """Run the store-scale measurement and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--workers", type=int, default=32, help="threads writing the objects")
    args = parser.parse_args(argv)
    figures = store_scale_run(args.servers, args.windows, args.workers)
    print(
        f"store scale: {args.servers} servers x {args.windows} windows x 2 versions = "
        f"{figures['objects']} metrics objects on moto's HTTP server "
        f"(written in {figures['write_seconds']:.1f} s)"
    )
    print(
        f"  first run:  {figures['first_seconds']:.2f} s wall, "
        f"{figures['first_metric_gets']} metric GETs "
        f"(S3 calls: {_calls(figures['first_calls'])})"
    )
    print(
        f"              merged canary {figures['canary_requests']} / active "
        f"{figures['active_requests']} requests -> {figures['first_action']}"
    )
    print(
        f"  second run: {figures['second_seconds']:.2f} s wall, "
        f"{figures['second_metric_gets']} metric GETs (target 0) "
        f"(S3 calls: {_calls(figures['second_calls'])})"
    )
    print(f"  promoter/state.json: {figures['state_bytes'] / 1024:.0f} KiB")
    return 0 if figures["second_metric_gets"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
