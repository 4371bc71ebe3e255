"""The serving-fleet client: the model server, its metrics recorder and request routing.

Public names are re-exported by :mod:`modelshelf.serving`.
"""

from __future__ import annotations

from ._recorder import Recorder
from ._routing import Snapshot, choose, route_point
from ._server import Loader, ModelServer, Prediction, ServerStatus, joblib_loader

__all__ = [
    "Loader",
    "ModelServer",
    "Prediction",
    "Recorder",
    "ServerStatus",
    "Snapshot",
    "choose",
    "joblib_loader",
    "route_point",
]
