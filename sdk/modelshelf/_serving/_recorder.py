"""Per-version request metrics, recorded in memory and flushed as mergeable summaries.

:meth:`Recorder.record` is the request-path half: a lock, a dict lookup and a DDSketch
``add``, a few microseconds. :meth:`Recorder.flush` is the background half: it turns what was
recorded into one :class:`~modelshelf.metrics.MetricsSummary` per (version, window) and
writes each with create-if-absent under
``{model}/metrics/{version}/{window}/{server_id}-{seq}.json``.

A write that fails is never dropped. Its key and bytes are kept unchanged and written again
at the next flush: if the earlier attempt did land after all, the retry finds the object
(412), sees the same bytes and counts it as written, so nothing is counted twice. Requests
recorded for the same (version, window) while that write is outstanding are merged into one
waiting summary that goes out, under a new sequence number, once the outstanding one landed.
Memory is therefore bounded by two summaries per (version, window) however long the store is
down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ddsketch import DDSketch

from .._errors import InvalidInputError, KeyNotFoundError, PreconditionFailedError
from .._refs import check_name, parse_version
from .._stores import CREATE, Store
from ..metrics import (
    ROUTE_BUCKETS,
    MetricsSummary,
    check_server_id,
    new_sketch,
    route_bucket,
    summary_key,
    summary_to_json,
)

__all__ = ["Recorder"]

logger = logging.getLogger("modelshelf.serving")

_Slot = tuple[str, int]  # (version, window index since the epoch)


class _Counts:
    """Requests, errors and latencies of one slot (mutated under the recorder's lock)."""

    __slots__ = (
        "bucket_errors",
        "count",
        "error_sketch",
        "errors",
        "keyed",
        "ratio_n",
        "ratio_sum",
        "sketch",
    )

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.sketch: DDSketch = new_sketch()
        self.error_sketch: DDSketch = new_sketch()
        self.bucket_errors: dict[int, int] = {}
        self.keyed = 0
        self.ratio_sum = 0.0
        self.ratio_n = 0

    def merge(self, other: _Counts) -> None:
        self.count += other.count
        self.errors += other.errors
        if other.sketch.count:
            self.sketch.merge(other.sketch)
        if other.error_sketch.count:
            self.error_sketch.merge(other.error_sketch)
        for bucket, errors in other.bucket_errors.items():
            self.bucket_errors[bucket] = self.bucket_errors.get(bucket, 0) + errors
        self.keyed += other.keyed
        self.ratio_sum += other.ratio_sum
        self.ratio_n += other.ratio_n


@dataclass
class _Outstanding:
    """A summary whose write failed: retried with exactly this key and these bytes."""

    key: str
    data: bytes
    count: int
    errors: int


class Recorder:
    """Thread-safe request metrics for one model in one serving process.

    Args:
        store: Where summaries are written.
        model: The model name.
        server_id: Names this process in metric keys.
        window_seconds: Length of a metrics window (requests are bucketed by arrival).
        clock: Seconds since the epoch (injectable for tests).

    Raises:
        InvalidInputError: A bad model name, server id or window length.
    """

    def __init__(
        self,
        store: Store,
        model: str,
        server_id: str,
        *,
        window_seconds: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (
            isinstance(window_seconds, bool)
            or not isinstance(window_seconds, int)
            or window_seconds <= 0
        ):
            raise InvalidInputError(
                f"invalid metrics window {window_seconds!r}: use a positive number of seconds"
            )
        self.store = store
        self.model = check_name(model)
        self.server_id = check_server_id(server_id)
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[_Slot, _Counts] = {}
        self._known_versions: set[str] = set()
        self._flush_lock = threading.Lock()
        self._outstanding: dict[_Slot, _Outstanding] = {}
        self._waiting: dict[_Slot, _Counts] = {}
        self._seq = 0
        self._logged: set[str] = set()
        self.objects_written = 0
        self.failed_writes = 0

    # -- the request path --------------------------------------------------------------

    def record(
        self,
        version: str,
        latency_ms: float,
        error: bool = False,
        *,
        route_point: float | None = None,
        ratio: float | None = None,
    ) -> None:
        """Count one request.

        Args:
            version: The version that served it.
            latency_ms: How long it took; failed requests' latencies are kept apart.
            error: Whether it failed.
            route_point: The request key's route point, for keyed (sticky) requests: its
                error is also counted in its route bucket.
            ratio: The canary ratio the request was routed with.

        Raises:
            InvalidVersionError: ``version`` is not ``MAJOR.MINOR.PATCH`` (checked once per
                version, so a bad caller learns at once, not at flush time).
        """
        if version not in self._known_versions:
            parse_version(version)
            self._known_versions.add(version)
        slot = (version, int(self._clock() // self.window_seconds))
        value = latency_ms if latency_ms > 0.0 else 0.0
        with self._lock:
            counts = self._live.get(slot)
            if counts is None:
                counts = self._live[slot] = _Counts()
            counts.count += 1
            if error:
                counts.errors += 1
                counts.error_sketch.add(value)
            else:
                counts.sketch.add(value)
            if route_point is not None:
                counts.keyed += 1
                if error:
                    bucket = route_bucket(route_point)
                    counts.bucket_errors[bucket] = counts.bucket_errors.get(bucket, 0) + 1
            if ratio is not None:
                counts.ratio_sum += ratio
                counts.ratio_n += 1

    # -- inspection --------------------------------------------------------------------

    def pending_requests(self) -> int:
        """Requests recorded whose summaries could not be written yet (retried later)."""
        with self._lock:
            return sum(o.count for o in self._outstanding.values()) + sum(
                c.count for c in self._waiting.values()
            )

    def unwritten(self) -> dict[str, tuple[int, int]]:
        """``{version: (requests, errors)}`` recorded but not yet written."""
        totals: dict[str, tuple[int, int]] = {}
        with self._lock:
            parts: list[tuple[str, int, int]] = [
                (slot[0], c.count, c.errors)
                for slots in (self._live, self._waiting)
                for slot, c in slots.items()
            ]
            parts += [(slot[0], o.count, o.errors) for slot, o in self._outstanding.items()]
        for version, count, errors in parts:
            before = totals.get(version, (0, 0))
            totals[version] = (before[0] + count, before[1] + errors)
        return totals

    # -- flushing ----------------------------------------------------------------------

    def flush(self) -> int:
        """Write every summary recorded so far, and retry the ones that failed before.

        Returns:
            The number of summaries still waiting for a retry (0 when all landed).
        """
        with self._flush_lock:
            with self._lock:
                drained, self._live = self._live, {}
                for slot, counts in drained.items():
                    waiting = self._waiting.get(slot)
                    if waiting is None:
                        self._waiting[slot] = counts
                    else:
                        waiting.merge(counts)
            store_ok = True
            for slot in sorted(self._outstanding, key=lambda s: s[1]):
                if not store_ok:
                    break
                store_ok = self._try(slot, self._outstanding[slot])
            for slot in sorted(self._waiting, key=lambda s: s[1]):
                if not store_ok:
                    break
                if slot in self._outstanding:
                    continue  # its earlier write must land first (see the module docstring)
                with self._lock:
                    counts = self._waiting.pop(slot)
                # Built outside the lock: record() must not wait for pydantic and JSON.
                outstanding = self._freeze(slot, counts)
                with self._lock:
                    self._outstanding[slot] = outstanding
                store_ok = self._try(slot, outstanding)
            with self._lock:
                return len(self._outstanding) + len(self._waiting)

    def _freeze(self, slot: _Slot, counts: _Counts) -> _Outstanding:
        version, window = slot
        summary = MetricsSummary(
            model=self.model,
            version=version,
            server_id=self.server_id,
            seq=self._next_seq(),
            window_start=datetime.fromtimestamp(window * self.window_seconds, UTC),
            window_seconds=self.window_seconds,
            count=counts.count,
            errors=counts.errors,
            latency=counts.sketch,
            error_latency=counts.error_sketch,
            served_ratio=(
                min(max(counts.ratio_sum / counts.ratio_n, 0.0), 1.0)
                if counts.ratio_n and counts.ratio_n == counts.count
                else None
            ),
            route_buckets=ROUTE_BUCKETS if counts.keyed else None,
            bucket_errors=dict(counts.bucket_errors),
        )
        return _Outstanding(
            summary_key(summary), summary_to_json(summary), counts.count, counts.errors
        )

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _try(self, slot: _Slot, outstanding: _Outstanding) -> bool:
        """Write one outstanding summary; False when the store failed (stop this round)."""
        try:
            landed = self._write(outstanding)
        except Exception as exc:  # any failure keeps the data; the next flush retries
            self.failed_writes += 1
            self._log_failure(exc)
            return False
        if landed:
            with self._lock:
                self._outstanding.pop(slot, None)
            self.objects_written += 1
            if self._logged:
                logger.warning("%s: metrics flushes to %s work again", self.model, self.store.uri)
                self._logged.clear()
        return True

    def _write(self, outstanding: _Outstanding) -> bool:
        for _ in range(3):
            try:
                self.store.put(outstanding.key, outstanding.data, mode=CREATE)
                return True
            except PreconditionFailedError:
                # Our own earlier attempt may have landed after its error: same bytes, done.
                try:
                    existing = self.store.get(outstanding.key)
                except KeyNotFoundError:
                    continue
                if existing is not None and existing.data == outstanding.data:
                    return True
                # The key is someone else's (a reused server id): take the next number.
                summary = MetricsSummary.model_validate_json(outstanding.data)
                summary = summary.model_copy(update={"seq": self._next_seq()})
                outstanding.key = summary_key(summary)
                outstanding.data = summary_to_json(summary)
                logger.warning(
                    "%s: metrics key %s was taken by another writer; is server id %r "
                    "used by two processes?",
                    self.model,
                    outstanding.key,
                    self.server_id,
                )
        return False

    def _log_failure(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message in self._logged:
            return
        self._logged.add(message)
        logger.warning(
            "%s: metrics flush to %s failed; %d requests kept in memory for the next flush: %s",
            self.model,
            self.store.uri,
            self.pending_requests(),
            message,
        )
