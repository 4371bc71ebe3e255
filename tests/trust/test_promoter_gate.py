"""The promoter's final step passes the trust policy's promote gate, or records why not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from modelshelf import Registry, TrustedKey, TrustPolicy, new_key_pair
from modelshelf_promoter import Promoter
from tests.promoter.test_promoter_run import (
    CANARY,
    MODEL,
    Clock,
    _canary_registry,
    decisions,
    now_after_start,
    set_policy,
    traffic,
)


def test_a_promotion_waits_for_its_approvals_then_happens(
    make_backend: Any, tmp_path: Path
) -> None:
    plain = _canary_registry(make_backend("local"), tmp_path)
    keys = {n: new_key_pair(tmp_path / "keys", n) for n in ("alice", "bob")}
    policy = TrustPolicy(
        keys=[TrustedKey(name=n, public_key=k.public_path.read_text()) for n, k in keys.items()],
        approvals={"promote": {"required": 2, "keys": ["alice", "bob"]}},  # type: ignore[dict-item]
    )
    registry = Registry(
        plain.store, cache_dir=tmp_path / "cache", user="promoter", trust_policy=policy
    )
    set_policy(
        registry,
        "min_requests_per_arm=100",
        "min_step_seconds=60",
        "steps=[0.05]",
        "catch_error_ratio=1000",
        "error_worse_ratio=1000",
        "latency_worse_ratio=1000",
        "beta=0.5",
    )
    clock = Clock(now_after_start(registry, 90))
    promoter = Promoter(registry, clock=clock)
    traffic(registry.store, clock.now - timedelta(seconds=5), canary=(400, 0))
    registry.approve(f"{MODEL}:{CANARY}", keys["alice"].private_path, gate="promote")

    (held,) = promoter.run([MODEL])
    assert (held.action, held.status, held.applied) == ("promote", "refused", False), held
    assert "needs 2 approvals" in held.reason and "so far: alice" in held.reason
    assert registry.aliases(MODEL).canary == CANARY, "a refused promotion changed the aliases"
    record = decisions(registry)[-1]
    assert record.outcome == "refused" and "ApprovalRequiredError" in (record.refusal or "")

    registry.approve(f"{MODEL}:{CANARY}", keys["bob"].private_path, gate="promote")
    clock.now += timedelta(seconds=30)
    traffic(registry.store, clock.now - timedelta(seconds=5), seq=4, canary=(400, 0))
    (done,) = promoter.run([MODEL])
    assert (done.action, done.applied) == ("promote", True), done
    assert registry.aliases(MODEL).active == CANARY
