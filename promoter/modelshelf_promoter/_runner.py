"""One promoter run: for each model with a canary, read, judge, apply, record.

For one model a run

1. reads ``aliases.json``; without a canary it stops there (``no_canary``);
2. loads the policy from ``{model}/promoter/policy.json`` (the defaults when there is none);
3. finds when the canary and its current step started (``canary_started_at`` in the
   aliases, the step's start from the alias history, cached in the state per generation);
4. merges the metrics that arrived since the last run into the state's statistics
   (:mod:`modelshelf_promoter._reader`);
5. asks :func:`~modelshelf_promoter._judge.judge` for a decision;
6. applies it through the registry's linearizable alias update, *conditionally on the
   aliases still being at the generation the judge looked at*;
7. writes the decision with all its statistics to
   ``{model}/promoter/decisions/{timestamp}-{generation}.json`` (create-if-absent), then
   the state with If-Match.

Decisions and registry calls
----------------------------
========== ================================================================================
judge      alias change (history action)
========== ================================================================================
advance    ``set_ratio`` to the next step
promote    ``promote``: the canary becomes active, ratio 0
rollback   ``abort_canary``: the canary is rolled back, all traffic to active; active is
           untouched. (The registry's ``rollback`` returns *active* to the version active
           before it, which is not what a failed canary calls for: the canary never was
           active.) The history record's reason starts with ``promoter rollback``.
abort      ``abort_canary`` as well (the canary ran out of time undecided)
hold       nothing
========== ================================================================================

The ``reason`` of every alias change is one sentence (``promoter`` and the judge's reason);
its ``details`` hold the action, the ratio before and after, both arms' requests/errors/p99,
the error test's e-value, and the key of the decision record holding everything else.

Overlapping runs
----------------
Two runs (a slow Lambda invocation and the next scheduled one, or a cron job and an
operator) may judge the same generation. The alias change is made through
the registry's named transitions (``set_ratio``, ``promote``, ``abort_canary``) with
``expect_generation=`` the generation the judge looked at: the registry refuses, with
:class:`~modelshelf.PromotionConflictError`, unless the aliases are still at that generation,
checking again after losing the race for the next history record, so exactly one of the two
runs changes the aliases; the other reports ``conflict`` (its decision record says so) and
changes nothing. A manual change made meanwhile (an operator aborting the
canary) wins the same way. The state is swapped with If-Match, so the loser's read is
dropped, never merged twice.

A crash between the alias change and the decision record leaves the change in the history
with its reason (which names the decision key that is missing); the next run judges afresh.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelshelf import (
    CREATE,
    OVERWRITE,
    Aliases,
    IfMatch,
    KeyNotFoundError,
    ModelNotFoundError,
    ModelshelfError,
    PreconditionFailedError,
    PromotionConflictError,
    Registry,
    Store,
    TrustError,
    canonical_json,
    check_name,
    layout,
)
from modelshelf.metrics import ArmStats

from ._judge import Action, Decision, judge
from ._policy import (
    PromotionPolicy,
    apply_settings,
    default_policy,
    policy_from_json,
    policy_key,
    policy_to_json,
    step_index_for,
)
from ._reader import (
    DEFAULT_LATENESS_SECONDS,
    DEFAULT_MAX_WORKERS,
    CanaryCursor,
    PromoterState,
    ReadReport,
    canary_seen_recently,
    cursor_route_buckets,
    cursor_windows,
    load_state,
    read_metrics,
    save_state,
)
from ._time import utcnow

__all__ = [
    "DecisionRecord",
    "ModelRun",
    "Promoter",
    "decision_prefix",
    "load_policy",
    "models_with_canary",
    "update_policy",
]

logger = logging.getLogger("modelshelf.promoter")

Status = Literal["no_canary", "decided", "conflict", "refused", "error"]
_ALIAS_ACTION: dict[str, Literal["set_ratio", "promote", "abort_canary"]] = {
    "advance": "set_ratio",
    "promote": "promote",
    "rollback": "abort_canary",
    "abort": "abort_canary",
}
_TIMESTAMP = "%Y%m%dT%H%M%S%fZ"


def decision_prefix(model: str) -> str:
    """Key prefix of a model's decision records."""
    return layout.decision_prefix(check_name(model))


class ModelRun(BaseModel):
    """What one run did for one model: the JSON-ready summary the handler returns.

    Attributes:
        status: ``no_canary`` (nothing to judge), ``decided`` (the decision was applied or
            needed no change), ``conflict`` (another writer moved the aliases first; nothing
            changed), ``refused`` (the trust policy refused the change, e.g. a promotion
            that lacks its signed approvals; nothing changed, the next run tries again) or
            ``error`` (see ``error``).
        action: The judge's decision, when one was made.
        applied: Whether an alias change was made.
        generation: The aliases generation judged; ``new_generation`` the one written.
        decision_key: Where the decision record with all statistics was written.
        read: What the incremental metrics read did (objects fetched, corrupt, late...).
        policy_source: ``stored`` or ``default``.
        dry_run: The run judged and wrote nothing (``decision`` then holds the judgement).
        decision: The judge's full decision, in a dry run.
        report_key: Where the model's report was written (policy ``write_report``).
        report_error: Why the report could not be written (the decision stands).
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    status: Status
    action: Action | None = None
    applied: bool = False
    reason: str
    generation: int | None = None
    new_generation: int | None = None
    active: str | None = None
    canary: str | None = None
    ratio: float | None = None
    next_ratio: float | None = None
    canary_requests: int | None = None
    active_requests: int | None = None
    decision_key: str | None = None
    policy_source: Literal["stored", "default"] | None = None
    read: ReadReport | None = None
    state_saved: bool | None = None
    state_problem: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int | None = None
    seconds: float = 0.0
    dry_run: bool = False
    decision: Decision | None = None
    report_key: str | None = None
    report_error: str | None = None


class DecisionRecord(BaseModel):
    """``{model}/promoter/decisions/{timestamp}-{generation}.json``: a decision and its data."""

    model_config = ConfigDict(extra="forbid")

    model: str
    generation: int
    active: str
    canary: str
    decision: Decision
    outcome: Literal["applied", "no_change", "conflict", "refused"]
    alias_action: str | None = None
    new_generation: int | None = None
    conflict: str | None = None
    refusal: str | None = None
    policy_source: Literal["stored", "default"]
    read: ReadReport
    active_stats: ArmStats
    canary_stats: ArmStats
    decided_by: str
    written_at: datetime = Field(default_factory=utcnow)

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys)."""
        return canonical_json(self.model_dump(mode="json"))


def load_policy(store: Store, model: str) -> tuple[PromotionPolicy, str | None]:
    """The model's stored policy and its etag, or the defaults and ``None``.

    Raises:
        InvalidPolicyError: The stored policy does not validate.
    """
    key = policy_key(model)
    try:
        obj = store.get(key)
    except KeyNotFoundError:
        return default_policy(), None
    assert obj is not None
    return policy_from_json(obj.data, f"{store.uri}/{key}"), obj.etag


def update_policy(
    store: Store, model: str, settings: Iterable[str], *, attempts: int = 5
) -> PromotionPolicy:
    """Apply ``FIELD=VALUE`` settings to the stored (or default) policy and store it.

    The write is conditional (create-if-absent, else If-Match), retried when another
    writer changed the policy in between so that no setting is lost.

    Raises:
        InvalidPolicyError: A bad setting; nothing is written.
        PreconditionFailedError: The policy kept changing under us.
    """
    settings = list(settings)
    for _ in range(attempts):
        current, etag = load_policy(store, model)
        updated = apply_settings(current, settings)
        try:
            store.put(
                policy_key(model),
                policy_to_json(updated),
                mode=CREATE if etag is None else IfMatch(etag),
            )
        except PreconditionFailedError:
            continue
        return updated
    raise PreconditionFailedError(
        f"the policy of {model!r} changed {attempts} times while it was being updated; retry"
    )


def models_with_canary(registry: Registry) -> list[str]:
    """Names of the models whose aliases name a canary, sorted.

    A model whose aliases cannot be read (a corrupt or hand-edited object, a store error)
    is included, so that its run reports the problem instead of stopping every other
    model's run.
    """
    found = []
    for name in registry.models():
        try:
            if registry.aliases(name).canary is None:
                continue
        except ModelshelfError as exc:
            logger.warning("cannot read the aliases of %s: %s", name, exc)
        found.append(name)
    return found


def _compact(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


class Promoter:
    """Runs the promoter over a registry.

    Args:
        registry: The registry (its ``user`` is recorded on every alias change).
        clock: Returns the current time (aware UTC); default the system clock. Tests and
            simulations pass their own.
        max_workers: Parallel GETs of metrics objects.
        lateness_seconds: How long a metrics window stays open to late objects.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        clock: Callable[[], datetime] | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        lateness_seconds: float = DEFAULT_LATENESS_SECONDS,
    ) -> None:
        self.registry = registry
        self.clock = clock or utcnow
        self.max_workers = max_workers
        self.lateness_seconds = lateness_seconds

    @property
    def store(self) -> Store:
        """The registry's store."""
        return self.registry.store

    def run(self, models: Iterable[str] | None = None, *, dry_run: bool = False) -> list[ModelRun]:
        """Judge each model named (or every model with a canary), one after the other.

        A failure on one model is reported in its :class:`ModelRun` (``status="error"``)
        and does not stop the others. With ``dry_run`` nothing is written: see
        :meth:`run_model`.

        Raises:
            InvalidNameError: A name that is not a model name (before anything runs).
        """
        names = (
            models_with_canary(self.registry)
            if models is None
            else list(dict.fromkeys(check_name(m) for m in models))
        )
        return [self.run_model(name, dry_run=dry_run) for name in names]

    def run_model(self, name: str, *, dry_run: bool = False) -> ModelRun:
        """One promoter look at one model; never raises for store or data problems.

        Args:
            name: The model.
            dry_run: Judge exactly as a run would (from the stored cursor plus the metrics
                that arrived since) and return the decision in ``ModelRun.decision``, but
                write nothing: no alias change, no decision record, no state, no report.
        """
        began = time.monotonic()
        check_name(name)
        try:
            result = self._run_model(name, dry_run)
        except ModelshelfError as exc:
            result = ModelRun(
                model=name,
                status="error",
                reason=f"error: {exc}",
                error=str(exc),
                error_type=type(exc).__name__,
                exit_code=exc.exit_code,
            )
        except Exception as exc:  # a bug for one model must not stop the others
            logger.exception("promoter run of %s failed unexpectedly", name)
            result = ModelRun(
                model=name,
                status="error",
                reason=f"error: {type(exc).__name__}: {exc}",
                error=f"{type(exc).__name__}: {exc}",
                error_type=type(exc).__name__,
                exit_code=1,
            )
        result.seconds = round(time.monotonic() - began, 4)
        _log(result)
        return result

    # -- one model -------------------------------------------------------------------------

    def _run_model(self, name: str, dry_run: bool) -> ModelRun:
        store = self.store
        aliases = self.registry.aliases(name)
        if aliases.canary is None or aliases.active is None:
            if aliases.generation == 0 and not self.registry.versions(name):
                raise ModelNotFoundError(f"model {name!r} has no versions in {store.uri}")
            return ModelRun(
                model=name,
                status="no_canary",
                reason="no canary running: nothing to judge",
                generation=aliases.generation,
                active=aliases.active,
            )
        now = self._now()
        policy, policy_etag = load_policy(store, name)
        state, state_etag, state_problem = load_state(store, name)
        started, step_started = self._timeline(name, aliases, state)
        cursor = state.cursor if state is not None else None
        if cursor is None or not cursor.matches(aliases.active, aliases.canary, started):
            cursor = CanaryCursor.fresh(aliases.active, aliases.canary, started)
        cursor, report = read_metrics(
            store,
            name,
            cursor,
            now=now,
            lateness_seconds=self.lateness_seconds,
            max_workers=self.max_workers,
            tolerances={"p95": policy.latency_p95_ratio, "p99": policy.latency_p99_ratio},
            server_requests_factor=policy.server_requests_factor,
            max_server_requests_per_second=policy.max_server_requests_per_second,
        )
        cursor.generation = aliases.generation
        cursor.step_started_at = step_started
        active_stats = cursor.arms["active"].stats
        canary_stats = cursor.arms["canary"].stats
        decision = judge(
            policy,
            step_index=step_index_for(policy, aliases.ratio),
            ratio=aliases.ratio,
            canary_started_at=started,
            step_started_at=step_started,
            now=now,
            active=active_stats,
            canary=canary_stats,
            canary_seen_in_last_window=canary_seen_recently(cursor, now),
            windows=cursor_windows(cursor),
            route_buckets=cursor_route_buckets(cursor),
            servers=report.servers,
        )
        key = self._decision_key(name, now, aliases.generation)
        policy_source: Literal["stored", "default"] = "stored" if policy_etag else "default"
        if dry_run:
            return ModelRun(
                model=name,
                status="decided",
                action=decision.action,
                reason=decision.reason,
                generation=aliases.generation,
                active=aliases.active,
                canary=aliases.canary,
                ratio=aliases.ratio,
                next_ratio=decision.next_ratio,
                canary_requests=canary_stats.count,
                active_requests=active_stats.count,
                policy_source=policy_source,
                read=report,
                state_problem=state_problem,
                dry_run=True,
                decision=decision,
            )

        outcome: Literal["applied", "no_change", "conflict", "refused"] = "no_change"
        alias_action = _ALIAS_ACTION.get(decision.action)
        applied: Aliases | None = None
        conflict: str | None = None
        refusal: str | None = None
        if alias_action is not None:
            try:
                applied = self._apply(name, aliases, decision, alias_action, key)
                outcome = "applied"
            except PromotionConflictError as exc:
                outcome, conflict = "conflict", str(exc)
            except TrustError as exc:
                # The trust policy's gate (a signature, approvals) is not met yet: nothing
                # changed; the record says why and the next run decides again.
                outcome, refusal = "refused", f"{type(exc).__name__}: {exc}"

        if applied is not None and alias_action == "set_ratio":
            # The next run then finds the new step's start without reading the history.
            cursor.generation, cursor.step_started_at = applied.generation, applied.updated_at

        decision_record = DecisionRecord(
            model=name,
            generation=aliases.generation,
            active=aliases.active,
            canary=aliases.canary,
            decision=decision,
            outcome=outcome,
            alias_action=alias_action,
            new_generation=applied.generation if applied else None,
            conflict=conflict,
            refusal=refusal,
            policy_source=policy_source,
            read=report,
            active_stats=active_stats,
            canary_stats=canary_stats,
            decided_by=self.registry.user,
        )
        key = self._write_decision(key, decision_record)
        saved = save_state(
            store,
            name,
            PromoterState(model=name, cursor=cursor, updated_by=self.registry.user),
            state_etag,
        )
        report_key, report_error = self._write_report(name) if policy.write_report else (None, None)
        return ModelRun(
            model=name,
            status=(
                "conflict"
                if outcome == "conflict"
                else "refused"
                if outcome == "refused"
                else "decided"
            ),
            action=decision.action,
            applied=outcome == "applied",
            reason=(
                f"{decision.reason} [{conflict or refusal}]"
                if conflict or refusal
                else decision.reason
            ),
            generation=aliases.generation,
            new_generation=applied.generation if applied else None,
            active=aliases.active,
            canary=aliases.canary,
            ratio=aliases.ratio,
            next_ratio=decision.next_ratio,
            canary_requests=canary_stats.count,
            active_requests=active_stats.count,
            decision_key=key,
            policy_source=policy_source,
            read=report,
            state_saved=saved,
            state_problem=state_problem,
            report_key=report_key,
            report_error=report_error,
        )

    def _write_report(self, name: str) -> tuple[str | None, str | None]:
        """Replace ``{model}/report.html``; a failure is reported, never fatal to the run."""
        key = layout.report_key(name)
        try:
            from modelshelf.views import build_report

            html = build_report(self.registry, name, now=self._now())
            self.store.put(key, html.encode("utf-8"), mode=OVERWRITE)
        except ModelshelfError as exc:
            return None, f"report not written: {exc}"
        return key, None

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the promoter's clock must return aware (UTC) datetimes")
        return now.astimezone(UTC)

    def _timeline(
        self, name: str, aliases: Aliases, state: PromoterState | None
    ) -> tuple[datetime, datetime]:
        """When the canary started and when its current step (ratio) started."""
        cursor = state.cursor if state is not None else None
        if (
            cursor is not None
            and cursor.generation == aliases.generation
            and cursor.step_started_at is not None
            and aliases.canary_started_at is not None
            and cursor.matches(str(aliases.active), str(aliases.canary), aliases.canary_started_at)
        ):
            return aliases.canary_started_at, cursor.step_started_at
        step_started: datetime | None = None
        earliest: datetime | None = None
        same_step = True
        for record in self.registry.iter_history(name, newest_first=True):
            seen = record.state
            if (
                seen.canary != aliases.canary
                or seen.active != aliases.active
                or seen.canary_started_at != aliases.canary_started_at
            ):
                break
            earliest = record.when
            if same_step and seen.ratio == aliases.ratio:
                step_started = record.when
            else:
                same_step = False
            if aliases.canary_started_at is not None and not same_step:
                break  # both answers known
        started = aliases.canary_started_at or earliest or aliases.updated_at or self._now()
        return started, step_started or aliases.updated_at or started

    def _decision_key(self, name: str, now: datetime, generation: int) -> str:
        return f"{decision_prefix(name)}{now.strftime(_TIMESTAMP)}-{generation:012d}.json"

    def _write_decision(self, key: str, record: DecisionRecord) -> str:
        data = record.to_json()
        for attempt in range(5):
            target = key if attempt == 0 else key.replace(".json", f"-{secrets.token_hex(3)}.json")
            try:
                self.store.put(target, data, mode=CREATE)
                return target
            except PreconditionFailedError:
                continue  # an overlapping run decided at the same instant; keep both
        raise PreconditionFailedError(f"could not find a free decision key near {key}")

    def _apply(
        self,
        name: str,
        judged: Aliases,
        decision: Decision,
        alias_action: Literal["set_ratio", "promote", "abort_canary"],
        decision_key: str,
    ) -> Aliases:
        """Apply the decision only if the aliases are still what the judge looked at."""
        reason = f"promoter {decision.reason}"
        details = _details(decision, decision_key)
        expected = judged.generation
        if alias_action == "set_ratio":
            assert decision.next_ratio is not None
            return self.registry.set_ratio(
                name,
                decision.next_ratio,
                reason=reason,
                details=details,
                expect_generation=expected,
            )
        if alias_action == "promote":
            return self.registry.promote(
                name, reason=reason, details=details, expect_generation=expected
            )
        return self.registry.abort_canary(
            name, reason=reason, details=details, expect_generation=expected
        )


def _details(decision: Decision, decision_key: str) -> dict[str, Any]:
    """The alias history record's structured fields: the key numbers behind the reason."""
    return {
        "by": "modelshelf-promoter",
        "action": decision.action,
        "why": decision.reason,
        "ratio": decision.ratio,
        "next_ratio": decision.next_ratio,
        "canary": {
            "requests": decision.canary.requests,
            "errors": decision.canary.errors,
            "p99_ms": _compact(decision.canary.p99_ms),
        },
        "active": {
            "requests": decision.active.requests,
            "errors": decision.active.errors,
            "p99_ms": _compact(decision.active.p99_ms),
        },
        "e_value": _compact(decision.errors.e_value),
        "p_value": _compact(decision.errors.p_value),
        "inconclusive": decision.inconclusive,
        "left_out": decision.excluded_servers,
        "decision": decision_key,
    }


def _log(result: ModelRun) -> None:
    """One structured line per model and run."""
    fields: dict[str, Any] = {
        "event": "promoter_decision",
        "model": result.model,
        "status": result.status,
        "action": result.action,
        "applied": result.applied,
        "generation": result.generation,
        "new_generation": result.new_generation,
        "ratio": result.ratio,
        "next_ratio": result.next_ratio,
        "canary_requests": result.canary_requests,
        "active_requests": result.active_requests,
        "decision_key": result.decision_key,
        "reason": result.reason,
        "seconds": result.seconds,
    }
    if result.dry_run:
        fields["dry_run"] = True
    if result.read is not None:
        fields["objects_fetched"] = result.read.fetched
        fields["corrupt"] = [c.key for c in result.read.corrupt]
        fields["late_ignored"] = result.read.late_ignored
    if result.error is not None:
        fields["error"] = result.error
    line = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    logger.log(logging.ERROR if result.status == "error" else logging.INFO, line)
