"""Registries built for the view tests: versions with cards, alias changes, fleet metrics.

Everything goes through the real API (``Registry.push``, the alias operations) and the
metric objects are written exactly as serving processes write them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from modelshelf import Registry
from modelshelf.metrics import MetricsSummary, new_sketch, summary_key, summary_to_json

MODEL = "iris"


def card(i: int) -> dict[str, object]:
    """The card of the i-th test version: numbers that change by known steps."""
    return {
        "description": f"retrain {i}",
        "framework": "sklearn 1.5",
        "algorithm": "random forest",
        "hyperparameters": {"n_estimators": 100 + 10 * i, "max_depth": 5, "criterion": "gini"},
        "training_data": {"source": f"s3://data/iris/{i}", "samples": 1000 + i},
        "performance": {"accuracy": round(0.90 + 0.01 * i, 4), "latency_ms": 2.0 + i},
        "input_schema": {"features": ["sepal_length", "sepal_width"]},
    }


def push_versions(reg: Registry, count: int, name: str = MODEL) -> list[str]:
    """Push ``count`` versions (1.0.0, 1.1.0, ...) with :func:`card` cards."""
    versions = []
    for i in range(count):
        v = reg.push(name, {"weights": [i] * 8}, card=card(i), version=f"1.{i}.0")
        versions.append(v.version)
    return versions


def put_summary(
    reg: Registry,
    version: str,
    window: datetime,
    server: str,
    seq: int,
    latencies: Sequence[float],
    errors: int,
    *,
    name: str = MODEL,
    window_seconds: int = 60,
) -> MetricsSummary:
    """Write one metrics object as a serving process flushes it."""
    sketch = new_sketch()
    for value in latencies:
        sketch.add(value)
    summary = MetricsSummary(
        model=name,
        version=version,
        server_id=server,
        seq=seq,
        window_start=window,
        window_seconds=window_seconds,
        count=len(latencies),
        errors=errors,
        latency=sketch,
    )
    reg.store.put(summary_key(summary), summary_to_json(summary))
    return summary


def fleet_traffic(
    reg: Registry,
    versions: tuple[str, str],
    start: datetime,
    minutes: int,
    *,
    servers: int = 2,
    per_window: int = 50,
    error_rates: tuple[float, float] = (0.01, 0.01),
    name: str = MODEL,
    seed: int = 7,
) -> None:
    """Per-minute metrics of both arms from ``servers`` servers, from ``start`` on."""
    rng = random.Random(seed)
    epoch = start.replace(second=0, microsecond=0)
    for minute in range(minutes):
        window = epoch + timedelta(minutes=minute)
        for version, rate in zip(versions, error_rates, strict=True):
            for s in range(servers):
                lat = [rng.lognormvariate(2.0, 0.4) for _ in range(per_window)]
                errs = sum(rng.random() < rate for _ in range(per_window))
                put_summary(reg, version, window, f"web-{s}", minute, lat, errs, name=name)
