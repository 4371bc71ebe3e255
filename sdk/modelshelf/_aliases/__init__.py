"""Aliases: the routing state, its write-ahead history, and the Registry's alias methods."""

from __future__ import annotations

from ._log import (
    apply_change,
    iter_history_newest_first,
    read_aliases,
    read_history,
    resolve_alias,
    rollback_target,
    served_at,
)
from ._ops import AliasOperations
from ._state import AliasAction, Aliases, HistoryRecord, ServedVersion, parse_aliases

__all__ = [
    "AliasAction",
    "AliasOperations",
    "Aliases",
    "HistoryRecord",
    "ServedVersion",
    "apply_change",
    "iter_history_newest_first",
    "parse_aliases",
    "read_aliases",
    "read_history",
    "resolve_alias",
    "rollback_target",
    "served_at",
]
