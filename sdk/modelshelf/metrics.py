"""Mergeable request metrics: what a serving process flushes and what the promoter reads.

One flushed object covers one version, one time window and one serving process::

    {model}/metrics/{version}/{window}/{server_id}-{seq}.json

``window`` is the window's UTC start as ``%Y%m%dT%H%M%SZ`` (fixed width, so keys sort in
time order) and ``seq`` counts the flushes of that server, zero-padded to 8 digits. An
object holds request and error counts and a DDSketch of latencies (relative accuracy 1%).
DDSketches merge exactly: merging the sketches of two servers gives the sketch of all their
requests, so the promoter can add up any number of objects in any order.

Fields added for the promoter's plausibility checks and robust tests (issue 12). Each is
optional and *left out of the object when unset*, so an object without them is byte for
byte what older recorders wrote, and older readers keep reading objects of recorders that
do not set them; a promoter that knows them reads both kinds:

* ``error_latency``: the latencies of *failed* requests, kept apart from ``latency`` (which
  then holds the successful ones only): a failure that returns in 1 ms, or times out after
  30 s, says nothing about how fast the version serves. Without it, ``latency`` holds all
  requests, as before.
* ``served_ratio``: the canary ratio the server routed with, averaged over the window's
  requests (set only when every request of the window reported it).
* ``route_buckets`` and ``bucket_errors``: errors of keyed (sticky) requests per route
  bucket, ``floor(route_point * route_buckets)``; a client lives in one bucket, so the
  promoter can bound what one client's errors do to its tests.

Either way an object holds exactly one latency value per request (``latency`` plus
``error_latency``): the promoter reads an object that does not as implausible
(:func:`latency_mismatch`).

The sketch is stored as JSON, not the library's protobuf (which drops min, max and sum and
needs ``protobuf``): the positive and negative bins as ``{index: count}``, the zero count,
count, min, max, sum and the relative accuracy. Reading it back rebuilds a sketch whose
quantiles are exactly those of the original.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import CHUNK_SIZE, DenseStore
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from . import layout as _layout
from ._card import canonical_json, utcnow
from ._errors import InvalidInputError, validation_message
from ._refs import check_name, parse_version

__all__ = [
    "ROUTE_BUCKETS",
    "SKETCH_RELATIVE_ACCURACY",
    "WINDOW_FORMAT",
    "ArmStats",
    "LatencySketch",
    "MetricsKey",
    "MetricsSummary",
    "arm_stats_from_json",
    "arm_stats_to_json",
    "check_server_id",
    "latency_mismatch",
    "metrics_key",
    "metrics_prefix",
    "new_sketch",
    "parse_metrics_key",
    "parse_window_key",
    "route_bucket",
    "sketch_bins",
    "sketch_from_bins",
    "sketch_from_dict",
    "sketch_gamma",
    "sketch_to_dict",
    "summary_from_json",
    "summary_key",
    "summary_to_json",
    "window_key",
    "window_start",
]

SKETCH_RELATIVE_ACCURACY = 0.01
ROUTE_BUCKETS = 100
"""Route buckets the recorder counts keyed requests' errors in (route point percentiles)."""
_OPTIONAL = ("error_latency", "served_ratio", "route_buckets", "bucket_errors")
WINDOW_FORMAT = _layout.WINDOW_FORMAT
_SERVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY = re.compile(
    r"(?P<model>[^/]+)/metrics/(?P<version>[^/]+)/(?P<window>\d{8}T\d{6}Z)/"
    r"(?P<server>[^/]+)-(?P<seq>\d+)\.json"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- windows and keys -------------------------------------------------------------------------


def _check_aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidInputError(f"{what} {dt!r} has no time zone: pass an aware UTC datetime")
    return dt.astimezone(UTC)


def _check_window_seconds(window_seconds: int) -> int:
    if (
        not isinstance(window_seconds, int)
        or isinstance(window_seconds, bool)
        or window_seconds <= 0
    ):
        raise InvalidInputError(
            f"invalid window length {window_seconds!r}: use a positive number of seconds (e.g. 60)"
        )
    return window_seconds


def window_start(dt: datetime, window_seconds: int) -> datetime:
    """The start of the window holding ``dt``; windows are aligned on the Unix epoch.

    Raises:
        InvalidInputError: A naive datetime or a window length that is not a positive int.
    """
    dt = _check_aware(dt, "time")
    _check_window_seconds(window_seconds)
    seconds = (dt - _EPOCH) // timedelta(seconds=1)
    return _EPOCH + timedelta(seconds=seconds - seconds % window_seconds)


def window_key(dt: datetime, window_seconds: int) -> str:
    """The key segment (``%Y%m%dT%H%M%SZ``) of the window holding ``dt``.

    Raises:
        InvalidInputError: As :func:`window_start`.
    """
    return window_start(dt, window_seconds).strftime(WINDOW_FORMAT)


def parse_window_key(text: str) -> datetime:
    """The UTC datetime a window key segment names.

    Raises:
        InvalidInputError: When ``text`` is not ``%Y%m%dT%H%M%SZ``.
    """
    try:
        return _parse_window(text)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"invalid metrics window {text!r}: expected UTC time as YYYYMMDDTHHMMSSZ"
        ) from exc


def check_server_id(server_id: object) -> str:
    """Return ``server_id`` if it can name a metrics object.

    Raises:
        InvalidInputError: Not 1-128 characters of letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(server_id, str) or not _SERVER_ID.fullmatch(server_id):
        raise InvalidInputError(
            f"invalid server id {server_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. a hostname or 'web-3')"
        )
    return server_id


def metrics_prefix(model: str, version: str | None = None) -> str:
    """The key prefix under which a model's (or one version's) metrics objects live."""
    check_name(model)
    if version is not None:
        parse_version(version)
    return _layout.metrics_prefix(model, version)


def metrics_key(model: str, version: str, window_start: datetime, server_id: str, seq: int) -> str:
    """The key of one flushed metrics object.

    ``window_start`` is floored to the second; pass the window's start (see
    :func:`window_start`).

    Raises:
        InvalidInputError: A bad name, version, server id, negative ``seq`` or naive time.
    """
    check_name(model)
    parse_version(version)
    check_server_id(server_id)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise InvalidInputError(f"invalid flush sequence number {seq!r}: use an int >= 0")
    window = _check_aware(window_start, "window start").strftime(WINDOW_FORMAT)
    return _layout.metrics_key(model, version, window, server_id, seq)


@dataclass(frozen=True)
class MetricsKey:
    """The parts of a metrics object key."""

    model: str
    version: str
    window_start: datetime
    server_id: str
    seq: int


@functools.lru_cache(maxsize=4096)
def _parse_window(text: str) -> datetime:
    # Every server's object of one window names the same window: a promoter's first run
    # parses each text a hundred times or more, and strptime is slow.
    return datetime.strptime(text, WINDOW_FORMAT).replace(tzinfo=UTC)


def parse_metrics_key(key: str) -> MetricsKey:
    """Split a metrics object key (relative to the registry root) into its parts.

    Raises:
        InvalidInputError: When ``key`` is not
            ``{model}/metrics/{version}/{window}/{server}-{seq}.json``.
    """
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise InvalidInputError(
            f"not a metrics object key: {key!r} (expected "
            "{model}/metrics/{version}/{YYYYMMDDTHHMMSSZ}/{server_id}-{seq}.json)"
        )
    try:
        check_name(match["model"])
        parse_version(match["version"])
        check_server_id(match["server"])
    except InvalidInputError as exc:
        raise InvalidInputError(f"not a metrics object key: {key!r}: {exc}") from exc
    return MetricsKey(
        model=match["model"],
        version=match["version"],
        window_start=parse_window_key(match["window"]),
        server_id=match["server"],
        seq=int(match["seq"]),
    )


# --- the latency sketch -----------------------------------------------------------------------


def new_sketch() -> DDSketch:
    """An empty latency sketch with the registry's relative accuracy (1%)."""
    return DDSketch(SKETCH_RELATIVE_ACCURACY)


def sketch_gamma(relative_accuracy: float) -> float:
    """The bin ratio of a logarithmic sketch: bin ``k`` holds values in ``(g**(k-1), g**k]``."""
    return 1.0 + 2.0 * relative_accuracy / (1.0 - relative_accuracy)


def _relative_accuracy(sketch: BaseDDSketch) -> float:
    mapping = sketch._mapping
    if type(mapping) is not LogarithmicMapping or mapping._offset != 0.0:
        raise InvalidInputError(
            "unsupported latency sketch: use ddsketch.DDSketch (logarithmic mapping, no offset)"
        )
    return float(mapping.relative_accuracy)


def _store_bins(store: DenseStore) -> dict[int, float]:
    if store.count == 0:
        return {}
    offset = store.offset
    first = store.min_key - offset
    return {
        first + offset + index: float(count)
        for index, count in enumerate(store.bins[first : store.max_key - offset + 1])
        if count != 0
    }


def _dense_store(bins: dict[int, float]) -> DenseStore:
    """A DenseStore holding exactly ``bins``, laid out the way the library grows stores."""
    store = DenseStore()
    if not bins:
        return store
    low, high = min(bins), max(bins)
    length = CHUNK_SIZE * math.ceil((high - low + 1) / CHUNK_SIZE)
    counts = [0.0] * length
    for key, count in bins.items():
        counts[key - low] += count
    store.bins = counts
    store.offset = low
    store.min_key = low
    store.max_key = high
    store.count = math.fsum(bins.values())
    return store


def sketch_bins(sketch: BaseDDSketch) -> tuple[dict[int, float], float]:
    """The positive bins (index -> count) of a sketch, and the count at or below zero.

    Latencies are never negative; a negative value is counted with the zeros, below
    every positive bin.
    """
    below = float(sketch._zero_count) + float(sketch._negative_store.count)
    return _store_bins(sketch._store), below


def sketch_from_bins(
    bins: dict[int, float],
    *,
    zero_count: float = 0.0,
    negative_bins: dict[int, float] | None = None,
    total: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    value_sum: float | None = None,
    relative_accuracy: float = SKETCH_RELATIVE_ACCURACY,
) -> DDSketch:
    """Build a sketch from its bins (and, when known, its exact count, min, max and sum).

    Without ``minimum``/``maximum``/``value_sum`` they are estimated from the bins (the
    representative value of the lowest / highest bin, and the sum of representatives),
    which is what a simulation that bins values itself needs.
    """
    sketch = DDSketch(relative_accuracy)
    negative_bins = negative_bins or {}
    sketch._store = _dense_store(bins)
    sketch._negative_store = _dense_store(negative_bins)
    sketch._zero_count = float(zero_count)
    counted = sketch._store.count + sketch._negative_store.count + sketch._zero_count
    sketch._count = float(counted if total is None else total)
    mapping = sketch._mapping
    if sketch._count > 0:
        if minimum is None:
            if negative_bins:
                minimum = -float(mapping.value(max(negative_bins)))
            elif zero_count:
                minimum = 0.0
            else:
                minimum = float(mapping.value(min(bins)))
        if maximum is None:
            if bins:
                maximum = float(mapping.value(max(bins)))
            elif zero_count:
                maximum = 0.0
            else:
                maximum = -float(mapping.value(min(negative_bins)))
        if value_sum is None:
            value_sum = math.fsum(mapping.value(k) * c for k, c in bins.items()) - math.fsum(
                mapping.value(k) * c for k, c in negative_bins.items()
            )
        sketch._min = float(minimum)
        sketch._max = float(maximum)
        sketch._sum = float(value_sum)
    return sketch


def sketch_to_dict(sketch: BaseDDSketch) -> dict[str, Any]:
    """JSON-ready form of a sketch; deterministic for a given content.

    Raises:
        InvalidInputError: A sketch with another mapping than DDSketch's default.
    """
    empty = sketch._count == 0
    return {
        "relative_accuracy": _relative_accuracy(sketch),
        "bins": {str(k): v for k, v in sorted(_store_bins(sketch._store).items())},
        "negative_bins": {
            str(k): v for k, v in sorted(_store_bins(sketch._negative_store).items())
        },
        "zero_count": float(sketch._zero_count),
        "count": float(sketch._count),
        "sum": 0.0 if empty else float(sketch._sum),
        # An empty sketch's min/max are +-inf, which JSON cannot hold.
        "min": None if empty else float(sketch._min),
        "max": None if empty else float(sketch._max),
    }


def _finite(value: Any, what: str, *, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or (nonnegative and result < 0):
        raise ValueError(f"{what} must be a finite{' non-negative' if nonnegative else ''} number")
    return result


def _parse_bins(raw: Any, what: str) -> dict[int, float]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object of index -> count")
    bins: dict[int, float] = {}
    for key, value in raw.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{what} has a non-integer index {key!r}") from None
        # The common case checked inline: a promoter's first run parses ~36 bins per object
        # and tens of thousands of objects; anything unusual gets _finite's full check.
        if type(value) is float and 0.0 <= value < math.inf:
            count = value
        else:
            count = _finite(value, f"{what}[{key}]", nonnegative=True)
        if count > 0:
            bins[index] = count
    return bins


def sketch_from_dict(data: Any) -> DDSketch:
    """Rebuild a sketch from :func:`sketch_to_dict` output.

    Raises:
        ValueError: Data that does not describe a consistent sketch (pydantic turns this
            into a validation error naming the field).
    """
    if not isinstance(data, dict):
        raise ValueError("a latency sketch must be a JSON object")
    missing = {"relative_accuracy", "bins", "zero_count", "count"} - data.keys()
    if missing:
        raise ValueError(f"latency sketch lacks {sorted(missing)}")
    accuracy = _finite(data["relative_accuracy"], "relative_accuracy")
    if not 0.0 < accuracy < 1.0:
        raise ValueError("relative_accuracy must be within (0, 1)")
    bins = _parse_bins(data["bins"], "bins")
    negative = _parse_bins(data.get("negative_bins", {}), "negative_bins")
    zero_count = _finite(data["zero_count"], "zero_count", nonnegative=True)
    count = _finite(data["count"], "count", nonnegative=True)
    binned = math.fsum([*bins.values(), *negative.values(), zero_count])
    if not math.isclose(binned, count, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"latency sketch count {count} differs from its bins' total {binned}")
    if count == 0:
        return DDSketch(accuracy)
    minimum = _finite(data.get("min"), "min")
    maximum = _finite(data.get("max"), "max")
    if minimum > maximum:
        raise ValueError(f"latency sketch min {minimum} exceeds max {maximum}")
    return sketch_from_bins(
        bins,
        zero_count=zero_count,
        negative_bins=negative,
        total=count,
        minimum=minimum,
        maximum=maximum,
        value_sum=_finite(data.get("sum"), "sum"),
        relative_accuracy=accuracy,
    )


def _validate_sketch(value: Any) -> DDSketch:
    if isinstance(value, BaseDDSketch):
        try:
            _relative_accuracy(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return value  # type: ignore[return-value]
    return sketch_from_dict(value)


LatencySketch = Annotated[
    DDSketch,
    PlainValidator(_validate_sketch),
    PlainSerializer(sketch_to_dict, return_type=dict),
]
"""A DDSketch field: stored as :func:`sketch_to_dict`, read back with :func:`sketch_from_dict`."""


def _copy_sketch(sketch: BaseDDSketch) -> DDSketch:
    copy = DDSketch(_relative_accuracy(sketch))
    copy._copy(sketch)
    return copy


def _merge_into(target: DDSketch, source: BaseDDSketch) -> None:
    if not math.isclose(
        _relative_accuracy(target), _relative_accuracy(source), rel_tol=0, abs_tol=1e-12
    ):
        raise InvalidInputError(
            f"cannot merge latency sketches of relative accuracy {_relative_accuracy(target)} "
            f"and {_relative_accuracy(source)}: every server must use the same accuracy"
        )
    target.merge(source)


# --- one flushed object -----------------------------------------------------------------------


class MetricsSummary(BaseModel):
    """What one serving process observed for one version during one window."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: str
    server_id: str
    seq: int = Field(ge=0)
    window_start: datetime
    window_seconds: int = Field(gt=0)
    count: int = Field(ge=0)
    errors: int = Field(ge=0)
    latency: LatencySketch = Field(default_factory=new_sketch)
    created_at: datetime = Field(default_factory=utcnow)
    error_latency: LatencySketch | None = None
    served_ratio: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    route_buckets: int | None = Field(default=None, gt=0, le=10_000)
    bucket_errors: dict[int, int] = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            return check_name(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            parse_version(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("server_id")
    @classmethod
    def _server(cls, value: str) -> str:
        try:
            return check_server_id(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("window_start", "created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone (UTC)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> MetricsSummary:
        if self.errors > self.count:
            raise ValueError(f"errors ({self.errors}) exceed requests ({self.count})")
        if self.latency.count > self.count:
            raise ValueError(
                f"the latency sketch holds {self.latency.count} values, more than the "
                f"{self.count} requests"
            )
        if window_start(self.window_start, self.window_seconds) != self.window_start:
            raise ValueError(
                f"window_start {self.window_start.isoformat()} is not aligned on a "
                f"{self.window_seconds}-second window"
            )
        if self.error_latency is not None:
            if self.error_latency.count > self.errors:
                raise ValueError(
                    f"the failed-request sketch holds {self.error_latency.count} values, more "
                    f"than the {self.errors} errors"
                )
            if self.latency.count + self.error_latency.count > self.count:
                raise ValueError("the two latency sketches hold more values than requests")
        if self.bucket_errors:
            if self.route_buckets is None:
                raise ValueError("bucket_errors need route_buckets (how many buckets there are)")
            for bucket, errors in self.bucket_errors.items():
                if not 0 <= bucket < self.route_buckets or errors < 0:
                    raise ValueError(
                        f"bucket_errors[{bucket}] = {errors}: buckets run 0..."
                        f"{self.route_buckets - 1}, counts are >= 0"
                    )
            if sum(self.bucket_errors.values()) > self.errors:
                raise ValueError("bucket_errors add up to more than the errors")
        return self


def route_bucket(point: float, buckets: int = ROUTE_BUCKETS) -> int:
    """The route bucket of a route point in ``[0, 1)``."""
    return min(max(int(point * buckets), 0), buckets - 1)


def latency_mismatch(summary: MetricsSummary) -> str | None:
    """Why a summary's sketches do not hold one latency per request, or None when they do.

    The recorder adds one latency per request it counts; a summary whose sketches hold
    another number was not written by it as it is, and its counts cannot be trusted.
    """
    values = summary.latency.count
    if summary.error_latency is not None:
        values += summary.error_latency.count
    if math.isclose(values, summary.count, rel_tol=0.0, abs_tol=1e-6):
        return None
    return f"its latency sketches hold {values:g} values for {summary.count} requests"


def summary_key(summary: MetricsSummary) -> str:
    """The key a summary is stored under."""
    return metrics_key(
        summary.model, summary.version, summary.window_start, summary.server_id, summary.seq
    )


def summary_to_json(summary: MetricsSummary) -> bytes:
    """Canonical bytes of a summary (sorted keys; unset optional fields left out)."""
    data = summary.model_dump(mode="json")
    for name in _OPTIONAL:
        if data.get(name) in (None, {}):
            data.pop(name, None)
    return canonical_json(data)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "object"
    return f"{where}: {validation_message(first)}"


def summary_from_json(data: bytes, source: str = "metrics object") -> MetricsSummary:
    """Parse and validate a stored summary.

    Raises:
        InvalidInputError: Corrupt JSON or inconsistent content; the message names
            ``source`` and the first problem.
    """
    try:
        return MetricsSummary.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidInputError(f"corrupt {source}: {_describe(exc)}") from exc


# --- merged per-arm statistics ----------------------------------------------------------------


class ArmStats(BaseModel):
    """Requests, errors and latencies of one version, merged over any set of summaries.

    ``latency`` holds the successful requests' latencies of summaries that keep failed ones
    apart (and all requests' of older summaries); ``error_latency`` the failed ones.
    """

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency: LatencySketch = Field(default_factory=new_sketch)
    error_latency: LatencySketch = Field(default_factory=new_sketch)
    summaries: int = Field(default=0, ge=0)
    first_window: datetime | None = None
    last_window: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ArmStats:
        if self.errors > self.count:
            raise ValueError(f"errors ({self.errors}) exceed requests ({self.count})")
        return self

    @classmethod
    def from_summary(cls, summary: MetricsSummary) -> ArmStats:
        """The statistics of a single summary."""
        return cls(
            count=summary.count,
            errors=summary.errors,
            latency=_copy_sketch(summary.latency),
            error_latency=_copy_sketch(summary.error_latency or new_sketch()),
            summaries=1,
            first_window=summary.window_start,
            last_window=summary.window_start,
        )

    @classmethod
    def merge_all(cls, parts: Iterable[ArmStats | MetricsSummary]) -> ArmStats:
        """Merge any number of summaries or statistics (one copy, merged in place).

        Raises:
            InvalidInputError: Sketches of different relative accuracy.
        """
        count = errors = summaries = 0
        sketch = new_sketch()
        failed = new_sketch()
        first: datetime | None = None
        last: datetime | None = None
        for part in parts:
            part_first: datetime | None
            part_last: datetime | None
            if isinstance(part, MetricsSummary):
                part_first = part_last = part.window_start
                summaries += 1
            else:
                part_first, part_last = part.first_window, part.last_window
                summaries += part.summaries
            count += part.count
            errors += part.errors
            if part.latency.count:
                if sketch.count == 0:
                    sketch = _copy_sketch(part.latency)
                else:
                    _merge_into(sketch, part.latency)
            part_failed = part.error_latency
            if part_failed is not None and part_failed.count:
                if failed.count == 0:
                    failed = _copy_sketch(part_failed)
                else:
                    _merge_into(failed, part_failed)
            if part_first is not None and (first is None or part_first < first):
                first = part_first
            if part_last is not None and (last is None or part_last > last):
                last = part_last
        return cls(
            count=count,
            errors=errors,
            latency=sketch,
            error_latency=failed,
            summaries=summaries,
            first_window=first,
            last_window=last,
        )

    def merge(self, other: ArmStats | MetricsSummary) -> ArmStats:
        """A new ArmStats holding both; neither input changes."""
        return ArmStats.merge_all((self, other))

    @property
    def error_rate(self) -> float | None:
        """Errors per request, or None without requests."""
        return self.errors / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The latency at quantile ``q`` (within the sketch's 1%), or None when empty."""
        value = self.latency.get_quantile_value(q)
        return None if value is None else float(value)


def arm_stats_to_json(stats: ArmStats) -> bytes:
    """Canonical bytes of merged statistics (sorted keys)."""
    return canonical_json(stats.model_dump(mode="json"))


def arm_stats_from_json(data: bytes | str | dict[str, Any], source: str = "arm stats") -> ArmStats:
    """Parse stored merged statistics.

    Raises:
        InvalidInputError: Corrupt or inconsistent content.
    """
    try:
        if isinstance(data, dict):
            return ArmStats.model_validate(data)
        return ArmStats.model_validate(json.loads(data))
    except (ValidationError, ValueError) as exc:
        detail = _describe(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidInputError(f"corrupt {source}: {detail}") from exc
