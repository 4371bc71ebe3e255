"""The promoter's clock."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    """Now, in UTC, to the microsecond (the clock every promoter record is stamped with)."""
    return datetime.now(UTC)
