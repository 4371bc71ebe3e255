"""Alias-change reasons made readable: the sentence, then its structured fields one per line.

A history record keeps ``reason`` (a sentence) and ``details`` (structured fields, such as the
promoter's numbers). Records written before ``details`` existed carry the promoter's fields as
compact JSON after ``promoter ACTION: `` in the reason; they are shown the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["split_reason"]

_LEGACY = re.compile(r"^promoter (?P<action>[a-z_]+): (?P<payload>\{.*\})\s*$", re.DOTALL)
# Fields the sentence already says, or that only name the writer.
_SKIP = {"by", "action", "why"}
_ORDER = ["ratio", "next_ratio", "canary", "active", "e_value", "decision"]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        parts = [f"{k} {_value(v)}" for k, v in value.items() if v is not None]
        return ", ".join(parts) or "-"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _lines(details: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = [k for k in _ORDER if k in details] + sorted(set(details) - set(_ORDER))
    return [(k, _value(details[k])) for k in keys if k not in _SKIP and details[k] is not None]


def split_reason(
    reason: str | None, details: Mapping[str, Any] | None
) -> tuple[str, list[tuple[str, str]]]:
    """The reason's sentence and its fields as ``(name, text)`` pairs, ready to print."""
    text = reason or ""
    if details is None:
        legacy = _LEGACY.match(text)
        if legacy is not None:
            try:
                payload = json.loads(legacy.group("payload"))
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                why = payload.get("why")
                text = f"promoter {why}" if why else f"promoter {legacy.group('action')}"
                details = payload
    return text, _lines(details) if details else []
