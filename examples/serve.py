"""Serve the iris model over HTTP, following its ``active`` / ``canary`` aliases.

Every answer names the version that produced it, so a prediction logged downstream can be
traced back to a model card. The server polls the registry in the background; promoting,
rolling back or starting a canary with the ``modelshelf`` CLI reaches it within one poll
interval, without a restart and without a failed request.

Run it from the repository root, after ``python examples/iris.py`` pushed a version and
``modelshelf alias set iris 1.0.0`` made it active::

    uvicorn examples.serve:app --host 127.0.0.1 --port 8000

    curl -s localhost:8000/predict -H 'content-type: application/json' \\
        -H 'X-Request-Key: user-42' \\
        -d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
    # {"model_version": "1.0.0", "prediction": "setosa", "probabilities": [1.0, 0.0, 0.0]}

``probabilities`` follows the model card's output schema: an array with one probability per
class, in the order of ``classes`` (the model's ``classes_``), which the answer also carries.

    curl -s localhost:8000/healthz

Settings, read when the app starts (not at import):

- ``MODELSHELF_REGISTRY``: the registry URI (default ``./.modelshelf``); for S3-compatible
  stores also ``AWS_ENDPOINT_URL_S3`` and the usual AWS credentials;
- ``MODELSHELF_MODEL``: the model name (default ``iris``);
- ``MODELSHELF_POLL_INTERVAL`` / ``MODELSHELF_FLUSH_INTERVAL``: seconds (default 10 / 60).

The optional ``X-Request-Key`` header makes routing sticky: the same key always lands on the
same arm of a canary (and stays in the canary while its share grows).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from modelshelf import Registry
from modelshelf.serving import ModelServer

__all__ = ["IrisFeatures", "PredictionResponse", "app", "create_app"]


class IrisFeatures(BaseModel):
    """One flower, measured in centimetres (the order the model was trained on)."""

    model_config = ConfigDict(extra="forbid")

    sepal_length: float = Field(ge=0, le=100, examples=[5.1])
    sepal_width: float = Field(ge=0, le=100, examples=[3.5])
    petal_length: float = Field(ge=0, le=100, examples=[1.4])
    petal_width: float = Field(ge=0, le=100, examples=[0.2])

    def row(self) -> list[list[float]]:
        """The features as the one-row matrix scikit-learn expects."""
        return [[self.sepal_length, self.sepal_width, self.petal_length, self.petal_width]]


class PredictionResponse(BaseModel):
    """A prediction and the version that made it (the card's output schema, plus the version)."""

    prediction: int | str
    probabilities: list[float] = Field(description="One per class, in the order of classes.")
    classes: list[int | str]
    model_version: str


def _plain(value: Any) -> Any:
    # numpy scalars are not JSON; .item() gives the Python int/str/float.
    return value.item() if hasattr(value, "item") else value


# scikit-learn's parallel helpers (sklearn.utils.parallel, used by every ensemble's predict)
# copy the process-wide warnings.filters list and, per task, reset and rebuild it inside
# warnings.catch_warnings(), which is not thread-safe. FastAPI runs this synchronous endpoint
# in a thread pool: two concurrent predictions then see each other's emptied filter list, and
# every request floods stderr with "sklearn.utils.parallel.delayed should be used with
# sklearn.utils.parallel.Parallel". One prediction at a time keeps the filters consistent;
# the model holds the GIL for nearly all of a prediction anyway.
_PREDICT_LOCK = threading.Lock()


def _classify(model: Any, rows: list[list[float]]) -> tuple[Any, list[float], list[Any]]:
    with _PREDICT_LOCK:
        probabilities = model.predict_proba(rows)[0]
    classes = [_plain(c) for c in getattr(model, "classes_", range(len(probabilities)))]
    # The label is the most probable class, as predict() would say, without a second pass.
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    return classes[best], [float(p) for p in probabilities], classes


def create_app(
    registry: Registry | Callable[[], Registry] | None = None,
    model: str | None = None,
    **server_options: Any,
) -> FastAPI:
    """Build the app; the registry is opened and the model loaded when the app starts.

    Args:
        registry: A registry, or a factory for one; default ``Registry()`` (which reads
            ``MODELSHELF_REGISTRY``).
        model: The model name; default ``MODELSHELF_MODEL``, else ``iris``.
        **server_options: Passed to :class:`~modelshelf.serving.ModelServer`
            (``poll_interval``, ``flush_interval``...).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(registry, Registry):
            reg = registry
        elif registry is not None:
            reg = registry()
        else:
            reg = Registry()
        name = model or os.environ.get("MODELSHELF_MODEL") or "iris"
        # start() loads the active version before the first request is accepted and raises
        # a clear error (no active alias, unreachable store) instead of serving nothing.
        # The types examples/iris.py reviewed for its skops files (joblib versions need none).
        options = {"trusted_types": ["sklearn.tree._tree.Tree"], **server_options}
        server = ModelServer(reg, name, **options).start()
        app.state.server = server
        try:
            yield
        finally:
            server.close()

    app = FastAPI(title="modelshelf iris server", lifespan=lifespan)

    @app.post("/predict", response_model=PredictionResponse)
    def predict(
        features: IrisFeatures,
        x_request_key: Annotated[str | None, Header()] = None,
    ) -> PredictionResponse:
        server: ModelServer = app.state.server
        (label, probabilities, classes), version = server.predict(
            _classify, features.row(), key=x_request_key
        )
        return PredictionResponse(
            prediction=label, probabilities=probabilities, classes=classes, model_version=version
        )

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        server: ModelServer | None = getattr(app.state, "server", None)
        if server is None:
            raise HTTPException(status_code=503, detail="starting")
        status = server.status()
        return JSONResponse(
            status_code=200 if status.ready else 503, content=status.model_dump(mode="json")
        )

    return app


app = create_app()
"""The app uvicorn serves: ``uvicorn examples.serve:app --host 127.0.0.1``."""
