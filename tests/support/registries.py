"""Registries with the five iris versions the alias tests change between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelshelf import Registry

__all__ = ["VERSIONS", "backend_registry", "make_registry", "push_iris", "store_snapshot"]

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"]


def push_iris(registry: Registry) -> Registry:
    """Push every version of ``iris`` (each with other weights)."""
    for i, version in enumerate(VERSIONS):
        registry.push("iris", {"weights": i}, version=version)
    return registry


def make_registry(root: Path) -> Registry:
    """A local registry under ``root`` holding ``iris``."""
    return push_iris(Registry(root / "reg", cache_dir=root / "cache", user="tester"))


def backend_registry(backend: Any, root: Path) -> Registry:
    """``iris`` with every version pushed, on a backend that child processes can reach."""
    registry = Registry(
        backend.uri, cache_dir=root / "cache", user="tester", **backend.store_options
    )
    return push_iris(registry)


def store_snapshot(registry: Registry) -> dict[str, str]:
    """Every key and its etag: to show that a refused change wrote nothing."""
    return {info.key: info.etag for info in registry.store.list("")}
