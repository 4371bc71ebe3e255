"""Test backends: a fresh registry root on the local folder, moto, moto's server or SeaweedFS.

The fixtures that create them live in ``tests/conftest.py``; this module holds what test
modules import (the :class:`Backend` description, a plain boto3 client, the constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from modelshelf._stores import Store
from modelshelf._stores._local import LocalStore
from modelshelf._stores._s3 import S3Store, _botocore_session

__all__ = [
    "ACCESS_KEY",
    "ALL_BACKENDS",
    "PREFIX",
    "REGION",
    "S3_BACKENDS",
    "SECRET_KEY",
    "SMALL_PART",
    "Backend",
    "s3_client",
]

# One identity for every backend: moto accepts anything, SeaweedFS is configured with it.
ACCESS_KEY = "modelshelf-test"
SECRET_KEY = "modelshelf-test-secret"
REGION = "us-east-1"
PREFIX = "registry"

ALL_BACKENDS = ["local", "moto", "moto-server", "seaweedfs"]
S3_BACKENDS = ["moto", "moto-server", "seaweedfs"]


SMALL_PART = 5 * 1024 * 1024
"""The smallest part S3 accepts; tests use it so multipart paths run on small files."""


@dataclass
class Backend:
    """A fresh registry root on one backend.

    Attributes:
        name: The backend id (``local``, ``moto``, ``moto-server``, ``seaweedfs``).
        uri: The registry URI, ``file:///...`` or ``s3://bucket/registry``.
        store_options: Keyword arguments for ``open_store(uri, **store_options)``.
        endpoint_url: The S3 endpoint, ``None`` for local and in-process moto.
        bucket: The bucket, ``None`` for local.
        in_process: Only this process can reach it (moto's in-process mock).
    """

    name: str
    uri: str
    store_options: dict[str, Any] = field(default_factory=dict)
    endpoint_url: str | None = None
    bucket: str | None = None
    in_process: bool = False

    @property
    def is_s3(self) -> bool:
        """True for every S3 backend."""
        return self.bucket is not None

    def open(self, **options: Any) -> Store:
        """A store on this root; ``options`` go to ``S3Store`` (ignored for local)."""
        if not self.is_s3:
            return LocalStore(self.uri)
        return S3Store(self.uri, **{**self.store_options, **options})

    def s3_client(self) -> Any:
        """A plain boto3 client for looking behind the store's back."""
        if not self.is_s3:
            raise TypeError(f"backend {self.name} is not S3")
        return s3_client(self.endpoint_url)

    def env(self) -> dict[str, str]:
        """Environment for a child process (a CLI run) that should use this registry."""
        if self.in_process:
            raise TypeError("moto's in-process mock cannot be reached from another process")
        env = {"MODELSHELF_REGISTRY": self.uri}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        return env


def s3_client(endpoint_url: str | None) -> Any:
    """A plain boto3 S3 client (credentials from the test environment)."""
    # Shares botocore's parsed models with the stores: a fresh default session would parse
    # them again (moto resets boto3's default session whenever a mock starts).
    session = boto3.session.Session(botocore_session=_botocore_session(), region_name=REGION)
    return session.client("s3", endpoint_url=endpoint_url)
