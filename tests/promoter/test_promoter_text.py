"""What the promoter says: readable durations, the action once, the generation it wrote."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._cli._promoter import _describe
from modelshelf_promoter import Promoter
from modelshelf_promoter._durations import duration_text
from tests.promoter.test_promoter_run import (
    MODEL,
    Clock,
    _canary_registry,
    now_after_start,
    set_policy,
    traffic,
)


@pytest.fixture
def registry(make_backend: Any, tmp_path: Path) -> Registry:
    return _canary_registry(make_backend("local"), tmp_path)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (2.5, "2.5 s"),
        (16.2, "16 s"),
        (20, "20 s"),
        (250, "4 min 10 s"),
        (600, "10 min"),
        (3660, "1 h 1 min"),
        (86400, "24 h"),
        (87900, "24 h 25 min"),
    ],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_a_hold_names_seconds_and_its_action_once(registry: Registry) -> None:
    set_policy(registry, "min_requests_per_arm=10", "min_step_seconds=90")
    now = now_after_start(registry, 76.2)
    traffic(registry.store, now - timedelta(seconds=5), canary=(400, 0))
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert run.action == "hold", f"expected a hold on a young step: {run}"
    assert "has run 1 min 16 s of 1 min 30 s" in run.reason, (
        f"76 s of a 90 s step must not read as '1.3 min of 1.5 min': {run.reason}"
    )
    line = _describe(run)
    assert line.count("hold") == 1, f"the action is printed more than once: {line}"
    assert line.startswith(f"{MODEL}: hold: step at ratio 0.05"), line


def test_an_applied_change_shows_the_generation_it_wrote(registry: Registry) -> None:
    set_policy(registry, "min_requests_per_arm=10", "min_step_seconds=60")
    judged = registry.aliases(MODEL).generation
    now = now_after_start(registry, 120)
    traffic(registry.store, now - timedelta(seconds=5), canary=(400, 0))
    (run,) = Promoter(registry, clock=Clock(now)).run([MODEL])
    assert (run.action, run.applied) == ("advance", True), f"{run}"
    line = _describe(run)
    assert f"generation {judged} -> {judged + 1}" in line, (
        f"an applied change must show the new generation: {line}"
    )
    assert line.count("advance") == 1, f"the action is printed more than once: {line}"
