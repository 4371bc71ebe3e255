"""Which metrics keys a run lists: the open windows, from the cursor on, plus one closed window.

The window is in the key (``{model}/metrics/{version}/{window}/{server}-{seq}.json``) and
window names sort in time order, so a run lists each version's prefix with ``start_after``
set to the prefix plus the oldest window it still has to look at; everything before (windows
the cursor closed, windows before the canary) is never listed again. A run that finds
nothing new therefore costs one LIST page per thousand objects in *open* windows, whatever
the age of the canary (docs/design.md, "Promotion").

Objects that turn up in a window after it closed are not merged, only reported. To see them
without listing every closed window at every run, each run also lists one closed window in
full (a prefix listing, one page for up to a thousand servers), going round the closed
windows the cursor knows in order; the caller compares the count with the one recorded when
the window closed.

This module only decides what to list; what is done with the objects (statistics, the
cursor's bookkeeping) stays in :mod:`modelshelf_promoter._reader`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelshelf import ObjectInfo, Store
from modelshelf.metrics import WINDOW_FORMAT, metrics_prefix

__all__ = ["ArmListing", "list_arm"]


@dataclass(frozen=True)
class ArmListing:
    """What one run listed under one version.

    Attributes:
        keys: Objects of the open windows (from ``start_after`` on), then those of the
            audited closed window, each part in key order.
        audited: The closed window listed in full this run, or ``None``.
    """

    keys: list[ObjectInfo]
    audited: str | None


def _window_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime(WINDOW_FORMAT)


def list_arm(
    store: Store,
    model: str,
    version: str,
    *,
    earliest: datetime,
    watermark: datetime | None,
    closed: Iterable[str],
    audited_last: str | None,
) -> ArmListing:
    """List what a run needs under one version's metrics prefix.

    Args:
        store: The registry's store.
        model: The model.
        version: The version (one arm).
        earliest: No window starting at or before this can hold requests of the canary run.
        watermark: Windows starting before this were closed by an earlier run (``None`` on
            the first run).
        closed: The closed windows the cursor knows (window key segments).
        audited_last: The closed window the previous run audited.
    """
    prefix = metrics_prefix(model, version)
    start = earliest if watermark is None or watermark < earliest else watermark
    # "prefix/W" sorts just before every key of window W: W and later windows are listed.
    keys = list(store.list(prefix, start_after=prefix + _window_text(start)))
    audited = _next_closed(sorted(closed), audited_last)
    if audited is not None:
        keys += list(store.list(f"{prefix}{audited}/"))
    return ArmListing(keys=keys, audited=audited)


def _next_closed(closed: list[str], last: str | None) -> str | None:
    if not closed:
        return None
    if last is not None:
        for window in closed:
            if window > last:
                return window
    return closed[0]
