"""Sticky, monotone traffic splitting between the ``active`` and ``canary`` versions.

A request key is hashed with the model's salt to a point in ``[0, 1)``; the request goes to
the canary when that point is below the canary's ratio. The point depends only on salt and
key, so a key keeps its arm while the ratio stays put (sticky), and a key that is in the
canary at 5% is still in it at 25%, because ``p < 0.05`` implies ``p < 0.25`` (monotone).
The salt differs per model (set on the first alias change), so the same user is not always
in every model's canary.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Snapshot", "choose", "route_point"]

_SCALE = float(2**64)


def route_point(salt: str, key: str | bytes) -> float:
    """The stable point in ``[0, 1)`` that decides a key's arm.

    blake2b is used rather than ``hash()`` because the point must agree across processes,
    machines and Python versions (``hash()`` of a str is randomised per process).

    Args:
        salt: The model's routing salt (``Aliases.salt``).
        key: The request key, e.g. a user or session id.
    """
    raw = key if isinstance(key, bytes) else key.encode()
    digest = hashlib.blake2b(raw, digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Snapshot:
    """One immutable routing state; a server swaps whole snapshots, never fields.

    Attributes:
        generation: The aliases generation this state was built from.
        active: The active version.
        active_model: The loaded active model.
        canary: The canary version, or ``None``.
        canary_model: The loaded canary model, or ``None``.
        ratio: The canary's share of traffic.
        salt: The routing salt.
        etag: The etag of the aliases object this state was read from.
    """

    generation: int
    active: str
    active_model: Any = field(repr=False)
    canary: str | None = None
    canary_model: Any = field(default=None, repr=False)
    ratio: float = 0.0
    salt: str = ""
    etag: str | None = None

    def models(self) -> dict[str, Any]:
        """Loaded models by version."""
        loaded = {self.active: self.active_model}
        if self.canary is not None:
            loaded[self.canary] = self.canary_model
        return loaded


def choose(
    snapshot: Snapshot,
    key: str | bytes | None = None,
    rng: random.Random | None = None,
    *,
    point: float | None = None,
) -> tuple[str, Any]:
    """Pick the arm for one request.

    Args:
        snapshot: The routing state.
        key: A request key for sticky routing; ``None`` draws at random.
        rng: The random source for keyless requests (default: the ``random`` module).
        point: The key's route point when the caller already has it (saves a hash).

    Returns:
        ``(version, model)``.
    """
    if snapshot.canary is None or snapshot.ratio <= 0.0:
        return snapshot.active, snapshot.active_model
    if point is not None:
        pass
    elif key is None:
        point = rng.random() if rng is not None else random.random()
    else:
        point = route_point(snapshot.salt, key)
    if point < snapshot.ratio:
        return snapshot.canary, snapshot.canary_model
    return snapshot.active, snapshot.active_model
