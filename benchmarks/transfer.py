"""Transfer benchmark: a local-folder registry against plain ``cp`` on the same disk.

Prints, from one run on one file (1 GiB of random bytes by default, as a joblib artifact so
that ``load`` works on it):

- push time / ``cp`` time, and / (``cp`` + ``sync``) since the registry fsyncs each commit
  (a push into a store with ``fsync=False`` is shown too: the price of durability);
- cold pull time (empty cache) / ``cp`` time, and / (``cp`` + ``sync``);
- bytes a second (warm) ``load`` downloads (expected 0).

Targets: both ratios against ``cp`` <= 1.5, warm load 0 bytes. Exit status 1 when a target
is missed, so the script can gate a run.

    python benchmarks/transfer.py [--size-mib 1024] [--dir DIR] [--repeat 3]

Every figure is the best of the rounds (each step starts after a ``sync``), which filters
out noise from other work on the machine. A content-addressed push or a verified pull must
hash every byte once: where sha256 is slower than the disk (``cp`` of a cached file runs at
memory speed), that single pass is the floor for both ratios.
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
from modelshelf._hashing import sha256_file

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
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    if sync:
        subprocess.run(["sync", str(dst)], check=True)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def _round(work: Path, source: Path, i: int) -> dict[str, float]:
    """One measurement of everything, each step starting with no dirty pages."""
    times: dict[str, float] = {}
    os.sync()
    times["cp"] = _cp(source, work / "cp-copy", sync=False)
    os.sync()
    times["cp + sync"] = _cp(source, work / "cp-copy", sync=True)
    # The floor of a content-addressed push or a verified pull: one sha256 pass.
    times["sha256 alone"] = _timed(partial(sha256_file, source))

    cache = work / f"cache-{i}"
    registry = Registry(LocalStore(work / f"registry-{i}"), cache_dir=cache)
    os.sync()
    times["push"] = _timed(partial(registry.push, "bench", source, version="1.0.0"))
    unsynced = Registry(LocalStore(work / f"unsynced-{i}", fsync=False), cache_dir=cache)
    os.sync()
    times["push, no fsync"] = _timed(partial(unsynced.push, "bench", source, version="1.0.0"))

    registry.cache.clear()
    os.sync()
    times["cold pull"] = _timed(partial(registry.pull, "bench:1.0.0", work / f"pulled-{i}"))
    registry.load("bench:1.0.0")  # the first load fills the cache (a pull does not)
    before = registry.cache.bytes_downloaded
    registry.load("bench:1.0.0")
    times["warm load bytes"] = registry.cache.bytes_downloaded - before
    for leftover in (f"registry-{i}", f"unsynced-{i}", f"pulled-{i}", f"cache-{i}"):
        shutil.rmtree(work / leftover)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--dir", default=None, help="where to work (default: the temp dir)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; each figure is the best round's"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="modelshelf-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        source = work / "model.joblib"
        _make_source(source, args.size_mib)
        size = source.stat().st_size
        print(f"file: {size / 2**20:.0f} MiB in {work}, best of {args.repeat} rounds")
        rounds = [_round(work, source, i) for i in range(args.repeat)]

    best = {name: min(r[name] for r in rounds) for name in rounds[0]}
    cp_t, cp_sync_t = best["cp"], best["cp + sync"]
    print(f"{'':15} {'seconds':>8} {'MiB/s':>7} {'/ cp':>6} {'/ cp+sync':>10}")
    for label in ("cp", "cp + sync", "sha256 alone", "push", "push, no fsync", "cold pull"):
        seconds = best[label]
        rate = size / 2**20 / seconds
        line = f"{label:15} {seconds:8.3f} {rate:7.0f}"
        if label not in ("cp", "cp + sync"):
            line += f" {seconds / cp_t:6.2f} {seconds / cp_sync_t:10.2f}"
        print(line)
    warm = int(max(r["warm load bytes"] for r in rounds))
    print(f"warm load downloaded {warm} bytes")

    push_ratio, pull_ratio = best["push"] / cp_t, best["cold pull"] / cp_t
    ok = push_ratio <= TARGET_RATIO and pull_ratio <= TARGET_RATIO and warm == 0
    print(
        f"targets (push and cold pull <= {TARGET_RATIO} x cp, warm load 0 bytes): "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
