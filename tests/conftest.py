"""Shared fixtures: isolated AWS settings, S3 servers, and one store per backend.

Backends, as pytest ids:

- ``local``: a folder (``file://`` URI);
- ``moto``: moto's in-process mock (``moto.mock_aws``); reachable from this process only;
- ``moto-server``: moto's threaded server over HTTP on 127.0.0.1;
- ``seaweedfs``: a real SeaweedFS (``weed mini``) on 127.0.0.1; marked ``seaweedfs``.

Other test files get a registry on each backend through the ``backend`` fixture::

    def test_push(backend):
        store = open_store(backend.uri, **backend.store_options)

``backend.uri`` is a fresh, empty registry root (a new bucket per test on S3).
``backend.store_options`` holds what :func:`modelshelf._stores._uri.open_store` needs beyond the URI
(the endpoint); credentials and region come from the environment set up here, so child
processes (``modelshelf`` CLI runs) reach the same servers, except for ``moto``, which lives
in this process only (``backend.in_process``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelshelf._stores import Store
from tests.support.backends import (
    ACCESS_KEY,
    ALL_BACKENDS,
    PREFIX,
    REGION,
    S3_BACKENDS,
    SECRET_KEY,
    SMALL_PART,
    Backend,
    s3_client,
)
from tests.support.servers import SeaweedFS, seaweedfs_server
from tests.support.servers import moto_server as run_moto_server


def _params(names: list[str]) -> list[Any]:
    return [
        pytest.param(name, id=name, marks=pytest.mark.seaweedfs if name == "seaweedfs" else ())
        for name in names
    ]


@pytest.fixture(scope="session", autouse=True)
def _aws_test_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials, no profiles, no instance metadata: nothing can reach real AWS."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("AWS_", "MODELSHELF_")):
                mp.delenv(name)
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", str(empty))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        # gc waits this long between condemning and deleting (60 s by default); tests that
        # need another grace pass one.
        mp.setenv("MODELSHELF_GC_GRACE", "0.05")
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of one moto server shared by the session."""
    with run_moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session, started on first use (about a second)."""
    with seaweedfs_server(
        tmp_path_factory.mktemp("seaweedfs"), access_key=ACCESS_KEY, secret_key=SECRET_KEY
    ) as server:
        yield server


def _new_bucket(endpoint_url: str | None) -> str:
    bucket = f"ms-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint_url).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory: ``make_backend("moto-server")`` gives a fresh :class:`Backend`."""
    cleanups: list[Any] = []

    def make(name: str) -> Backend:
        if name == "local":
            root = tmp_path / f"registry-{uuid.uuid4().hex[:8]}"
            return Backend(name=name, uri=root.as_uri())
        if name == "moto":
            from moto import mock_aws

            # Keep moto's in-memory state between tests (each test has its own bucket):
            # rebuilding its backends on every start costs a few hundred milliseconds.
            mock = mock_aws()
            mock.start(reset=False)
            cleanups.append(lambda: mock.stop(remove_data=False))
            bucket = _new_bucket(None)
            return Backend(
                name=name,
                uri=f"s3://{bucket}/{PREFIX}",
                store_options={"region": REGION},
                bucket=bucket,
                in_process=True,
            )
        if name == "moto-server":
            url = request.getfixturevalue("moto_server")
        elif name == "seaweedfs":
            url = request.getfixturevalue("seaweedfs").endpoint_url
        else:
            raise ValueError(f"unknown backend {name!r}")
        bucket = _new_bucket(url)
        if name == "seaweedfs":
            # Each bucket is a collection with its own volume: give the slot back. SeaweedFS
            # deletes non-empty buckets (-s3.allowDeleteBucketNotEmpty, on by default).
            cleanups.append(lambda: s3_client(url).delete_bucket(Bucket=bucket))
        return Backend(
            name=name,
            uri=f"s3://{bucket}/{PREFIX}",
            store_options={"endpoint_url": url},
            endpoint_url=url,
            bucket=bucket,
        )

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture(params=_params(ALL_BACKENDS))
def backend(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """A fresh registry root on each backend in turn."""
    result: Backend = make_backend(request.param)
    return result


@pytest.fixture(params=_params(S3_BACKENDS))
def s3_backend(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """A fresh registry root on each S3 backend in turn."""
    result: Backend = make_backend(request.param)
    return result


@pytest.fixture
def store(backend: Backend) -> Store:
    """A fresh, empty store on each backend, with 5 MiB parts on S3."""
    return backend.open(part_size=SMALL_PART, retry_delay=0.05)


_FIGURES: list[str] = []


@pytest.fixture
def report_figure() -> Any:
    """Record a measured figure; all of them are printed at the end of the test run."""
    return _FIGURES.append


SYSTEM_TESTS = Path(__file__).parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Crash, race, fault, infra and end-to-end tests: the full lane only.
    for item in items:
        if SYSTEM_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("modelshelf figures (fault injection, crash safety)")
        for line in _FIGURES:
            terminalreporter.write_line(line)
