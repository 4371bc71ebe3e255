"""Real processes and threads racing for the same keys: exactly one create wins."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from modelshelf._errors import (
    PreconditionFailedError,
)
from modelshelf._stores._local import LocalStore

# -- races --------------------------------------------------------------------------------

_RACER = textwrap.dedent(
    """
    import sys
    from modelshelf._errors import PreconditionFailedError
    from modelshelf._stores._local import LocalStore

    store = LocalStore(sys.argv[1])
    me, rounds = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(rounds):
        try:
            store.put(f"race/{n}", me.encode())
            print("won", n, flush=True)
        except PreconditionFailedError:
            print("lost", n, flush=True)
    """
)


def test_local_create_race_between_processes(tmp_path: Path) -> None:
    root, writers, rounds = tmp_path / "registry", 8, 10
    LocalStore(root)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(root), f"writer-{w}", str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
            "a racing process failed to start"
        )
    for proc in procs:  # release them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = {}
    for w, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"writer-{w} crashed"
        outputs[f"writer-{w}"] = out.split("\n")
    store = LocalStore(root)
    for n in range(rounds):
        winners = [w for w, lines in outputs.items() if f"won {n}" in lines]
        losers = [w for w, lines in outputs.items() if f"lost {n}" in lines]
        assert len(winners) == 1, f"round {n}: {len(winners)} writers won a create race"
        assert len(losers) == writers - 1, f"round {n}: a writer neither won nor lost"
        got = store.get(f"race/{n}")
        assert got is not None and got.data == winners[0].encode(), (
            f"round {n}: the stored bytes are not the winner's"
        )


@pytest.mark.parametrize("name", ["local", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_create_race_between_threads(make_backend: Any, name: str) -> None:
    # Not on moto: its check-then-write for If-None-Match is not atomic under threads.
    store = make_backend(name).open()
    barrier = threading.Barrier(4)

    def racer(n: int) -> bool:
        barrier.wait()
        try:
            store.put("race", f"writer-{n}".encode())
            return True
        except PreconditionFailedError:
            return False

    with cf.ThreadPoolExecutor(4) as pool:
        won = list(pool.map(racer, range(4)))
    assert won.count(True) == 1, f"{won.count(True)} of 4 racing creates won"
    got = store.get("race")
    assert got is not None and got.data == f"writer-{won.index(True)}".encode(), (
        "the stored bytes are not the winner's"
    )
