"""Incremental reading of the metrics a serving fleet flushed, with a cursor in the store.

Each serving process writes one immutable object per (version, window, flush)::

    {model}/metrics/{version}/{window}/{server_id}-{seq}.json

The promoter needs, for the active and the canary version, the merge of every such object
since the canary started. Reading them all at every run would cost one GET per object
(1,000 servers x 60-second windows is 60,000 objects an hour), so the merged statistics so
far are kept in ``{model}/promoter/state.json`` together with a cursor saying which objects
they already hold; a run lists the two version prefixes, GETs only the objects the cursor
does not cover, merges them in, and writes the state back with If-Match (create-if-absent
the first time). A run that loses that race simply leaves the state to the winner: the
stored statistics always equal the merge of exactly the objects the stored cursor names.

Why the cursor is not one "last key read" watermark
---------------------------------------------------
Keys list in lexicographic order, which is time order of windows, but objects do not
*arrive* in that order: a server flushes a window up to a flush interval after it closed,
and a server whose writes failed retries the same key (same window, same sequence number)
at later flushes, possibly many minutes later. A single high-water key would skip those
late objects forever. So the cursor has two parts per version:

* **open windows** (starting less than ``lateness_seconds`` before now): the exact set of
  object names (``{server_id}-{seq}``) already merged, per window. A late object in an open
  window is simply a name not yet in the set, and is read at the next run.
* **closed windows** (older): only a count of the objects accounted for. Once a window is
  older than the lateness bound, its name set is dropped (this is what keeps the state
  small: the sets cover only the last ``lateness_seconds``); an object that still turns up
  there is not merged but counted and reported as ``late_ignored``. Before a window is
  closed, the run that closes it has listed and read everything present in it.

The bound (default 15 minutes) should exceed a window plus a flush interval plus the store
outage a fleet is expected to ride out; the serving client keeps unwritten metrics in memory
and retries them, so a longer outage shows up as ``late_ignored`` in the decisions rather
than silently. Listing starts at the oldest open window (``start_after``) and adds one closed
window per run, going round them, to find those late objects
(:mod:`modelshelf_promoter._listing`); a late object is reported within as many runs as there
are closed windows. The GETs are incremental too: only keys the cursor does not name.

Which objects count
-------------------
Only the two versions the aliases name (other versions' prefixes are never listed), and only
windows that end after the canary started, and of the window holding the start time only
the canary's objects: active's hold requests from before the canary existed, which would
bias the first stratum (the window then carries no error evidence, having no concurrent
control, but its canary requests count). A key's window start is known
from the key, its length only from the object, so keys are filtered with the longest window
length seen so far (:data:`DEFAULT_WINDOW_SECONDS` before any object is read, the canary's
prefix first with :data:`MAX_WINDOW_SECONDS`) and objects again after reading; an object read
and found to be from before the start is remembered as read, not merged.

A corrupt object (not JSON, failing validation, or naming another model, version, window or
server than its key) is skipped, remembered as read (objects are immutable, reading it again
cannot help) and reported; it never fails the run.

Strata and plausibility
-----------------------
Besides the merged statistics, the cursor keeps both arms' counts *per window* (the strata of
the error tests, with the served ratio and the per-route-bucket errors) and per server
(:mod:`modelshelf_promoter._plausibility`). An *implausible* object (latency sketches not
holding one value per request) is skipped and named like a corrupt one, and flags its
server; a server whose canary share does not match its routing is flagged too. A flagged
server's objects are left out of everything merged from then on, including the rest of the
run that flagged it; what it contributed before stays (the checks run on every object as
it is read, so a server lying from the start is out from its first object).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelshelf import (
    CREATE,
    IfMatch,
    InvalidInputError,
    KeyNotFoundError,
    PreconditionFailedError,
    Store,
    canonical_json,
    check_name,
    layout,
)
from modelshelf.metrics import (
    ROUTE_BUCKETS,
    SKETCH_RELATIVE_ACCURACY,
    WINDOW_FORMAT,
    ArmStats,
    MetricsSummary,
    latency_mismatch,
    parse_metrics_key,
    sketch_bins,
    sketch_gamma,
    summary_from_json,
    summary_key,
)

from ._counts import WindowCounts
from ._listing import list_arm
from ._plausibility import ServerReport, ServerTotals, check_servers
from ._time import utcnow
from ._volume import VolumeState, bound_volume, close_windows

__all__ = [
    "DEFAULT_LATENESS_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_WINDOW_SECONDS",
    "ArmCursor",
    "CanaryCursor",
    "CorruptObject",
    "PromoterState",
    "ReadReport",
    "WindowTally",
    "canary_seen_recently",
    "cursor_route_buckets",
    "cursor_windows",
    "load_state",
    "read_metrics",
    "save_state",
    "state_key",
]

DEFAULT_LATENESS_SECONDS = 900.0
"""Windows that started longer ago than this are closed (see the module docstring)."""
DEFAULT_WINDOW_SECONDS = 60
"""The serving client's default window, assumed until an object says otherwise."""
MAX_WINDOW_SECONDS = 3600
"""The longest metrics window the reader looks back for at the canary's start."""
MAX_CORRUPT_KEPT = 100
"""Corrupt objects named in the state (all are counted)."""
DEFAULT_MAX_WORKERS = 16
MIN_TAIL_SAMPLES = 1000
"""Active latencies needed before the tail thresholds of the stratified latency test are set."""

Role = Literal["active", "canary"]


def state_key(model: str) -> str:
    """Key of a model's promoter state."""
    return layout.promoter_state_key(check_name(model))


class CorruptObject(BaseModel):
    """A metrics object that could not be used, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    error: str


class ArmCursor(BaseModel):
    """What has been merged for one version of a canary run.

    Attributes:
        version: The version (active's or the canary's).
        stats: The merge of every counted object read so far.
        open_windows: Window key -> sorted names (``{server}-{seq}``) of objects read.
        closed_windows: Window key -> objects accounted for when the window closed (plus
            late arrivals reported since).
        last_window_with_requests: Start of the newest window with at least one request.
        window_seconds: The longest window length seen in this version's objects.
        audited_window: The closed window the last run listed again to find late objects
            (:mod:`modelshelf_promoter._listing`).
    """

    model_config = ConfigDict(extra="forbid")

    version: str
    stats: ArmStats = Field(default_factory=ArmStats)
    open_windows: dict[str, list[str]] = Field(default_factory=dict)
    closed_windows: dict[str, int] = Field(default_factory=dict)
    last_window_with_requests: datetime | None = None
    window_seconds: int | None = None
    audited_window: str | None = None


class WindowTally(BaseModel):
    """Both arms' counts in one metrics window (one stratum of the error tests)."""

    model_config = ConfigDict(extra="forbid")

    active_requests: int = 0
    active_errors: int = 0
    canary_requests: int = 0
    canary_errors: int = 0
    ratio_sum: float = 0.0
    ratio_requests: int = 0
    route_buckets: int | None = None
    active_buckets: dict[int, int] = Field(default_factory=dict)
    canary_buckets: dict[int, int] = Field(default_factory=dict)

    tails: dict[str, list[int]] = Field(default_factory=dict)

    def add(self, role: Role, summary: MetricsSummary, tail_keys: dict[str, list[int]]) -> None:
        """Count one summary in (its latencies above the tail thresholds in force, too)."""
        if tail_keys and summary.latency.count:
            bins, _ = sketch_bins(summary.latency)
            for label, (active_key, canary_key) in tail_keys.items():
                key = canary_key if role == "canary" else active_key
                above = int(round(sum(c for k, c in bins.items() if k > key)))
                counts = self.tails.setdefault(label, [0, 0, 0, 0])
                slot = 0 if role == "canary" else 1
                counts[slot] += above
                counts[slot + 2] += int(round(summary.latency.count))
        buckets = self.canary_buckets if role == "canary" else self.active_buckets
        if role == "canary":
            self.canary_requests += summary.count
            self.canary_errors += summary.errors
        else:
            self.active_requests += summary.count
            self.active_errors += summary.errors
        if summary.served_ratio is not None:
            self.ratio_sum += summary.served_ratio * summary.count
            self.ratio_requests += summary.count
        if summary.route_buckets is not None:
            self.route_buckets = summary.route_buckets
        for bucket, errors in summary.bucket_errors.items():
            buckets[bucket] = buckets.get(bucket, 0) + errors


class CanaryCursor(BaseModel):
    """The incremental reading state of one canary run (active, canary, start time).

    ``generation`` and ``step_started_at`` cache the alias history lookup of the last run:
    while the aliases stay at that generation the step's start is known without reading
    the history again.
    """

    model_config = ConfigDict(extra="forbid")

    active: str
    canary: str
    canary_started_at: datetime
    watermark: datetime | None = None
    arms: dict[Role, ArmCursor]
    corrupt: list[CorruptObject] = Field(default_factory=list)
    corrupt_count: int = 0
    late_ignored: int = 0
    objects_read: int = 0
    runs: int = 0
    generation: int | None = None
    step_started_at: datetime | None = None
    windows: dict[str, WindowTally] = Field(default_factory=dict)
    servers: dict[str, ServerTotals] = Field(default_factory=dict)
    tail_keys: dict[str, list[int]] = Field(default_factory=dict)
    implausible_count: int = 0
    volume: VolumeState = Field(default_factory=VolumeState)

    def matches(self, active: str, canary: str, canary_started_at: datetime) -> bool:
        """Whether this cursor belongs to the canary run described."""
        return (
            self.active == active
            and self.canary == canary
            and self.canary_started_at == canary_started_at
        )

    @classmethod
    def fresh(cls, active: str, canary: str, canary_started_at: datetime) -> CanaryCursor:
        """An empty cursor for a canary run."""
        return cls(
            active=active,
            canary=canary,
            canary_started_at=canary_started_at,
            arms={"active": ArmCursor(version=active), "canary": ArmCursor(version=canary)},
        )


class PromoterState(BaseModel):
    """``{model}/promoter/state.json``: the cursor of the model's current canary run."""

    model_config = ConfigDict(extra="forbid")

    model: str
    cursor: CanaryCursor | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = None

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys)."""
        return canonical_json(self.model_dump(mode="json"))


class ReadReport(BaseModel):
    """What one incremental read did.

    Attributes:
        listed: Metric keys listed under the two versions.
        fetched: Objects read (GETs) by this run.
        merged: Objects merged into the statistics by this run.
        before_start: Objects read this run but from windows before the canary started.
        corrupt: Corrupt objects found by this run (skipped).
        corrupt_total: Corrupt objects found since the canary started.
        late_ignored: Objects found this run in windows already closed (not merged).
        stray_keys: Keys under the metrics prefixes that are not metrics object keys.
        window_seconds: The longest window length seen.
        watermark: Windows starting before this are closed.
        seconds: Wall time of the read.
        implausible: Objects found this run whose latency sketches do not hold one value
            per request (skipped; their server is flagged).
        left_out: Objects of flagged servers this run did not merge.
        servers: Every server's totals and whether it is left out, and why.
        volume_outliers: Objects this run left out because their server reported far
            more requests in that window than the fleet (:mod:`._volume`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    listed: int
    fetched: int
    merged: int
    before_start: int
    corrupt: list[CorruptObject]
    corrupt_total: int
    late_ignored: int
    stray_keys: int
    window_seconds: int | None
    watermark: datetime | None
    seconds: float
    implausible: list[CorruptObject] = Field(default_factory=list)
    left_out: int = 0
    volume_outliers: list[CorruptObject] = Field(default_factory=list)
    # Handed to the judge, recorded once in the decision (not twice in its record).
    servers: list[ServerReport] = Field(default_factory=list, exclude=True)


def load_state(store: Store, model: str) -> tuple[PromoterState | None, str | None, str | None]:
    """The stored state, its etag, and a problem description when it was unreadable.

    An unreadable state is not fatal: the caller starts over (reading every object again)
    and replaces it, conditionally on the etag returned here.
    """
    try:
        obj = store.get(state_key(model))
    except KeyNotFoundError:
        return None, None, None
    assert obj is not None
    try:
        state = PromoterState.model_validate_json(obj.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "state"
        return None, obj.etag, f"unreadable promoter state ({where}: {first['msg']}), rebuilt"
    if state.model != model:
        return None, obj.etag, f"promoter state names model {state.model!r}, rebuilt"
    return state, obj.etag, None


def save_state(store: Store, model: str, state: PromoterState, etag: str | None) -> bool:
    """Write the state if nobody replaced it since it was read at ``etag``.

    Returns:
        False when another run wrote it first (its state is as good as ours).
    """
    try:
        store.put(state_key(model), state.to_json(), mode=CREATE if etag is None else IfMatch(etag))
    except PreconditionFailedError:
        return False
    return True


@dataclass(frozen=True)
class _Todo:
    role: Role
    key: str
    window: str
    name: str


@dataclass(frozen=True)
class _Fetched:
    todo: _Todo
    summary: MetricsSummary | None
    error: str | None
    missing: bool = False


def _fetch(store: Store, todo: _Todo, model: str, version: str) -> _Fetched:
    try:
        obj = store.get(todo.key)
    except KeyNotFoundError:
        return _Fetched(todo, None, None, missing=True)
    assert obj is not None
    try:
        summary = summary_from_json(obj.data, todo.key)
    except InvalidInputError as exc:
        return _Fetched(todo, None, str(exc))
    parsed = parse_metrics_key(todo.key)
    mismatch = [
        what
        for what, ok in (
            ("model", summary.model == model),
            ("version", summary.version == version),
            ("window", summary.window_start == parsed.window_start),
            ("server", summary.server_id == parsed.server_id),
            ("seq", summary.seq == parsed.seq),
        )
        if not ok
    ]
    if mismatch:
        return _Fetched(
            todo, None, f"corrupt {todo.key}: its {', '.join(mismatch)} differ from its key"
        )
    return _Fetched(todo, summary, None)


def _window_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime(WINDOW_FORMAT)


def read_metrics(
    store: Store,
    model: str,
    cursor: CanaryCursor,
    *,
    now: datetime,
    lateness_seconds: float = DEFAULT_LATENESS_SECONDS,
    max_workers: int = DEFAULT_MAX_WORKERS,
    tolerances: dict[str, float] | None = None,
    server_requests_factor: float = 10.0,
    max_server_requests_per_second: float | None = None,
) -> tuple[CanaryCursor, ReadReport]:
    """Merge the metrics objects that arrived since ``cursor`` was written.

    Args:
        store: The registry's store.
        model: The model.
        cursor: The canary run's cursor (:meth:`CanaryCursor.fresh` the first time).
        now: The time of this run (closes windows older than ``lateness_seconds``).
        lateness_seconds: How long after its start a window still takes late objects.
        max_workers: Parallel GETs.
        tolerances: Latency tolerance per quantile (``{"p95": 1.2, "p99": 1.2}``, the
            default) for the tail thresholds of the stratified latency test.
        server_requests_factor: How many times the fleet's median rate a server may
            report in a window before it is left out of it (:mod:`._volume`).
        max_server_requests_per_second: An absolute ceiling per server, if any.

    Returns:
        The advanced cursor (a new object; ``cursor`` is not changed) and the report.

    Raises:
        StoreError: Listing or reading failed; nothing is half-applied, the next run
            starts from the same cursor.
    """
    began = time.monotonic()
    cursor = cursor.model_copy(deep=True)
    started = cursor.canary_started_at
    old_watermark = cursor.watermark
    listed = stray = late = before = merged_count = left_out = 0
    corrupt: list[CorruptObject] = []
    implausible: list[CorruptObject] = []
    fetched: list[_Fetched] = []
    read_now: list[tuple[Role, MetricsSummary]] = []
    # Thresholds fixed by earlier runs, before this run's latencies are seen.
    tail_keys = dict(cursor.tail_keys)
    if tolerances is None:
        tolerances = {"p95": 1.2, "p99": 1.2}

    # The canary first: its objects tell the window length before active's are filtered.
    for role in ("canary", "active"):
        arm = cursor.arms[role]
        known = max(
            (a.window_seconds for a in cursor.arms.values() if a.window_seconds), default=None
        )
        lookback = known or (MAX_WINDOW_SECONDS if role == "canary" else DEFAULT_WINDOW_SECONDS)
        earliest = started - timedelta(seconds=lookback)
        todo: list[_Todo] = []
        closed_seen: dict[str, int] = {}
        listing = list_arm(
            store,
            model,
            arm.version,
            earliest=earliest,
            watermark=old_watermark,
            closed=arm.closed_windows,
            audited_last=arm.audited_window,
        )
        arm.audited_window = listing.audited
        read_before = {window: set(names) for window, names in arm.open_windows.items()}
        for info in listing.keys:
            listed += 1
            folder, _, name = info.key.rpartition("/")
            names_read = read_before.get(folder.rpartition("/")[2])
            if names_read is not None and name in names_read:
                continue  # read by an earlier run, which parsed its key then
            try:
                parsed = parse_metrics_key(info.key)
            except InvalidInputError:
                stray += 1
                continue
            if parsed.window_start <= earliest:
                continue  # before the canary: never read
            window = _window_text(parsed.window_start)
            if old_watermark is not None and parsed.window_start < old_watermark:
                closed_seen[window] = closed_seen.get(window, 0) + 1
                continue
            name = info.key.rsplit("/", 1)[1]
            names = arm.open_windows.get(window)
            if names is not None and name in names:
                continue
            todo.append(_Todo(role, info.key, window, name))
        for window, seen in closed_seen.items():
            accounted = arm.closed_windows.get(window, 0)
            if seen > accounted:
                late += seen - accounted
                arm.closed_windows[window] = seen
        results = _fetch_all(store, model, arm.version, todo, max_workers)
        fetched += results
        for result in results:
            if result.missing:
                continue  # gone between list and get; nothing to remember
            item = result.todo
            arm.open_windows.setdefault(item.window, []).append(item.name)
            if result.summary is None:
                corrupt.append(CorruptObject(key=item.key, error=result.error or "corrupt"))
                continue
            summary = result.summary
            arm.window_seconds = max(arm.window_seconds or 0, summary.window_seconds)
            end = summary.window_start + timedelta(seconds=summary.window_seconds)
            if end <= started or (role == "active" and summary.window_start < started):
                # Active's part of the window holding the start has requests from before
                # the canary existed; the canary's part has none.
                before += 1
                continue
            server = cursor.servers.setdefault(summary.server_id, ServerTotals())
            problem = latency_mismatch(summary)
            if problem is not None:
                server.implausible_objects += 1
                implausible.append(CorruptObject(key=item.key, error=f"implausible: {problem}"))
                continue
            read_now.append((role, summary))
        for names in arm.open_windows.values():
            names.sort()

    # Volume first: an outlier's objects count nowhere, not even in the share checks.
    read_now, outliers, deferred = bound_volume(
        read_now,
        cursor.volume,
        factor=server_requests_factor,
        ceiling_rps=max_server_requests_per_second,
        now=now,
    )
    volume_outliers = [CorruptObject(key=summary_key(s), error=why) for s, why in outliers]
    for role, summary in deferred:  # not read yet, as far as the cursor knows
        names = cursor.arms[role].open_windows.get(_window_text(summary.window_start), [])
        name = summary_key(summary).rsplit("/", 1)[1]
        if name in names:
            names.remove(name)
    # Plausibility before merging: a server flagged by this run's objects is out of it too.
    for role, summary in read_now:
        if cursor.servers[summary.server_id].flagged is None:
            _count_server(cursor.servers[summary.server_id], role, summary)
    reports = check_servers(cursor.servers)
    new: dict[Role, list[MetricsSummary]] = {"active": [], "canary": []}
    for role, summary in read_now:
        if cursor.servers[summary.server_id].flagged is not None:
            left_out += 1
            continue
        new[role].append(summary)
        window = _window_text(summary.window_start)
        cursor.windows.setdefault(window, WindowTally()).add(role, summary, tail_keys)
        arm = cursor.arms[role]
        if summary.count > 0 and (
            arm.last_window_with_requests is None
            or summary.window_start > arm.last_window_with_requests
        ):
            arm.last_window_with_requests = summary.window_start
    for role, parts in new.items():
        if parts:
            arm = cursor.arms[role]
            arm.stats = ArmStats.merge_all([arm.stats, *parts])
            merged_count += len(parts)
    cursor.tail_keys = _tail_keys(cursor.arms["active"].stats, tolerances)

    watermark = now - timedelta(seconds=lateness_seconds)
    if old_watermark is not None and old_watermark > watermark:
        watermark = old_watermark
    for arm in cursor.arms.values():
        for window in [w for w in arm.open_windows if _parse_window(w) < watermark]:
            arm.closed_windows[window] = len(arm.open_windows.pop(window))
    close_windows(cursor.volume, [w for w in cursor.volume.open if _parse_window(w) < watermark])
    cursor.watermark = watermark
    cursor.corrupt_count += len(corrupt)
    room = MAX_CORRUPT_KEPT - len(cursor.corrupt)
    if room > 0:
        cursor.corrupt.extend(corrupt[:room])
    cursor.late_ignored += late
    cursor.implausible_count += len(implausible)
    reads = sum(1 for f in fetched if not f.missing)
    cursor.objects_read += reads
    cursor.runs += 1
    report = ReadReport(
        listed=listed,
        fetched=len(fetched),
        merged=merged_count,
        before_start=before,
        corrupt=corrupt,
        corrupt_total=cursor.corrupt_count,
        late_ignored=late,
        stray_keys=stray,
        window_seconds=max(
            (a.window_seconds for a in cursor.arms.values() if a.window_seconds), default=None
        ),
        watermark=watermark,
        seconds=time.monotonic() - began,
        implausible=implausible[:MAX_CORRUPT_KEPT],
        left_out=left_out,
        volume_outliers=volume_outliers[:MAX_CORRUPT_KEPT],
        servers=reports,
    )
    return cursor, report


def _tail_keys(active: ArmStats, tolerances: dict[str, float]) -> dict[str, list[int]]:
    """Sketch keys of the tail thresholds: active's estimated quantile, and ``t`` times it.

    Thresholds sit on bin edges, where sketch counts are exact; the canary's is rounded up
    (fewer canary exceedances: conservative).
    """
    if active.latency.count < MIN_TAIL_SAMPLES:
        return {}
    bins, below = sketch_bins(active.latency)
    keys = sorted(bins)
    gamma = sketch_gamma(SKETCH_RELATIVE_ACCURACY)
    out: dict[str, list[int]] = {}
    for label, tolerance in tolerances.items():
        q = int(label[1:]) / 100.0
        target = q * active.latency.count
        running = below
        for key in keys:
            running += bins[key]
            if running >= target:
                out[label] = [key, key + math.ceil(math.log(tolerance) / math.log(gamma) - 1e-9)]
                break
    return out


def _count_server(totals: ServerTotals, role: Role, summary: MetricsSummary) -> None:
    if role == "canary":
        totals.canary_requests += summary.count
        totals.canary_errors += summary.errors
    else:
        totals.active_requests += summary.count
        totals.active_errors += summary.errors
    if summary.served_ratio is not None:
        totals.expected_canary += summary.served_ratio * summary.count
        totals.ratio_known_requests += summary.count


def cursor_windows(cursor: CanaryCursor) -> list[WindowCounts]:
    """The cursor's strata in time order, as the judge takes them."""
    out = []
    for key in sorted(cursor.windows):
        tally = cursor.windows[key]
        total = tally.active_requests + tally.canary_requests
        ratio = (
            tally.ratio_sum / tally.ratio_requests
            if tally.ratio_requests and tally.ratio_requests >= total
            else None
        )
        out.append(
            WindowCounts(
                active_requests=tally.active_requests,
                active_errors=tally.active_errors,
                canary_requests=tally.canary_requests,
                canary_errors=tally.canary_errors,
                ratio=ratio,
                start=_parse_window(key),
                active_buckets=dict(tally.active_buckets),
                canary_buckets=dict(tally.canary_buckets),
                tails={label: (c[0], c[1], c[2], c[3]) for label, c in tally.tails.items()},
            )
        )
    return out


def cursor_route_buckets(cursor: CanaryCursor) -> int:
    """Route buckets the fleet counts in (the recorder's default before any object says)."""
    for tally in cursor.windows.values():
        if tally.route_buckets is not None:
            return tally.route_buckets
    return ROUTE_BUCKETS


def _parse_window(text: str) -> datetime:
    return datetime.strptime(text, WINDOW_FORMAT).replace(tzinfo=UTC)


def _fetch_all(
    store: Store, model: str, version: str, todo: Iterable[_Todo], max_workers: int
) -> list[_Fetched]:
    items = list(todo)
    if not items:
        return []
    workers = max(1, min(max_workers, len(items)))
    if workers == 1:
        return [_fetch(store, item, model, version) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promoter-get") as pool:
        return list(pool.map(lambda item: _fetch(store, item, model, version), items))


def canary_seen_recently(cursor: CanaryCursor, now: datetime) -> bool:
    """Whether the canary logged requests in the last complete window (or later).

    One window of flush lag is allowed: a server writes a window up to a flush interval
    after it closed, so right after a window boundary the last complete window may not be
    in the store yet. The canary counts as seen when it has requests in the current window,
    the last complete one, or the one before it; silence for a whole window beyond that is
    reported as "no canary data", never taken for health.
    """
    arm = cursor.arms["canary"]
    if arm.last_window_with_requests is None:
        return False
    window = timedelta(
        seconds=arm.window_seconds or cursor.arms["active"].window_seconds or DEFAULT_WINDOW_SECONDS
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    current = epoch + ((now - epoch) // window) * window
    return arm.last_window_with_requests >= current - 2 * window
