"""Crash safety: pushes killed with SIGKILL at random points never leave a partial version."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelshelf import Registry
from tests.support.blobs import blob_keys, make_source, referenced_keys

PUSH_SCRIPT = """
import sys
from modelshelf import Registry
registry = Registry(sys.argv[1], cache_dir=sys.argv[2])
print("start", flush=True)
registry.push("crashy", sys.argv[3], version=sys.argv[4])
print("done", flush=True)
"""


def test_pushes_killed_at_random_points_never_leave_a_partial_version(
    tmp_path: Path, report_figure: Any
) -> None:
    reg_uri = str(tmp_path / "reg")
    registry = Registry(reg_uri, cache_dir=tmp_path / "cache")
    rng = random.Random(20)
    runs, killed, committed_before_kill = 20, 0, 0
    sources = []
    verified: set[str] = set()  # immutable once whole; re-checked all together at the end
    start = time.perf_counter()
    # Calibrate: how long one whole push takes on this machine, so the kills land inside it.
    calibration = make_source(tmp_path, 999)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PUSH_SCRIPT,
            reg_uri,
            str(tmp_path / "c"),
            str(calibration),
            "0.0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    began = time.perf_counter()
    assert proc.stdout.readline().strip() == "done", "the calibration push failed"
    push_seconds = time.perf_counter() - began
    proc.wait()
    for run in range(runs):
        src = make_source(tmp_path, run)
        version = f"1.0.{run}"
        sources.append((src, version))
        proc = subprocess.Popen(
            [sys.executable, "-c", PUSH_SCRIPT, reg_uri, str(tmp_path / "c"), str(src), version],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "start"
        # up to 1.5 pushes long: most kills land mid-push, some after the commit
        time.sleep(rng.uniform(0.0, 1.5 * push_seconds))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed += proc.returncode == -signal.SIGKILL
        visible = registry.versions("crashy")
        committed_before_kill += version in visible
        for seen in set(visible) - verified:
            # verify re-hashes every blob from the store: a partial version would fail here
            registry.verify(f"crashy:{seen}")
            verified.add(seen)

    for seen in registry.versions("crashy"):  # no later crash damaged an earlier version
        registry.verify(f"crashy:{seen}")
    # every unreferenced blob is an orphan that gc reports (grace 0: nothing is in flight)
    orphans = blob_keys(registry, "crashy") - referenced_keys(registry, "crashy")
    plan = registry.gc("crashy", keep_last=1000, orphan_grace=timedelta(0))
    assert set(plan.orphan_blobs) == orphans, "gc must find exactly the orphan blobs"
    report_figure(
        f"crash runs: {runs}, killed before exiting: {killed}, version visible after the kill: "
        f"{committed_before_kill}, orphan blobs found by gc: {len(orphans)} "
        f"(one whole push: {push_seconds:.2f}s; test {time.perf_counter() - start:.1f}s)"
    )
    assert killed >= runs // 4, f"only {killed} of {runs} pushes were killed before finishing"

    for src, version in sources:  # the same push retried succeeds
        manifest = registry.push("crashy", src, version=version)
        assert manifest.version == version
        registry.verify(f"crashy:{version}")
    assert registry.versions("crashy") == ["0.0.1"] + [f"1.0.{i}" for i in range(runs)]
    assert blob_keys(registry, "crashy") == referenced_keys(registry, "crashy"), (
        "after the retries every blob is referenced again"
    )
