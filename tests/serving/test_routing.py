"""Routing between active and canary: the share matches the ratio, keys are sticky and monotone."""

from __future__ import annotations

import random

import pytest

from modelshelf._serving._routing import Snapshot, choose, route_point

N_KEYS = 100_000


def _snapshot(ratio: float, salt: str = "5eed5a1t") -> Snapshot:
    return Snapshot(
        generation=3,
        active="1.0.0",
        active_model="model-a",
        canary="1.1.0",
        canary_model="model-b",
        ratio=ratio,
        salt=salt,
    )


def _canary_keys(ratio: float, salt: str = "5eed5a1t") -> set[str]:
    snap = _snapshot(ratio, salt)
    return {f"user-{i}" for i in range(N_KEYS) if choose(snap, f"user-{i}")[0] == "1.1.0"}


@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.25, 0.5, 0.9])
def test_canary_share_matches_ratio_over_100k_keys(ratio: float) -> None:
    share = len(_canary_keys(ratio)) / N_KEYS
    assert abs(share - ratio) <= 0.01, (
        f"canary got {share:.4f} of {N_KEYS} keys at ratio {ratio}: off by more than 1 point"
    )


def test_raising_the_ratio_moves_no_key_out_of_the_canary() -> None:
    previous: set[str] = set()
    for ratio in (0.05, 0.25, 0.5, 1.0):
        current = _canary_keys(ratio)
        left = previous - current
        assert not left, f"{len(left)} keys left the canary when the ratio rose to {ratio}"
        previous = current
    assert len(previous) == N_KEYS, "at ratio 1.0 every key must reach the canary"


def test_a_key_keeps_its_arm_and_its_point_is_pinned() -> None:
    snap = _snapshot(0.3)
    first = [choose(snap, f"k{i}")[0] for i in range(1000)]
    again = [choose(snap, f"k{i}")[0] for i in range(1000)]
    assert first == again, "the same key must route to the same version every time"
    # The point is a pure function of salt and key (no per-process hash seed), so every
    # server of a fleet agrees; a pinned value catches a change of the hash.
    assert route_point("salt", "user-42") == pytest.approx(0.7372565837740529, abs=1e-15), (
        "the routing hash changed: keys would move between arms across a fleet upgrade"
    )
    assert route_point("salt", "user-42") == route_point("salt", b"user-42"), (
        "str and bytes keys with the same bytes must agree"
    )
    assert 0.0 <= route_point("salt", "user-42") < 1.0, "the point must lie in [0, 1)"


def test_the_salt_reshuffles_which_keys_are_in_the_canary() -> None:
    a = _canary_keys(0.1, salt="aaaa")
    b = _canary_keys(0.1, salt="bbbb")
    overlap = len(a & b) / len(a)
    # Independent 10% draws overlap ~10%; the same set would overlap 100%.
    assert overlap < 0.2, f"two salts chose {overlap:.0%} the same canary keys; salt is ignored"


def test_without_a_canary_everything_goes_to_active() -> None:
    snap = Snapshot(generation=1, active="1.0.0", active_model="m")
    assert {choose(snap, f"u{i}")[0] for i in range(1000)} == {"1.0.0"}, (
        "with no canary every request must go to active"
    )
    zero = _snapshot(0.0)
    assert {choose(zero, f"u{i}")[0] for i in range(1000)} == {"1.0.0"}, (
        "a canary at ratio 0 must get no traffic"
    )


def test_keyless_requests_are_split_at_random_by_the_ratio() -> None:
    snap = _snapshot(0.2)
    rng = random.Random(1)
    share = sum(choose(snap, None, rng)[0] == "1.1.0" for _ in range(N_KEYS)) / N_KEYS
    assert abs(share - 0.2) <= 0.01, f"keyless share {share:.4f} is not the ratio 0.2"
    version, model = choose(snap, None, rng)
    assert (version, model) in {("1.0.0", "model-a"), ("1.1.0", "model-b")}, (
        "route must hand back the model loaded for the version it names"
    )
