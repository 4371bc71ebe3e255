"""Transfer benchmark: a local-folder registry against plain ``cp`` on the same disk.

Prints, from one run on one file (1 GiB of random bytes by default, as a joblib artifact so
that ``load`` works on it):

- push time / ``cp`` time, and / (``cp`` + ``sync``) since the registry fsyncs each commit;
- cold pull time (empty cache) / ``cp`` time, and / (``cp`` + ``sync``);
- bytes a warm ``load`` downloads after that pull (expected 0).

Targets: both ratios against ``cp`` <= 1.5, warm load 0 bytes. Exit status 1 when a target
is missed, so the script can gate a run.

    python benchmarks/transfer.py [--size-mib 1024] [--dir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import joblib
import numpy as np

from modelshelf import LocalStore, Registry

TARGET_RATIO = 1.5


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _make_source(path: Path, size_mib: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=size_mib * 1024 * 1024, dtype=np.uint8)
    joblib.dump(data, path)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _cp(src: Path, dst: Path, sync: bool) -> float:
    dst.unlink(missing_ok=True)
    command = ["cp", str(src), str(dst)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    if sync:
        subprocess.run(["sync", str(dst)], check=True)
    return time.perf_counter() - start


def _best(samples: list[float]) -> float:
    return min(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--dir", default=None, help="where to work (default: the temp dir)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement; the best is kept"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="modelshelf-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        source = work / "model.joblib"
        _make_source(source, args.size_mib)
        size = source.stat().st_size
        print(f"file: {size / 2**20:.0f} MiB in {work}")

        cp_times = [_cp(source, work / "cp-copy", sync=False) for _ in range(args.repeat)]
        cp_sync_times = [_cp(source, work / "cp-copy", sync=True) for _ in range(args.repeat)]
        (work / "cp-copy").unlink()

        push_times, pull_times, warm_bytes = [], [], []
        for i in range(args.repeat):
            root = work / f"registry-{i}"
            registry = Registry(LocalStore(root), cache_dir=work / f"cache-{i}")
            push_times.append(_timed(partial(registry.push, "bench", source, version="1.0.0")))
            registry.cache.clear()
            dest = work / f"pulled-{i}"
            pull_times.append(_timed(partial(registry.pull, "bench:1.0.0", dest)))
            before = registry.cache.bytes_downloaded
            registry.load("bench:1.0.0")
            warm_bytes.append(registry.cache.bytes_downloaded - before)
            shutil.rmtree(root)
            shutil.rmtree(dest)
            registry.cache.clear()

    cp_t, cp_sync_t = _best(cp_times), _best(cp_sync_times)
    push_t, pull_t = _best(push_times), _best(pull_times)
    rows = [
        ("cp", cp_t, None, None),
        ("cp + sync", cp_sync_t, None, None),
        ("push", push_t, push_t / cp_t, push_t / cp_sync_t),
        ("cold pull", pull_t, pull_t / cp_t, pull_t / cp_sync_t),
    ]
    print(f"{'':10} {'seconds':>8} {'MiB/s':>8} {'/ cp':>6} {'/ cp+sync':>10}")
    for label, seconds, ratio, ratio_sync in rows:
        rate = size / 2**20 / seconds
        extra = f" {ratio:6.2f} {ratio_sync:10.2f}" if ratio is not None else ""
        print(f"{label:10} {seconds:8.3f} {rate:8.0f}{extra}")
    print(f"warm load downloaded {max(warm_bytes)} bytes")

    ok = push_t / cp_t <= TARGET_RATIO and pull_t / cp_t <= TARGET_RATIO and max(warm_bytes) == 0
    print(
        f"targets (push and cold pull <= {TARGET_RATIO} x cp, warm load 0 bytes): "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
