"""The serving-fleet client: poll the aliases, load before switching, route, record.

A :class:`ModelServer` holds one immutable :class:`~modelshelf.serving.Snapshot` (active
and canary versions with their loaded models, ratio, salt, generation). Requests read that
one reference and never touch storage. A daemon watcher thread polls ``aliases.json`` with
a conditional GET (304 while unchanged, so an idle fleet moves almost no bytes); when the
object changes it downloads, verifies and loads every new version through the registry's
blob cache first, and only then replaces the snapshot with one reference assignment
(docs/design.md, invariant 4). Storage faults, an aliases object that does not validate, a
version that does not exist, a blob that fails its sha256 and a version the trust policy
refuses (unsigned, untrusted, tampered, or pickle where pickle is forbidden) all leave the
last good snapshot in place; each distinct failure is logged once and the watcher backs off.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from pydantic import BaseModel

from .._aliases import Aliases, parse_aliases
from .._card import ModelVersion, utcnow
from .._errors import (
    AliasNotSetError,
    ConfigurationError,
    InvalidAliasesError,
    KeyNotFoundError,
    PickleNotAllowedError,
)
from .._loaders import LoadOptions, choose_loader
from .._refs import check_name
from .._registry import Registry
from .._settings import parse_float, parse_text, setting
from .._trust import TrustPolicy
from .._versions import joblib_entry
from ..layout import aliases_key
from ._recorder import Recorder
from ._routing import Snapshot, choose, route_point

__all__ = [
    "Loader",
    "ModelServer",
    "Prediction",
    "ServerStatus",
    "joblib_loader",
]

logger = logging.getLogger("modelshelf.serving")

Loader = Callable[[ModelVersion, Mapping[str, Path]], Any]
"""Turns a verified version into a model: gets the manifest and ``{file path: local path}``."""

_MAX_BACKOFF = 8  # the slowest poll under persistent failure is 8 x the interval
_JITTER = 0.2


def joblib_loader(manifest: ModelVersion, files: Mapping[str, Path]) -> Any:
    """The default loader: ``joblib.load`` of the version's single ``.joblib``/``.pkl`` file.

    Raises:
        SourceError: The version holds no such file, or several.
    """
    entry = joblib_entry(manifest)
    import joblib

    return joblib.load(files[entry.path])


class Prediction(NamedTuple):
    """What :meth:`ModelServer.predict` returns: the result and the version that made it."""

    result: Any
    version: str


class ServerStatus(BaseModel):
    """What a serving process is doing right now (for health endpoints and logs).

    Attributes:
        ready: A state is loaded and requests can be served.
        generation: The aliases generation being served (``None`` before the first load).
        active / canary / ratio: The versions being served and the canary's share.
        last_poll: When the aliases were last polled (successfully or not).
        last_change: When a new state was last installed.
        last_load_seconds: Time the last switch spent fetching and loading new versions.
        last_error: The most recent poll failure (kept after recovery, for diagnosis).
        consecutive_failures: Polls failed in a row; 0 when the last poll worked.
        polls / unchanged_polls: Polls made, and how many were answered "not modified".
        pending_metrics: Recorded requests whose metric writes failed and await a retry.
    """

    model: str
    server_id: str
    ready: bool
    generation: int | None
    active: str | None
    canary: str | None
    ratio: float
    last_poll: datetime | None
    last_change: datetime | None
    last_load_seconds: float | None
    last_error: str | None
    consecutive_failures: int
    polls: int
    unchanged_polls: int
    pending_metrics: int


def _default_server_id() -> str:
    allowed = string.ascii_letters + string.digits + "-_."
    host = "".join(c if c in allowed else "-" for c in socket.gethostname())[:48]
    if not host or not host[0].isalnum():
        host = f"host{host}"
    # The random tail keeps a restarted process (same host, maybe same pid) from reusing
    # the metric keys of its predecessor.
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ModelServer:
    """Serve the ``active`` and ``canary`` versions of one model, following its aliases.

    Args:
        registry: The registry to read from (its blob cache holds the downloads).
        name: The model name.
        poll_interval: Seconds between polls of ``aliases.json`` (+-20% jitter); default
            ``MODELSHELF_POLL_INTERVAL``, else 10.
        flush_interval: Seconds between metric flushes; default ``MODELSHELF_FLUSH_INTERVAL``,
            else 60.
        server_id: Names this process in metric keys; default ``MODELSHELF_SERVER_ID``, else
            ``host-pid-random``.
        loader: Builds a model from a verified version (see :data:`Loader`); default: the
            loader registry, which picks skops, ONNX, safetensors or (when the trust policy
            allows pickle) joblib from the version's files or its card's ``loader``.
        metrics_window: Seconds per metrics window (the time bucket of a summary).
        trusted_types: Types a skops file may hold beyond skops' safe defaults (your
            decision, never the file's).

    Every version is checked against the registry's trust policy (with ``serve``) before
    its first byte is downloaded, and again at every switch.

    Example::

        with ModelServer(Registry("s3://models/prod"), "iris", poll_interval=5) as server:
            label, version = server.predict("predict", [[5.1, 3.5, 1.4, 0.2]], key=user_id)
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        *,
        poll_interval: float | None = None,
        flush_interval: float | None = None,
        server_id: str | None = None,
        loader: Loader | None = None,
        metrics_window: int = 60,
        trusted_types: Sequence[str] = (),
    ) -> None:
        self.registry = registry
        self.name = check_name(name)
        self.poll_interval = float(
            setting(poll_interval, "MODELSHELF_POLL_INTERVAL", 10.0, parse_float)
        )
        self.flush_interval = float(
            setting(flush_interval, "MODELSHELF_FLUSH_INTERVAL", 60.0, parse_float)
        )
        if self.poll_interval <= 0 or self.flush_interval <= 0:
            raise ConfigurationError("poll_interval and flush_interval must be positive")
        self.server_id: str = (
            setting(server_id, "MODELSHELF_SERVER_ID", None, parse_text) or _default_server_id()
        )
        self._loader: Loader | None = loader
        self.trusted_types = tuple(trusted_types)
        self.recorder = Recorder(
            registry.store, self.name, self.server_id, window_seconds=metrics_window
        )
        self._snapshot: Snapshot | None = None
        self._seen_etag: str | None = None  # etag of the last aliases object dealt with
        self._seen_bad: Exception | None = None  # why that object was refused, if it was
        self._poll_lock = threading.Lock()
        # Guards what status() reads together: the snapshot and the poll bookkeeping.
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rng = random.Random()
        self._started = False
        self._closed = False
        # status
        self._failures = 0
        self._logged_failures: set[tuple[str, str]] = set()
        self._last_error: str | None = None
        self._last_poll: datetime | None = None
        self._last_change: datetime | None = None
        self._last_load: float | None = None
        self._polls = 0
        self._unchanged = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> ModelServer:
        """Load the current state, then start the watcher and flusher threads.

        Args:
            wait: Load synchronously and raise when that fails (the default). With
                ``wait=False`` the first load happens in the background; :meth:`route`
                raises ``AliasNotSetError`` until it succeeds (see :attr:`ready`).

        Raises:
            AliasNotSetError: The model has no active version yet.
            InvalidAliasesError / StoreError / IntegrityError: The first load failed.
        """
        if self._closed:
            raise ConfigurationError("this ModelServer was closed; create a new one")
        if self._started:
            return self
        if wait:
            self.refresh()
        self._started = True
        for target, label in ((self._watch, "poll"), (self._flush_loop, "flush")):
            thread = threading.Thread(
                target=target, name=f"modelshelf-{label}-{self.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop the threads and flush the metrics recorded so far.

        A flush that fails here is logged with what it could not write (the counts stay in
        memory on this object; a later :meth:`flush` may still write them).
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self.flush()
        pending = self.recorder.pending_requests()
        if pending:
            logger.error(
                "%s: closing with %d recorded requests not written to %s; the store kept "
                "failing (see the previous errors)",
                self.name,
                pending,
                self.registry.uri,
            )

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the request path: no storage, no locks beyond the recorder's ------------------

    @property
    def ready(self) -> bool:
        """Whether a state is loaded and requests can be served."""
        return self._snapshot is not None

    @property
    def snapshot(self) -> Snapshot | None:
        """The routing state in use (one immutable object)."""
        return self._snapshot

    def route(self, key: str | bytes | None = None) -> tuple[str, Any]:
        """Pick the version for one request.

        Args:
            key: A request key (user, session...) for sticky routing; ``None`` is random.

        Returns:
            ``(version, model)``.

        Raises:
            AliasNotSetError: Nothing was loaded yet (only after ``start(wait=False)``).
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise AliasNotSetError(
                f"{self.name}: no version loaded yet ({self._last_error or 'still loading'})"
            )
        return choose(snapshot, key, self._rng)

    def record(
        self,
        version: str,
        latency_ms: float,
        error: bool = False,
        *,
        route_point: float | None = None,
        ratio: float | None = None,
    ) -> None:
        """Count one request served by ``version`` (thread-safe, in memory).

        ``route_point`` (of a keyed request, see :func:`~modelshelf.serving.route_point`)
        and ``ratio`` (the canary ratio it was routed with) let the promoter check routing
        and bound what one client's errors do; :meth:`predict` passes both.
        """
        self.recorder.record(version, latency_ms, error, route_point=route_point, ratio=ratio)

    def predict(
        self,
        method: str | Callable[..., Any],
        *args: Any,
        key: str | bytes | None = None,
        **kwargs: Any,
    ) -> Prediction:
        """Route, call the model, time it and record the outcome.

        Args:
            method: A method name of the model (``"predict"``) or a function called as
                ``method(model, *args, **kwargs)``.
            *args: Passed on.
            key: The routing key.
            **kwargs: Passed on.

        Returns:
            ``Prediction(result, version)``; an exception is recorded as an error and
            re-raised.
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise AliasNotSetError(
                f"{self.name}: no version loaded yet ({self._last_error or 'still loading'})"
            )
        point = (
            route_point(snapshot.salt, key)
            if key is not None and snapshot.canary is not None
            else None
        )
        version, model = choose(snapshot, key, self._rng, point=point)
        routing = {"route_point": point, "ratio": snapshot.ratio if snapshot.canary else None}
        call = getattr(model, method) if isinstance(method, str) else None
        start = time.perf_counter()
        try:
            if call is not None:
                result = call(*args, **kwargs)
            else:
                assert callable(method)
                result = method(model, *args, **kwargs)
        except Exception:
            self.recorder.record(version, (time.perf_counter() - start) * 1000.0, True, **routing)
            raise
        self.recorder.record(version, (time.perf_counter() - start) * 1000.0, False, **routing)
        return Prediction(result, version)

    def status(self) -> ServerStatus:
        """The served generation and versions, the last poll and the last error."""
        with self._state_lock:
            return self._status_unlocked()

    def _status_unlocked(self) -> ServerStatus:
        snapshot = self._snapshot
        return ServerStatus(
            model=self.name,
            server_id=self.server_id,
            ready=snapshot is not None,
            generation=snapshot.generation if snapshot else None,
            active=snapshot.active if snapshot else None,
            canary=snapshot.canary if snapshot else None,
            ratio=snapshot.ratio if snapshot else 0.0,
            last_poll=self._last_poll,
            last_change=self._last_change,
            last_load_seconds=self._last_load,
            last_error=self._last_error,
            consecutive_failures=self._failures,
            polls=self._polls,
            unchanged_polls=self._unchanged,
            pending_metrics=self.recorder.pending_requests(),
        )

    # -- polling -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Poll once now and switch if the aliases changed.

        Returns:
            Whether a new state was installed.

        Raises:
            The failure, after recording it in :meth:`status` (the old state stays).
        """
        with self._poll_lock:
            try:
                changed = self._poll()
            except BaseException as exc:
                with self._state_lock:
                    self._note_failure(exc)
                raise
            with self._state_lock:
                self._note_success()
            return changed

    def _poll(self) -> bool:
        self._polls += 1
        self._last_poll = utcnow()
        key = aliases_key(self.name)
        try:
            obj = self.registry.store.get(key, if_none_match=self._seen_etag)
        except KeyNotFoundError as exc:
            raise AliasNotSetError(
                f"{self.name} has no aliases in {self.registry.uri}; set one with "
                f"'modelshelf alias set {self.name} VERSION'"
            ) from exc
        if obj is None:
            self._unchanged += 1
            if self._seen_bad is not None:
                raise type(self._seen_bad)(str(self._seen_bad))
            return False
        try:
            aliases = parse_aliases(obj.data, f"{self.registry.uri}/{key}")
            if aliases.active is None:
                raise AliasNotSetError(
                    f"{self.name}@active is not set in {self.registry.uri} "
                    f"(generation {aliases.generation})"
                )
        except (InvalidAliasesError, AliasNotSetError) as exc:
            # Remember the refused object: polls stay 304s until someone replaces it.
            self._seen_etag, self._seen_bad = obj.etag, exc
            raise
        current = self._snapshot
        if current is not None and aliases.generation < current.generation:
            logger.warning(
                "%s: aliases generation went back from %d to %d (was aliases.json replaced "
                "by hand?); following it",
                self.name,
                current.generation,
                aliases.generation,
            )
        started = time.perf_counter()
        snapshot = self._build(aliases, obj.etag)
        self._last_load = time.perf_counter() - started
        # status() must never see the new generation beside the old failure count, so the
        # swap and the bookkeeping that goes with it happen under the state lock.
        # The success is noted before the swap: a reader of route() that sees the new
        # snapshot then also sees the reset failure count.
        with self._state_lock:
            self._note_success()
            # Only now, with every model loaded, does traffic move: one reference assignment.
            self._snapshot = snapshot
            # A failed load above leaves the etag alone, so the next poll retries it all.
            self._seen_etag, self._seen_bad = obj.etag, None
            self._last_change = utcnow()
        if current is None or (current.active, current.canary, current.ratio) != (
            snapshot.active,
            snapshot.canary,
            snapshot.ratio,
        ):
            logger.info(
                "%s: serving generation %d: active %s, canary %s at %.4g",
                self.name,
                snapshot.generation,
                snapshot.active,
                snapshot.canary,
                snapshot.ratio,
            )
        return True

    def _build(self, aliases: Aliases, etag: str) -> Snapshot:
        assert aliases.active is not None
        loaded = self._snapshot.models() if self._snapshot is not None else {}
        policy = self.registry.trust_policy()  # once per switch, at call time

        def model_for(version: str) -> Any:
            if version not in loaded:
                return self._load(version, policy)
            if policy.requires("serve"):
                # Loaded under an older policy: its signature is checked again (cheap:
                # the manifest and the bundles, no file).
                self.registry.trusted_version(f"{self.name}:{version}", "serve", policy=policy)
            return loaded[version]

        active_model = model_for(aliases.active)
        canary_model = None
        if aliases.canary is not None:
            canary_model = model_for(aliases.canary)
        return Snapshot(
            generation=aliases.generation,
            active=aliases.active,
            active_model=active_model,
            canary=aliases.canary,
            canary_model=canary_model,
            ratio=aliases.ratio if aliases.canary is not None else 0.0,
            salt=aliases.salt,
            etag=etag,
        )

    def _load(self, version: str, policy: TrustPolicy) -> Any:
        started = time.perf_counter()
        manifest = self.registry.trusted_manifest(f"{self.name}:{version}", "serve", policy=policy)
        options = LoadOptions(allow_pickle=policy.allow_pickle, trusted_types=self.trusted_types)
        if self._loader is None:
            spec = choose_loader(manifest, options)  # refuses pickle before any download
            model = spec.load(manifest, self.registry.fetch(manifest), options)
        else:
            if self._loader is joblib_loader and not policy.allow_pickle:
                raise PickleNotAllowedError(
                    f"{manifest.ref}: loader=joblib_loader unpickles and the trust policy "
                    "forbids pickle (nothing was loaded)"
                )
            model = self._loader(manifest, self.registry.fetch(manifest))
        logger.info(
            "%s: loaded %s in %.2f s", self.name, manifest.ref, time.perf_counter() - started
        )
        return model

    def _note_success(self) -> None:
        if self._failures:
            logger.warning(
                "%s: polling %s works again after %d failures",
                self.name,
                self.registry.uri,
                self._failures,
            )
        self._failures = 0
        self._logged_failures.clear()

    def _note_failure(self, exc: BaseException) -> None:
        self._failures += 1
        message = str(exc) or type(exc).__name__
        self._last_error = f"{type(exc).__name__}: {message}"
        failure_key = (type(exc).__name__, message)
        if failure_key in self._logged_failures:
            return
        self._logged_failures.add(failure_key)
        keeping = (
            f"keeping generation {self._snapshot.generation} "
            f"(active {self._snapshot.active}, canary {self._snapshot.canary})"
            if self._snapshot is not None
            else "nothing loaded yet"
        )
        logger.warning(
            "%s: poll failed, %s; retrying with backoff: %s", self.name, keeping, self._last_error
        )

    def _next_delay(self) -> float:
        factor = min(2 ** min(self._failures, 10), _MAX_BACKOFF) if self._failures else 1
        return self.poll_interval * factor * self._rng.uniform(1 - _JITTER, 1 + _JITTER)

    def _watch(self) -> None:
        delay = 0.0 if self._snapshot is None else self._next_delay()
        while not self._stop.wait(delay):
            try:
                self.refresh()
            except Exception:  # noqa: S110 - recorded and logged once by refresh()
                pass
            except BaseException:  # pragma: no cover - interpreter shutdown
                return
            delay = self._next_delay()

    # -- metrics -----------------------------------------------------------------------

    def flush(self) -> int:
        """Write the metrics recorded so far now (also done every ``flush_interval``).

        Returns:
            The number of summaries still waiting for a retry (0 when everything landed).
        """
        return self.recorder.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # a bug must not end the thread; the data stays pending
                logger.exception("%s: metrics flush failed unexpectedly", self.name)
