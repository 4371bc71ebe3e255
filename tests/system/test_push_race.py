"""Racing pushes from real processes (spawned, so nothing is shared but the store)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry, VersionExistsError

WORKERS = 8
TIMEOUT = 120


def _bump_worker(
    uri: str, options: dict[str, Any], cache: str, source: str, barrier: Any, results: Any
) -> None:
    try:
        registry = Registry(uri, cache_dir=cache, **options)
        barrier.wait(timeout=TIMEOUT)
        pushed = registry.push("racer", source, bump="minor")
        results.put(("ok", pushed.version))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((type(exc).__name__, str(exc)))


def _explicit_worker(
    uri: str,
    options: dict[str, Any],
    cache: str,
    source: str,
    versions: list[str],
    barrier: Any,
    results: Any,
) -> None:
    registry = Registry(uri, cache_dir=cache, **options)
    for version in versions:
        try:
            barrier.wait(timeout=TIMEOUT)
            pushed = registry.push("duel", source, version=version)
            results.put((version, "ok", pushed.files[0].sha256))
        except VersionExistsError as exc:
            results.put((version, "VersionExistsError", str(exc)))
        except Exception as exc:
            results.put((version, type(exc).__name__, str(exc)))


def _run(ctx: Any, procs: list[Any], results: Any, expected: int) -> list[Any]:
    for proc in procs:
        proc.start()
    got = [results.get(timeout=TIMEOUT) for _ in range(expected)]
    for proc in procs:
        proc.join(timeout=TIMEOUT)
        assert proc.exitcode == 0, f"a pushing process died with exit code {proc.exitcode}"
    return got


@pytest.fixture(params=["local", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def shared(request: pytest.FixtureRequest, make_backend: Any) -> Any:
    """A registry that separate processes can reach.

    Not moto's server: its conditional puts are not atomic between request threads, so a
    race there would test moto rather than modelshelf. SeaweedFS is a real engine.
    """
    return make_backend(request.param)


def test_eight_processes_bumping_at_once_all_get_distinct_versions(
    shared: Any, tmp_path: Path
) -> None:
    # The same bytes from every process: a bump must still make a new version for each.
    source = tmp_path / "model.bin"
    source.write_bytes(b"identical model" * 1000)
    registry = Registry(shared.uri, cache_dir=tmp_path / "check", **shared.store_options)
    registry.push("racer", source, version="1.0.0")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(
            target=_bump_worker,
            args=(
                shared.uri,
                shared.store_options,
                str(tmp_path / f"c{i}"),
                str(source),
                barrier,
                results,
            ),
        )
        for i in range(WORKERS)
    ]
    got = _run(ctx, procs, results, WORKERS)
    failures = [r for r in got if r[0] != "ok"]
    assert not failures, f"racing bumps must all succeed: {failures}"
    versions = sorted((r[1] for r in got), key=lambda v: tuple(map(int, v.split("."))))
    expected = [f"1.{i}.0" for i in range(1, WORKERS + 1)]
    assert versions == expected, f"versions handed out twice or skipped: {got}"
    assert registry.versions("racer") == ["1.0.0", *expected], "versions lost or skipped"
    for version in versions:
        assert registry.verify(f"racer:{version}").version == version, "a version is not whole"


def test_two_processes_racing_for_one_version_one_wins_one_is_told(
    shared: Any, tmp_path: Path
) -> None:
    rounds = ["1.0.0", "1.1.0", "2.0.0"]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = []
    for i in range(2):
        source = tmp_path / f"model-{i}.bin"
        source.write_bytes(f"model from process {i}".encode() * 1000)
        procs.append(
            ctx.Process(
                target=_explicit_worker,
                args=(
                    shared.uri,
                    shared.store_options,
                    str(tmp_path / f"c{i}"),
                    str(source),
                    rounds,
                    barrier,
                    results,
                ),
            )
        )
    got = _run(ctx, procs, results, 2 * len(rounds))
    registry = Registry(shared.uri, cache_dir=tmp_path / "check", **shared.store_options)
    for version in rounds:
        outcomes = sorted(r[1] for r in got if r[0] == version)
        assert outcomes == ["VersionExistsError", "ok"], (
            f"{version}: exactly one push must win and the other get VersionExistsError: {got}"
        )
        winner = next(r[2] for r in got if r[0] == version and r[1] == "ok")
        stored = registry.get(f"duel:{version}").files[0].sha256
        assert stored == winner, f"{version}: the stored version is not the winner's content"
    assert registry.versions("duel") == rounds, "the race left extra or missing versions"
