"""The FastAPI example: /predict names the serving version, follows promotes; /healthz."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
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
        assert set(body) == {"prediction", "probabilities", "model_version"}, body
        assert body["model_version"] == "1.0.0" and body["prediction"] == 0, (
            f"a setosa flower served by 1.0.0 expected, got {body}"
        )
        assert set(body["probabilities"]) == {"0", "1", "2"}, "one probability per class"
        assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-9, "probabilities sum to 1"

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


@pytest.fixture
def uvicorn_server(iris_registry: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "MODELSHELF_REGISTRY": str(iris_registry),
        "MODELSHELF_CACHE": str(tmp_path / "uvicorn-cache"),
        "MODELSHELF_POLL_INTERVAL": str(POLL),
        "MODELSHELF_SERVER_ID": "uvicorn-test",
    }
    log = (tmp_path / "uvicorn.log").open("wb")
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
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                output = (tmp_path / "uvicorn.log").read_text()
                raise AssertionError(f"uvicorn exited with {proc.returncode}: {output}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("uvicorn did not answer /healthz within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
