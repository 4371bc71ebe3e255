"""Running one transfer per file in parallel, with more threads for small files.

A large file is itself transferred in parallel parts, so ``max_workers`` large files at once
already fill the connection pool and bound memory. A small file is one request, where the
cost is the round trip, not the bytes: many at once hide the latency. So the pool has
:data:`SMALL_FACTOR` times ``max_workers`` threads, and a file larger than
:data:`SMALL_FILE` holds one of ``max_workers`` slots while it transfers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["SMALL_FACTOR", "SMALL_FILE", "map_files"]

SMALL_FACTOR = 4
SMALL_FILE = 1024 * 1024
"""Files up to this size count as small (one request each on S3)."""

_T = TypeVar("_T")
_R = TypeVar("_R")


def map_files(
    one: Callable[[_T], _R], items: Sequence[_T], size: Callable[[_T], int], max_workers: int
) -> list[_R]:
    """``[one(item) for item in items]`` in parallel, results in the order of ``items``."""
    small = sum(1 for item in items if size(item) <= SMALL_FILE)
    large = len(items) - small
    workers = max(1, min(len(items), min(large, max_workers) + SMALL_FACTOR * max_workers))
    if small == 0:
        workers = max(1, min(max_workers, len(items)))
    if workers == 1:
        return [one(item) for item in items]
    slots = threading.BoundedSemaphore(max(1, max_workers))

    def run(item: _T) -> _R:
        if size(item) <= SMALL_FILE:
            return one(item)
        with slots:
            return one(item)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, items))
