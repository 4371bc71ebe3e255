"""The alias half of :class:`~modelshelf.Registry`: blue-green flips, canaries, rollback."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from .._card import utcnow
from .._errors import InvalidAliasesError, InvalidInputError
from .._refs import check_name, parse_version
from .._stores import Store
from ._history import (
    find_active_change,
    iter_history_newest_first,
    parse_instant,
    read_history,
    served_at_search,
)
from ._log import apply_change, read_aliases, resolve_alias
from ._state import AliasAction, Aliases, HistoryRecord, ServedVersion

__all__ = ["AliasOperations"]


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
        raise InvalidAliasesError(
            f"invalid canary ratio {ratio!r}: give the canary's share as a number in [0, 1]"
        )
    return float(ratio)


class AliasOperations:
    """Alias methods mixed into :class:`~modelshelf.Registry`.

    Every change goes through one linearizable update that first claims a history record;
    each takes an optional ``reason`` (a sentence) and ``details`` (structured fields behind
    it) that the record keeps, and an optional
    ``expect_generation``: the change applies only if the aliases are still at that
    generation (raising ``PromotionConflictError`` otherwise), so a caller that decided on
    what it read (the promoter, the UI) never acts on a state that has moved.
    """

    store: Store
    user: str
    gc_grace: float

    def aliases(self, name: str) -> Aliases:
        """The current aliases of ``name`` (all empty, generation 0, when never set)."""
        return read_aliases(self.store, check_name(name))[0]

    def history(self, name: str, *, limit: int | None = None) -> list[HistoryRecord]:
        """Alias changes of ``name``, oldest first: every one, or the newest ``limit``.

        Records are read by generation number in parallel, so ``limit=10`` costs about a
        dozen requests however long the history is.
        """
        if limit is not None and limit < 1:
            raise InvalidInputError(f"limit must be 1 or more, not {limit}")
        return read_history(self.store, name, limit=limit)

    def iter_history(self, name: str, *, newest_first: bool = True) -> Iterator[HistoryRecord]:
        """Alias changes of ``name`` read lazily, newest first by default.

        For callers that usually stop after a few records (finding when a canary step
        started, the version to roll back to).
        """
        if newest_first:
            return iter_history_newest_first(self.store, name)
        return iter(read_history(self.store, name))

    def set_active(
        self,
        name: str,
        version: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Point ``active`` at ``version`` (a blue-green flip); any canary is dropped.

        Raises:
            InvalidAliasesError: ``version`` is not committed.
        """
        parse_version(version)

        def change(current: Aliases) -> dict[str, Any]:
            return {"active": version, "canary": None, "ratio": 0.0, "canary_started_at": None}

        return self._apply(name, "set_active", change, reason, details, expect_generation)

    def start_canary(
        self,
        name: str,
        version: str,
        ratio: float,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        allow_major: bool = False,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Send ``ratio`` of traffic to ``version`` beside the active one.

        Raises:
            InvalidAliasesError: No active version, the same version, another MAJOR without
                ``allow_major``, or a ratio outside [0, 1].
        """
        parse_version(version)
        share = _check_ratio(ratio)

        def change(current: Aliases) -> dict[str, Any]:
            if current.active is None:
                raise InvalidAliasesError(
                    f"cannot start a canary of {name!r}: no active version yet "
                    f"(run 'modelshelf alias set {name} VERSION' first)"
                )
            return {"canary": version, "ratio": share, "canary_started_at": utcnow()}

        return self._apply(
            name,
            "start_canary",
            change,
            reason,
            details,
            expect_generation,
            allow_major=allow_major,
        )

    def set_ratio(
        self,
        name: str,
        ratio: float,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Change the canary's share of traffic.

        Raises:
            InvalidAliasesError: No canary is running, or the ratio is outside [0, 1].
        """
        share = _check_ratio(ratio)

        def change(current: Aliases) -> dict[str, Any]:
            if current.canary is None:
                raise InvalidAliasesError(f"cannot set a ratio: {name!r} has no canary")
            return {"ratio": share}

        return self._apply(
            name, "set_ratio", change, reason, details, expect_generation, allow_major=True
        )

    def promote(
        self,
        name: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Make the canary the active version (ratio back to 0).

        Raises:
            InvalidAliasesError: No canary is running.
        """

        def change(current: Aliases) -> dict[str, Any]:
            if current.canary is None:
                raise InvalidAliasesError(f"cannot promote: {name!r} has no canary")
            return {
                "active": current.canary,
                "canary": None,
                "ratio": 0.0,
                "canary_started_at": None,
            }

        return self._apply(
            name, "promote", change, reason, details, expect_generation, allow_major=True
        )

    def abort_canary(
        self,
        name: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Stop the canary; all traffic returns to the active version.

        Raises:
            InvalidAliasesError: No canary is running.
        """

        def change(current: Aliases) -> dict[str, Any]:
            if current.canary is None:
                raise InvalidAliasesError(f"cannot abort: {name!r} has no canary")
            return {"canary": None, "ratio": 0.0, "canary_started_at": None}

        return self._apply(name, "abort_canary", change, reason, details, expect_generation)

    def rollback(
        self,
        name: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
    ) -> Aliases:
        """Return ``active`` to the version that was active before it, in one call.

        Any canary is dropped. Rolling back twice returns to where you started.

        Raises:
            InvalidAliasesError: Nothing was active before.
        """

        def change(current: Aliases) -> dict[str, Any]:
            took_over = find_active_change(self.store, name, current)
            before = took_over.previous.active if took_over and took_over.previous else None
            if before is None:
                raise InvalidAliasesError(
                    f"nothing to roll back to: {current.active} is the first active version"
                )
            return {"active": before, "canary": None, "ratio": 0.0, "canary_started_at": None}

        return self._apply(
            name, "rollback", change, reason, details, expect_generation, allow_major=True
        )

    def served_at(
        self, name: str, when: datetime | str, *, grace: timedelta = timedelta(seconds=60)
    ) -> list[ServedVersion]:
        """Which versions could have served a prediction at ``when``.

        Args:
            name: The model.
            when: The instant: a datetime, an ISO 8601 string such as
                ``"2026-05-04T10:15:00Z"``, or ``"now"`` (naive or offset-less means UTC).
            grace: How long a server may keep serving a replaced state (poll interval plus
                load time); the default suits the serving client's defaults.

        Raises:
            InvalidInputError: ``when`` is neither a datetime, ISO 8601 nor ``"now"``.
        """
        instant = parse_instant(when)  # bad input is refused before the history is read
        return served_at_search(self.store, check_name(name), instant, grace)

    def resolve_alias(self, name: str, alias: str) -> str:
        """The version ``alias`` (``active`` or ``canary``) of ``name`` points at.

        Raises:
            AliasNotSetError: The alias points at nothing.
        """
        return resolve_alias(self.store, name, alias)

    def apply_alias_change(
        self,
        name: str,
        action: AliasAction,
        change: Callable[[Aliases], dict[str, Any]],
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        expect_generation: int | None = None,
        allow_major: bool = False,
    ) -> HistoryRecord:
        """Apply a custom alias change through the same linearizable update; returns its record.

        ``change`` gets the current state and returns the fields to update (it may raise
        ``InvalidAliasesError`` to refuse, and may be called again if another writer wins).
        The named methods above are built on this.
        """
        return apply_change(
            self.store,
            name,
            action,
            change,
            user=self.user,
            reason=reason,
            details=details,
            allow_major=allow_major,
            expect_generation=expect_generation,
            gc_grace=self.gc_grace,
        )

    def _apply(
        self,
        name: str,
        action: AliasAction,
        change: Callable[[Aliases], dict[str, Any]],
        reason: str | None,
        details: Mapping[str, Any] | None,
        expect_generation: int | None,
        *,
        allow_major: bool = False,
    ) -> Aliases:
        record = self.apply_alias_change(
            name,
            action,
            change,
            reason=reason,
            details=details,
            expect_generation=expect_generation,
            allow_major=allow_major,
        )
        return record.state
