"""Durations as people read them in decision reasons: ``16 s``, ``4 min 10 s``, ``24 h 5 min``."""

from __future__ import annotations

__all__ = ["duration_text"]

# No days: "24 h 5 min (max 24 h)" shows a canary past its limit, "1 d (max 1 d)" would not.
_UNITS = (("h", 3600), ("min", 60), ("s", 1))


def duration_text(seconds: float) -> str:
    """``16.2`` -> ``"16 s"``, ``250`` -> ``"4 min 10 s"``, ``87000`` -> ``"24 h 10 min"``.

    Two units at most, the larger first; whole seconds (under ten seconds, one decimal), so
    "16 s of 20 s" never reads as "0.3 min of 0.3 min".
    """
    if seconds < 0:
        return "-" + duration_text(-seconds)
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    remaining = round(seconds)
    parts: list[str] = []
    for unit, size in _UNITS:
        if remaining >= size or (unit == "s" and not parts):
            count, remaining = divmod(remaining, size)
            parts.append(f"{count} {unit}")
        elif parts:
            break  # "1 h 0 min 5 s" reads worse than "1 h"
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if not p.startswith("0 ")) or "0 s"
