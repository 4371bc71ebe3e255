"""The FastAPI example: /predict names the serving version, follows promotes; /healthz."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from modelshelf import Registry
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
POLL = 0.2


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serve_example", REPO / "examples" / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def iris_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder registry with two iris RandomForests, 1.0.0 active (as examples/iris.py does)."""
    root = tmp_path_factory.mktemp("iris") / "registry"
    registry = Registry(root, cache_dir=root.parent / "push-cache", user="trainer")
    data = load_iris()
    for version, seed in (("1.0.0", 0), ("1.1.0", 1)):
        model = RandomForestClassifier(n_estimators=10, random_state=seed).fit(
            data.data, data.target
        )
        registry.push(
            "iris",
            model,
            version=version,
            card={"framework": "scikit-learn", "algorithm": "RandomForestClassifier"},
        )
    registry.set_active("iris", "1.0.0", reason="first release")
    return root


def admin(root: Path) -> Registry:
    return Registry(root, cache_dir=root.parent / "admin-cache", user="ops")


def wait_for_version(get_version: Any, version: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while (seen := get_version()) != version:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still serving {seen} {timeout} s after the switch to {version}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_predict_carries_the_version_and_follows_a_promote(
    iris_registry: Path, tmp_path: Path
) -> None:
    example = load_example()
    serving = Registry(iris_registry, cache_dir=tmp_path / "cache")
    app = example.create_app(serving, "iris", poll_interval=POLL, flush_interval=3600)
    ops = admin(iris_registry)
    with TestClient(app) as client:
        answer = client.post("/predict", json=FLOWER)
        assert answer.status_code == 200, f"/predict failed: {answer.text}"
        body = answer.json()
        assert set(body) == {"prediction", "probabilities", "classes", "model_version"}, body
        assert body["model_version"] == "1.0.0" and body["prediction"] == 0, (
            f"a setosa flower served by 1.0.0 expected, got {body}"
        )
        probabilities = body["probabilities"]
        assert isinstance(probabilities, list) and len(probabilities) == 3, (
            f"the card's output schema makes probabilities an array, one per class: {body}"
        )
        assert body["classes"] == [0, 1, 2], f"classes name the array's order: {body}"
        assert abs(sum(probabilities) - 1.0) < 1e-9, "probabilities sum to 1"
        assert body["classes"][probabilities.index(max(probabilities))] == body["prediction"]

        health = client.get("/healthz").json()
        assert (health["generation"], health["active"], health["ready"]) == (1, "1.0.0", True), (
            f"/healthz must show the generation and versions served: {health}"
        )
        bad = client.post("/predict", json={**FLOWER, "petal_width": "wide"})
        assert bad.status_code == 422, "a non-numeric feature must be refused by the model"

        ops.start_canary("iris", "1.1.0", 0.5, reason="try")
        wait_for_version(lambda: client.get("/healthz").json()["canary"], "1.1.0")

        def version_for(key: str) -> str:
            reply = client.post("/predict", json=FLOWER, headers={"X-Request-Key": key})
            return str(reply.json()["model_version"])

        arms = {f"user-{i}": version_for(f"user-{i}") for i in range(40)}
        assert set(arms.values()) == {"1.0.0", "1.1.0"}, f"a 50% canary must serve both: {arms}"
        assert all(version_for(k) == v for k, v in list(arms.items())[:10]), (
            "X-Request-Key must keep a caller on the same version"
        )

        ops.promote("iris", reason="healthy")
        wait_for_version(lambda: client.get("/healthz").json()["active"], "1.1.0")
        versions = {version_for(f"user-{i}") for i in range(40)}
        assert versions == {"1.1.0"}, f"after the promote every answer must say 1.1.0: {versions}"
        assert client.get("/healthz").json()["generation"] == 3, "healthz generation is stale"


@contextlib.contextmanager
def uvicorn_process(root: Path, workdir: Path, server_id: str) -> Iterator[tuple[str, Path]]:
    """``uvicorn examples.serve:app`` as a real process; yields its URL and its stderr file."""
    port = free_port()
    env = {
        **os.environ,
        "MODELSHELF_REGISTRY": str(root),
        "MODELSHELF_CACHE": str(workdir / f"{server_id}-cache"),
        "MODELSHELF_POLL_INTERVAL": str(POLL),
        "MODELSHELF_SERVER_ID": server_id,
    }
    out_path, err_path = workdir / f"{server_id}.out", workdir / f"{server_id}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.serve:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"uvicorn exited with {proc.returncode}: {err_path.read_text()}"
                    )
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not answer /healthz within 30 s")
                time.sleep(0.1)
            yield url, err_path
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def uvicorn_server(iris_registry: Path, tmp_path: Path) -> Iterator[str]:
    with uvicorn_process(iris_registry, tmp_path, "uvicorn-test") as (url, _):
        yield url


def test_a_real_uvicorn_process_serves_and_follows_aliases(
    uvicorn_server: str, iris_registry: Path
) -> None:
    ops = admin(iris_registry)
    current = ops.aliases("iris").active
    target = "1.0.0" if current == "1.1.0" else "1.1.0"

    def served() -> str:
        reply = httpx.post(f"{uvicorn_server}/predict", json=FLOWER, timeout=5)
        assert reply.status_code == 200, f"/predict over HTTP failed: {reply.text}"
        return str(reply.json()["model_version"])

    assert served() == current, "the process must serve the active version it started with"
    ops.set_active("iris", target, reason="blue-green flip")
    waited = wait_for_version(served, target)
    assert waited < 5, f"the flip took {waited:.1f} s to reach a process polling every {POLL} s"
    assert httpx.get(f"{uvicorn_server}/healthz").json()["active"] == target, "healthz is stale"


LOAD_SECONDS = 30.0
CONNECTIONS = 4
WARNING_LINE = re.compile(r"warning|traceback|error", re.IGNORECASE)


def _load(url: str, stop: threading.Event, results: list[tuple[int, str]], seed: int) -> None:
    """One keep-alive connection sending predictions back to back until ``stop``."""
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                reply = client.post(
                    "/predict", json=FLOWER, headers={"X-Request-Key": f"user-{seed}-{i % 97}"}
                )
                results.append((reply.status_code, reply.text[:200]))
            except httpx.HTTPError as exc:
                results.append((0, f"{type(exc).__name__}: {exc}"))


def test_servers_stay_quiet_and_lose_no_request_under_concurrent_load_and_alias_changes(
    iris_registry: Path, tmp_path: Path, report_figure: Any
) -> None:
    """Two uvicorn servers, four connections each, for 30 s, through alias changes.

    Every request must succeed, every server must follow each change, and the servers'
    stderr must hold no warning: scikit-learn's parallel helpers are not thread-safe about
    the process-wide warning filters, which flooded stderr under concurrent requests.
    """
    ops = admin(iris_registry)
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(uvicorn_process(iris_registry, tmp_path, f"load-{i}"))
            for i in range(2)
        ]
        stop = threading.Event()
        results: list[tuple[int, str]] = []
        threads = [
            threading.Thread(target=_load, args=(url, stop, results, n * 10 + c), daemon=True)
            for n, (url, _) in enumerate(servers)
            for c in range(CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        changes = [
            lambda: ops.start_canary("iris", "1.1.0", 0.05, reason="load: canary"),
            lambda: ops.set_ratio("iris", 0.5, reason="load: half"),
            lambda: ops.promote("iris", reason="load: promote"),
            lambda: ops.rollback("iris", reason="load: rollback"),
            lambda: ops.set_active("iris", "1.1.0", reason="load: flip"),
            lambda: ops.set_active("iris", "1.0.0", reason="load: flip back"),
        ]
        lags: list[float] = []
        began = time.monotonic()
        try:
            step = 0
            while time.monotonic() - began < LOAD_SECONDS:
                state = changes[step % len(changes)]()
                step += 1
                for url, _ in servers:
                    lags.append(
                        wait_for_version(
                            lambda url=url: httpx.get(f"{url}/healthz", timeout=5).json()[
                                "generation"
                            ],
                            state.generation,
                        )
                    )
                time.sleep(2.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        stderr = {url: err.read_text(errors="replace") for url, err in servers}
    failed = [r for r in results if r[0] != 200]
    assert len(results) > 100, f"the load generator sent only {len(results)} requests"
    assert not failed, f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:3]}"
    assert step >= 10, f"only {step} alias changes in {LOAD_SECONDS} s"
    for url, text in stderr.items():
        noisy = [line for line in text.splitlines() if WARNING_LINE.search(line)]
        assert not noisy, (
            f"{url} wrote {len(noisy)} warning lines to stderr under {CONNECTIONS} concurrent "
            f"connections, e.g. {noisy[:2]}"
        )
    assert max(lags) < 5, f"a server took {max(lags):.1f} s to follow an alias change"
    report_figure(
        f"serve example: 2 servers x {CONNECTIONS} connections for {LOAD_SECONDS:.0f} s, "
        f"{len(results)} requests, 0 failed, {step} alias changes, slowest follow "
        f"{max(lags):.2f} s, 0 warning lines"
    )
