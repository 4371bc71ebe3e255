"""``modelshelf ui``: a local web app over one registry (Starlette + Jinja2).

Pages: the models, a model's versions, compare, a card, the alias timeline, and the live
canary view, which polls ``/api/models/{name}/aliases`` with ``If-None-Match`` (the app
passes it on as a conditional GET to the store, as serving processes do) and reloads its
panel when the aliases moved, or every ``metrics_refresh`` seconds for new metrics.

Actions (promote, rollback, canary ratio, abort) each show a confirmation page that asks
for a reason; the change is applied only if the aliases are still at the generation the
page showed, through the registry's linearizable update, so two people confirming at once
cannot both act on what they saw.

The app is meant for 127.0.0.1 and defends itself as such: it answers only requests whose
``Host`` is a loopback name (a DNS-rebinding page gets 421), and every form carries a token
drawn when the app starts (a cross-site form post gets 403).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from pydantic import ValidationError

from .._aliases import Aliases, parse_aliases
from .._card import utcnow
from .._errors import ConfigurationError, KeyNotFoundError, ModelshelfError, NotFoundError
from .._refs import check_name, parse_version
from .._registry import Registry
from .._stores import Store, StoredObject
from ..layout import aliases_key
from ._canary import SummaryCache, read_canary_series
from ._charts import canary_spec, render_svg, timeline_spec, versions_spec, warm_up
from ._decisions import _Decision, read_decisions
from ._pages import compare_with_roles, environment, read_manifests, select_versions
from ._timeline import build_timeline

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ACTIONS", "Judge", "create_app"]

logger = logging.getLogger("modelshelf.ui")

Judge = Callable[["Registry", str], Mapping[str, Any]]
"""Given the app's (read-cached) registry and a model, what the promoter would decide now: a
dry run's decision, as JSON."""

ACTIONS: dict[str, str] = {
    "promote": "make the canary the active version",
    "rollback": "return active to the version active before it (drops any canary)",
    "ratio": "change the canary's share of traffic",
    "abort": "stop the canary; all traffic to active",
}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


# Objects written once with create-if-absent and never replaced: a copy read once is good
# for as long as the key is listed (gc never deletes manifests or history).
_IMMUTABLE = re.compile(
    r"[^/]+/(versions/[^/]+\.json|history/\d+\.json|promoter/decisions/[^/]+\.json"
    r"|metrics/.+\.json)"
)


class _ReadCache:
    """A store whose reads of immutable objects are kept in memory, up to ``limit`` bytes.

    Pages list a prefix and read what it names; the listing still comes from the store, so
    a page sees new objects at once and only reads each one once.
    """

    def __init__(self, inner: Store, limit: int = 256 << 20) -> None:
        self._inner = inner
        self._items: OrderedDict[str, StoredObject] = OrderedDict()
        self._bytes = 0
        self._limit = limit
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self._inner.uri

    def get(self, key: str, *, if_none_match: str | None = None) -> StoredObject | None:
        if if_none_match is None and _IMMUTABLE.fullmatch(key):
            with self._lock:
                hit = self._items.get(key)
                if hit is not None:
                    self._items.move_to_end(key)
                    return hit
            obj = self._inner.get(key)
            assert obj is not None
            with self._lock:
                self._items[key] = obj
                self._bytes += len(obj.data)
                while self._bytes > self._limit and self._items:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old.data)
            return obj
        return self._inner.get(key, if_none_match=if_none_match)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _http_etag(store_etag: str) -> str:
    return '"' + store_etag.strip('"') + '"'


class _SvgCache:
    """Rendered charts by spec digest: an unchanged chart is not rendered twice."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def render(self, spec: dict[str, Any] | None) -> str | None:
        if spec is None:
            return None
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if digest in self._items:
                self._items.move_to_end(digest)
                return self._items[digest]
        svg = render_svg(spec)
        with self._lock:
            self._items[digest] = svg
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return svg


def create_app(
    registry: Registry,
    *,
    judge: Judge | None = None,
    poll_seconds: float = 5.0,
    metrics_refresh: float = 60.0,
    allowed_hosts: set[str] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The web app over ``registry``.

    Args:
        registry: The registry (its ``user`` is recorded on every alias change).
        judge: What the promoter would decide for a model (a dry run), shown on the canary
            page; ``None`` shows no verdict.
        poll_seconds: How often the canary page polls the aliases.
        metrics_refresh: How often the canary page reloads its metrics regardless.
        allowed_hosts: Host names accepted besides the loopback names.
        clock: Returns the current time (aware UTC): where a running canary's charts end.

    Raises:
        ConfigurationError: Starlette or Jinja2 is missing (the ``ui`` extra).
    """
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
        from starlette.routing import Route
    except ImportError as exc:
        raise ConfigurationError(
            "modelshelf ui needs Starlette, part of the 'ui' extra: pip install 'modelshelf[ui]'"
        ) from exc

    env = environment()
    writer = registry
    # Pages read through a cache of immutable objects; actions go to the registry itself.
    registry = Registry(_ReadCache(writer.store), cache_dir=writer.cache.root, user=writer.user)
    token = secrets.token_urlsafe(24)
    svgs = _SvgCache()
    summaries: SummaryCache = {}
    hosts = _LOOPBACK_HOSTS | (allowed_hosts or set())
    script = resources.files("modelshelf").joinpath("_views/templates/canary.js").read_bytes()

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            registry=registry.uri, token=token, actions=ACTIONS, **context
        )
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": _CSP})

    def error_page(exc: ModelshelfError, status: int) -> HTMLResponse:
        return page("ui_error.html.j2", status=status, error=str(exc), kind=type(exc).__name__)

    def model_name(request: Request) -> str:
        return check_name(request.path_params["name"])

    # -- pages (sync: Starlette runs them in its thread pool) -------------------------------

    def models_page(request: Request) -> Response:
        rows = []
        for name in registry.models():
            rows.append(
                {
                    "name": name,
                    "versions": len(registry.versions(name)),
                    "aliases": registry.aliases(name),
                }
            )
        return page("ui_models.html.j2", rows=rows)

    def model_page(request: Request) -> Response:
        name = model_name(request)
        versions = registry.versions(name)
        if not versions:
            raise NotFoundError(f"model {name!r} has no versions in {registry.uri}")
        manifests = read_manifests(registry, name, versions)
        aliases = registry.aliases(name)
        return page(
            "ui_model.html.j2",
            name=name,
            manifests=list(reversed(manifests)),
            aliases=aliases,
            flash=request.query_params.get("done"),
        )

    def compare_page(request: Request) -> Response:
        name = model_name(request)
        available = registry.versions(name)
        if not available:
            raise NotFoundError(f"model {name!r} has no versions in {registry.uri}")
        wanted = request.query_params.getlist("v")
        for version in wanted:
            parse_version(version)
        last_text = request.query_params.get("last")
        last = int(last_text) if last_text and last_text.isdigit() else None
        chosen = select_versions(available, wanted or None, last)
        manifests = read_manifests(registry, name, chosen)
        comparison = compare_with_roles(manifests, registry.history(name), registry.aliases(name))
        if request.query_params.get("diff_only"):
            comparison = comparison.diff_only()
        return page(
            "ui_compare.html.j2",
            name=name,
            comparison=comparison,
            available=available,
            chosen=chosen,
            diff_only=bool(request.query_params.get("diff_only")),
            chart=svgs.render(versions_spec(comparison)),
        )

    def card_page(request: Request) -> Response:
        name = model_name(request)
        manifest = registry.get(f"{name}:{parse_version(request.path_params['version'])}")
        return page("ui_card.html.j2", name=name, manifest=manifest, aliases=registry.aliases(name))

    def timeline_page(request: Request) -> Response:
        name = model_name(request)
        timeline = build_timeline(registry.history(name))
        return page(
            "ui_timeline.html.j2",
            name=name,
            timeline=timeline,
            # To the minute, so that an unchanged timeline is not rendered again.
            chart=svgs.render(
                timeline_spec(
                    name,
                    timeline,
                    clock().replace(second=0, microsecond=0),
                    read_decisions(registry.store, name, last=500)[0],
                )
            ),
        )

    def canary_context(name: str) -> dict[str, Any]:
        aliases = registry.aliases(name)
        timeline = build_timeline(registry.history(name))
        run = timeline.canaries[-1] if timeline.canaries else None
        chart = verdict = None
        verdict_error = None
        totals = None
        series = None
        if run is not None:
            series = read_canary_series(registry.store, name, run, now=clock(), cache=summaries)
            decisions, _ = read_decisions(registry.store, name, last=200)
            chart = svgs.render(canary_spec(name, series, decisions))
            totals = {arm: series.totals(arm) for arm in ("active", "canary")}
        if judge is not None and aliases.canary is not None:
            try:
                verdict = _Decision.model_validate(judge(registry, name))
            except ModelshelfError as exc:
                verdict_error = str(exc)
            except ValidationError as exc:
                verdict_error = f"unreadable verdict: {exc.errors()[0]['msg']}"
        return {
            "name": name,
            "aliases": aliases,
            "run": run,
            "series": series,
            "totals": totals,
            "chart": chart,
            "verdict": verdict,
            "verdict_error": verdict_error,
            "checked_at": clock(),
        }

    def warm_up_pages() -> None:
        # The chart engine takes about half a second to start, and a canary's metric objects
        # are read once: both happen here, not on the first page's time.
        _warm_charts()
        try:
            for name in registry.models():
                if registry.aliases(name).canary is not None:
                    canary_context(name)
        except Exception:  # best effort: a page that needs it reads again and reports errors
            logger.debug("modelshelf ui warm-up stopped", exc_info=True)

    threading.Thread(target=warm_up_pages, name="modelshelf-ui-warm-up", daemon=True).start()

    def canary_page(request: Request) -> Response:
        name = model_name(request)
        return page(
            "ui_canary.html.j2",
            poll_ms=int(poll_seconds * 1000),
            refresh_ms=int(metrics_refresh * 1000),
            **canary_context(name),
        )

    def canary_panel(request: Request) -> Response:
        name = model_name(request)
        return page("ui_canary_panel.html.j2", **canary_context(name))

    def aliases_api(request: Request) -> Response:
        name = model_name(request)
        held = request.headers.get("if-none-match")
        key = aliases_key(name)
        try:
            obj = registry.store.get(key, if_none_match=held.strip('"') if held else None)
        except KeyNotFoundError:
            return JSONResponse(Aliases().model_dump(mode="json"), headers={"ETag": '"none"'})
        if obj is None:
            return Response(status_code=304, headers={"ETag": held or ""})
        state = parse_aliases(obj.data, f"{registry.uri}/{key}")
        return JSONResponse(
            state.model_dump(mode="json"),
            headers={"ETag": _http_etag(obj.etag), "Cache-Control": "no-cache"},
        )

    # -- actions ----------------------------------------------------------------------------

    def action_of(request: Request) -> str:
        action = str(request.path_params["action"])
        if action not in ACTIONS:
            raise NotFoundError(f"no action {action!r}; the actions are {', '.join(ACTIONS)}")
        return action

    def confirm_page(request: Request) -> Response:
        name = model_name(request)
        action = action_of(request)
        aliases = registry.aliases(name)
        return page(
            "ui_confirm.html.j2",
            name=name,
            action=action,
            aliases=aliases,
            problem=None,
            reason="",
            ratio="",
        )

    async def apply_action(request: Request) -> Response:
        name = model_name(request)
        action = action_of(request)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        if not secrets.compare_digest(form.get("token", ""), token):
            return HTMLResponse("this form did not come from this app", status_code=403)
        reason = form.get("reason", "").strip()
        ratio_text = form.get("ratio", "").strip()
        aliases = await run_in_threadpool(registry.aliases, name)
        problem = None
        if form.get("confirm") != "yes":
            problem = "tick the confirmation box to go ahead"
        elif not reason:
            problem = "give a reason: it is recorded in the history"
        ratio: float | None = None
        if problem is None and action == "ratio":
            try:
                ratio = float(ratio_text.rstrip("%")) / (100 if ratio_text.endswith("%") else 1)
            except ValueError:
                problem = f"the ratio {ratio_text!r} is not a number (give 0.25 or 25%)"
        expected = form.get("generation", "")
        if problem is None and expected != str(aliases.generation):
            problem = (
                f"the aliases changed since this page was shown (generation {expected} -> "
                f"{aliases.generation}, by {aliases.updated_by or 'unknown'}); check again"
            )
        if problem is None:
            try:
                await run_in_threadpool(_apply, writer, name, action, reason, ratio, int(expected))
            except ModelshelfError as exc:
                problem = str(exc)
        if problem is not None:
            # 200, not 409: the page asks again, and an error status reads as a failed load.
            return page(
                "ui_confirm.html.j2",
                name=name,
                action=action,
                aliases=await run_in_threadpool(registry.aliases, name),
                problem=problem,
                reason=reason,
                ratio=ratio_text,
            )
        done = quote(f"{action} applied")
        return RedirectResponse(f"/models/{name}?done={done}", status_code=303)

    def static_script(request: Request) -> Response:
        return Response(
            script, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"}
        )

    routes = [
        Route("/", models_page),
        Route("/models/{name}", model_page),
        Route("/models/{name}/compare", compare_page),
        Route("/models/{name}/versions/{version}", card_page),
        Route("/models/{name}/timeline", timeline_page),
        Route("/models/{name}/canary", canary_page),
        Route("/models/{name}/canary/panel", canary_panel),
        Route("/models/{name}/actions/{action}", confirm_page, methods=["GET"]),
        Route("/models/{name}/actions/{action}", apply_action, methods=["POST"]),
        Route("/api/models/{name}/aliases", aliases_api),
        Route("/static/canary.js", static_script),
    ]

    async def modelshelf_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelshelfError)
        status = 404 if isinstance(exc, NotFoundError) else 400 if exc.exit_code < 20 else 500
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=status)
        return error_page(exc, status)

    app = Starlette(routes=routes, exception_handlers={ModelshelfError: modelshelf_error})
    app.state.token = token
    return _LoopbackOnly(app, hosts)  # type: ignore[return-value]


class _LoopbackOnly:
    """ASGI wrapper: refuse a request whose Host is not a loopback name (DNS rebinding)."""

    def __init__(self, app: Any, hosts: set[str]) -> None:
        self.app = app
        self.hosts = hosts
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            bare = host if host.endswith("]") else host.rsplit(":", 1)[0]
            if bare not in self.hosts:
                body = (
                    f"modelshelf ui answers only to {', '.join(sorted(self.hosts))}, not {host!r}"
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _apply(
    registry: Registry, name: str, action: str, reason: str, ratio: float | None, generation: int
) -> Aliases:
    """One confirmed action, applied only while the aliases are at ``generation``.

    Raises:
        PromotionConflictError: Someone changed the aliases since the page was shown.
    """
    if action == "promote":
        return registry.promote(name, reason=reason, expect_generation=generation)
    if action == "rollback":
        return registry.rollback(name, reason=reason, expect_generation=generation)
    if action == "abort":
        return registry.abort_canary(name, reason=reason, expect_generation=generation)
    assert ratio is not None
    return registry.set_ratio(name, ratio, reason=reason, expect_generation=generation)


def _warm_charts() -> None:
    try:
        warm_up()
    except ModelshelfError:
        pass  # no chart engine: the pages say so when they need one
