"""Aliases: the routing state, its write-ahead history, and the Registry's alias methods."""

from __future__ import annotations

from ._ever import ever_aliased
from ._history import (
    find_active_change,
    iter_history_newest_first,
    newest_generation,
    parse_instant,
    read_history,
    read_record,
    read_records,
    served_at,
    served_at_search,
)
from ._log import apply_change, next_state, read_aliases, resolve_alias
from ._ops import AliasOperations
from ._state import AliasAction, Aliases, HistoryRecord, ServedVersion, parse_aliases

__all__ = [
    "AliasAction",
    "AliasOperations",
    "Aliases",
    "HistoryRecord",
    "ServedVersion",
    "apply_change",
    "ever_aliased",
    "find_active_change",
    "iter_history_newest_first",
    "newest_generation",
    "next_state",
    "parse_aliases",
    "parse_instant",
    "read_aliases",
    "read_history",
    "read_record",
    "read_records",
    "resolve_alias",
    "served_at",
    "served_at_search",
]
