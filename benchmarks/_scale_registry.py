"""The registry sections of ``benchmarks/scale.py``: history, versions, models."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelshelf._aliases import Aliases, HistoryRecord, next_state
from modelshelf._card import FileEntry, ModelCard, ModelVersion
from modelshelf.layout import aliases_key, blob_key, history_key, manifest_key

if TYPE_CHECKING:
    from scale import Bench, Figure

BLOB = b"weights"


def _scale() -> Any:
    import scale

    return scale


# -- fixtures -------------------------------------------------------------------------------


def _manifest(name: str, version: str, created: datetime) -> bytes:
    import hashlib

    sha = hashlib.sha256(BLOB).hexdigest()
    return ModelVersion(
        name=name,
        version=version,
        card=ModelCard(name=name, version=version, created_at=created, updated_at=created),
        files=[FileEntry(path="model.bin", size=len(BLOB), sha256=sha)],
        created_at=created,
        created_by="bench@scale",
    ).to_json()


def _blob_items(name: str) -> list[tuple[str, bytes]]:
    import hashlib

    return [(blob_key(name, hashlib.sha256(BLOB).hexdigest()), BLOB)]


def write_versions(bench: Bench, name: str, count: int) -> list[str]:
    """``count`` committed versions 1.0.0, 1.1.0, ... (as ``push --bump minor`` makes)."""
    start = datetime.now(UTC) - timedelta(days=count)
    versions = [f"1.{i}.0" for i in range(count)]
    items = _blob_items(name) + [
        (manifest_key(name, v), _manifest(name, v, start + timedelta(days=i)))
        for i, v in enumerate(versions)
    ]
    _scale().parallel_put(bench.raw_store(""), items)
    return versions


def write_history(bench: Bench, name: str, count: int, versions: list[str]) -> None:
    """``count`` alias changes, as the alias log writes them, straight into the bucket.

    A release cycle repeats: a canary starts, steps up a few times, and is promoted or
    aborted; now and then an operator flips active directly or rolls back. Changes come in
    bursts (a canary's steps minutes apart) between quiet hours, so the times are uneven.
    """
    # Built twice with the same seed: once to learn how long it spans, then ending a minute
    # ago, so that the changes the benchmark itself makes come after it in time too.
    span = _build_history(name, count, versions, datetime(2000, 1, 1, tzinfo=UTC))
    start = datetime.now(UTC) - timedelta(minutes=1) - (span[-1].when - span[0].when)
    records = _build_history(name, count, versions, start - timedelta(minutes=1))
    items = [(history_key(name, r.generation), r.to_json()) for r in records]
    items.append((aliases_key(name), records[-1].state.to_json()))
    _scale().parallel_put(bench.raw_store(""), items)


def _build_history(
    name: str, count: int, versions: list[str], start: datetime
) -> list[HistoryRecord]:
    rng = random.Random(13)
    when = start
    state = Aliases()
    records: list[HistoryRecord] = []
    pool_size = len(versions)

    def step(action: str, updates: dict[str, Any], gap: timedelta) -> None:
        nonlocal state, when
        when += gap
        new = next_state(name, state, updates, user="bench@scale", reason=None, now=when)
        records.append(
            HistoryRecord(
                generation=new.generation,
                action=action,
                previous=state if state.generation else None,
                state=new,
                who="bench@scale",
                when=when,
                reason=None,
            )
        )
        state = new

    step("set_active", {"active": versions[0]}, timedelta(minutes=1))
    index = 0
    while len(records) < count:
        index = (index + 1) % pool_size or 1
        candidate = versions[index]
        roll = rng.random()
        if roll < 0.08:
            step(
                "set_active",
                {"active": candidate, "canary": None, "ratio": 0.0},
                timedelta(hours=rng.uniform(1, 30)),
            )
            continue
        if roll < 0.12 and len(records) > 2:
            step(
                "set_active",
                {"active": versions[index - 1], "canary": None, "ratio": 0.0},
                timedelta(minutes=rng.uniform(1, 20)),
            )
            continue
        if candidate == state.active:
            continue
        step(
            "start_canary",
            {"canary": candidate, "ratio": 0.05, "canary_started_at": when},
            timedelta(hours=rng.uniform(1, 40)),
        )
        for ratio in (0.25, 0.5, 1.0):
            if len(records) >= count:
                break
            step("set_ratio", {"ratio": ratio}, timedelta(minutes=rng.uniform(10, 15)))
        if len(records) >= count:
            break
        if rng.random() < 0.8:
            step(
                "promote",
                {"active": candidate, "canary": None, "ratio": 0.0, "canary_started_at": None},
                timedelta(minutes=rng.uniform(10, 15)),
            )
        else:
            step(
                "abort_canary",
                {"canary": None, "ratio": 0.0, "canary_started_at": None},
                timedelta(minutes=rng.uniform(1, 15)),
            )
    return records[:count]


# -- sections -------------------------------------------------------------------------------


def _history_ops(bench: Bench, size: int) -> dict[str, Callable[[], object]]:
    name = f"hist{size}"
    versions = write_versions(bench, name, 20)
    write_history(bench, name, size, versions)
    registry = bench.registry("")
    records = registry.history(name)
    assert len(records) == size, f"fixture: {len(records)} records, wanted {size}"
    # An instant in the middle of the history, inside a canary's steps.
    middle = records[size // 2].when + timedelta(seconds=1)
    expected = {(s.version, s.role) for s in _linear_served_at(records, middle)}
    got = {(s.version, s.role) for s in registry.served_at(name, middle)}
    assert got == expected, f"served_at disagrees with a full read: {got} != {expected}"
    registry.gc(name)  # the first run builds gc's index; the figure is for the runs after it
    return {
        "history --limit 10": lambda: registry.history(name, limit=10),
        "served_at": lambda: registry.served_at(name, middle),
        # Rolling back twice returns to where it started: every run sees the same history.
        "rollback": lambda: registry.rollback(name),
        "gc dry run": lambda: registry.gc(name),
    }


def _linear_served_at(records: list[HistoryRecord], when: datetime) -> list[Any]:
    from modelshelf._aliases import served_at

    return served_at(records, when, timedelta(seconds=60))


def section_history(bench: Bench) -> list[Figure]:
    sc = _scale()
    sizes = (10, 1000) if bench.quick else (10, 10_000)
    ops = {size: _history_ops(bench, size) for size in sizes}
    # Interleaved: each round runs every operation at both sizes.
    flat = {(size, op): fn for size in sizes for op, fn in ops[size].items()}
    # These take milliseconds, where a median of 7 moved by a third from run to run on a
    # 2-core machine shared with the server: more rounds cost little and steady the ratios.
    measured = bench.compare(
        {f"{op} at {size:,}": fn for (size, op), fn in flat.items()}, repeat=bench.repeat * 5
    )
    for label, value in measured.items():
        sc.print_measured(label, value)
    small = {op: measured[f"{op} at {sizes[0]:,}"] for op in ops[sizes[0]]}
    large = {op: measured[f"{op} at {sizes[1]:,}"] for op in ops[sizes[1]]}
    n = f"{sizes[1]:,}"
    figures = []
    for op in ("history --limit 10", "served_at", "rollback"):
        got = large[op].requests
        figures.append(
            sc.Figure("history", f"{op} at {n} records: requests", str(got), "<= 30", got <= 30)
        )
        figures.append(
            sc.ratio_figure(
                "history", f"{op} time, {n} / {sizes[0]} records", small[op], large[op], 1.5, "time"
            )
        )
    op = "gc dry run"
    figures.append(
        sc.ratio_figure(
            "history",
            f"{op} time (after its first), {n} / {sizes[0]}",
            small[op],
            large[op],
            2.0,
            "time",
        )
    )
    figures.append(_alias_change(bench))
    return figures


def _alias_change(bench: Bench) -> Figure:
    """Requests of one alias change (benchmarks/README.md quotes this figure)."""
    sc = _scale()
    name = "change"
    write_versions(bench, name, 3)
    registry = bench.registry("")
    registry.set_active(name, "1.0.0")
    registry.start_canary(name, "1.1.0", ratio=0.05)
    ratios = iter([0.1, 0.2] * 100)
    m = bench.compare({"set_ratio": lambda: registry.set_ratio(name, next(ratios))})["set_ratio"]
    sc.print_measured("an alias change (set_ratio)", m)
    figure: Figure = sc.Figure(
        "history", "requests of one alias change (set_ratio)", str(m.requests), "-", None
    )
    return figure


def _push_op(bench: Bench, size: int, src: Path) -> tuple[str, Callable[[], object]]:
    name = f"vers{size}"
    write_versions(bench, name, size)
    registry = bench.registry("")
    registry.push(name, src, bump="minor")  # the first push after the bulk write
    return name, lambda: registry.push(name, src, bump="minor")


def section_versions(bench: Bench) -> list[Figure]:
    sc = _scale()
    sizes = (10, 1000) if bench.quick else (10, 3000)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.bin"
        src.write_bytes(b"tiny model")
        ops = {size: _push_op(bench, size, src) for size in sizes}
        measured = bench.compare({f"push at {size:,}": ops[size][1] for size in sizes})
        big = ops[sizes[1]][0]
        listed = bench.measure(lambda: _cli(bench, ["list", big]))
    small, large = measured[f"push at {sizes[0]:,}"], measured[f"push at {sizes[1]:,}"]
    sc.print_measured(f"push --bump minor at {sizes[0]:,} versions", small)
    sc.print_measured(f"push --bump minor at {sizes[1]:,} versions", large)
    sc.print_measured(f"list NAME (default view) at {sizes[1]:,}", listed)
    n = f"{sizes[1]:,} / {sizes[0]} versions"
    return [
        sc.ratio_figure("versions", f"push requests, {n}", small, large, 1.3, "requests"),
        sc.ratio_figure("versions", f"push time, {n}", small, large, 1.3, "time"),
        sc.Figure(
            "versions",
            f"list NAME at {sizes[1]:,} versions",
            f"{listed.median:.3f} s, {listed.requests} requests",
            "<= 1 s",
            listed.median <= 1.0,
        ),
    ]


def section_models(bench: Bench) -> list[Figure]:
    sc = _scale()
    count = 200 if bench.quick else 1000
    prefix = "fleet"
    start = datetime.now(UTC) - timedelta(days=3)
    items: list[tuple[str, bytes]] = []
    for i in range(count):
        name = f"model-{i:04d}"
        items += [(f"{prefix}/{k}", v) for k, v in _blob_items(name)]
        for j in range(3):
            items.append(
                (f"{prefix}/{manifest_key(name, f'1.{j}.0')}", _manifest(name, f"1.{j}.0", start))
            )
    sc.parallel_put(bench.raw_store(""), items)
    listed = bench.measure(lambda: _cli(bench, ["list"], prefix=prefix), repeat=3)
    sc.print_measured(f"modelshelf list over {count:,} models", listed)
    return [
        sc.Figure(
            "models",
            f"modelshelf list, {count:,} models",
            f"{listed.median:.3f} s, {listed.requests} requests",
            "<= 2 s",
            listed.median <= 2.0,
        )
    ]


def _cli(bench: Bench, args: list[str], prefix: str = "") -> None:
    """Run a ``modelshelf`` subcommand in this process, on the counted client.

    The subcommand is invoked directly with a prepared state (the group would open its
    own registry from a URI, on an uncounted client); output goes to a buffer.
    """
    from click.testing import CliRunner

    from modelshelf._cli import cli
    from modelshelf._cli._app import AppState

    command = cli.commands[args[0]]
    state = AppState(_registry=bench.registry(prefix))
    result = CliRunner().invoke(command, args[1:], obj=state, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"modelshelf {' '.join(args)} failed: {result.output}")
