"""The serving-fleet client: follow a model's aliases, route requests, record metrics.

Example::

    from modelshelf import Registry
    from modelshelf.serving import ModelServer

    with ModelServer(Registry("s3://models/prod"), "iris", poll_interval=5) as server:
        label, version = server.predict("predict", [[5.1, 3.5, 1.4, 0.2]], key="user-42")

See :class:`ModelServer` for the guarantees: a new version is downloaded, verified and loaded
before any request goes to it; storage faults never reach a request; every prediction can
carry the version that served it; metrics are flushed as mergeable summaries the promoter
reads.
"""

from __future__ import annotations

from ._serving import (
    Loader,
    ModelServer,
    Prediction,
    ServerStatus,
    Snapshot,
    joblib_loader,
    route_point,
)

__all__ = [
    "Loader",
    "ModelServer",
    "Prediction",
    "ServerStatus",
    "Snapshot",
    "joblib_loader",
    "route_point",
]
