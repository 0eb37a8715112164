"""The ASGI app: routes, bearer-token auth, error mapping. `create_app(backend, config) -> Starlette`.

Routes (all but /health need ``Authorization: Bearer <api_key>`` when `config.api_key` is set):

    GET    /health                  liveness of the HTTP process (never touches the pipeline)
    GET    /ready                   200 when the pipeline's actors answer, else 503
    POST   /v1/streams              add a stream: {"id", "url", "sample_rate_hz", "budget", "method", ...}
    GET    /v1/streams              list streams
    GET    /v1/streams/{id}         one stream's status and telemetry
    DELETE /v1/streams/{id}         remove a stream
    POST   /v1/chat/completions     OpenAI chat completions, SSE-streamed or not (frontends/api/chat.py)
    GET    /v1/models               OpenAI model list
    GET    /v1/replicas             encoder and LLM replicas with telemetry, and the pools' recent events
    POST   /v1/replicas/{role}      set how many replicas of a role run: {"replicas": N}
    GET    /metrics                 Prometheus text format (frontends/api/metrics.py)
    POST/GET /v1/alerts, GET/DELETE /v1/alerts/{id}, POST /v1/alerts/{id}/test, GET /v1/alerts/events
                                    alert rules and their firings (frontends/api/alerts.py)
    GET    /v1/streams/{id}/frame.jpg, /v1/streams/{id}/keymap, /v1/streams/{id}/events, /v1/events
                                    watching streams (frontends/api/live.py)
    GET    /openapi.json            this API as an OpenAPI 3 document (frontends/api/openapi.py)
    GET    /, /console/...          the web console (frontends/api/console/), open: it asks for the key itself
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from frontends.api import chat
from frontends.api.alerts import AlertRoutes, render_alert_metrics
from frontends.api.backend import Backend
from frontends.api.errors import AUTHENTICATION, ApiError, backend_errors, invalid
from frontends.api.guard import BrowserGuard
from frontends.api.trust import TrustedHosts, check_http_source
from frontends.api.live import LiveRoutes
from frontends.api.metrics import QueryMetrics, render
from frontends.api.openapi import document, operation
from frontends.api.parsing import parse_replica_count, parse_replica_role, parse_stream_spec, read_json
from frontends.api.request_counts import RequestCounter
from actors.config import ApiConfig, stream_spec
from configs.schema import ConfigError

OPEN_PATHS = frozenset({"/health", "/"})
# The console's static files hold no data: the page asks for the key and sends it with every API call.
OPEN_PREFIX = "/console/"
CONSOLE_DIR = Path(__file__).resolve().parent / "console"
# The console runs only its own files: no inline script, nothing from another origin, not framed.
CONSOLE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class BearerAuth:
    """Pure ASGI middleware: every request but OPEN_PATHS must carry ``Authorization: Bearer <api_key>``."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = None if api_key is None else api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and self.api_key is not None and path not in OPEN_PATHS \
                and not path.startswith(OPEN_PREFIX):
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                problem = "missing" if not header else "wrong"
                error = ApiError(401, f"expected 'Authorization: Bearer <api key>', got a {problem} one",
                                 type=AUTHENTICATION, code="invalid_api_key")
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Api:
    """Route handlers over one Backend; `create_app` wires them into a Starlette app."""

    def __init__(self, backend: Backend, config: ApiConfig) -> None:
        self.backend = backend
        self.config = config
        self.metrics = QueryMetrics()
        self.chat = chat.ChatHandler(backend, self.metrics, config.max_body_bytes)

    @operation("liveness of the HTTP process", responses={200: "Status"})
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @operation("200 when the pipeline's actors answer, else 503", responses={200: "Status"})
    async def ready(self, request: Request) -> Response:
        with backend_errors():
            ok = await self.backend.ready()
        if not ok:
            raise ApiError(503, "pipeline not ready: its actors do not answer", code="not_ready")
        return JSONResponse({"status": "ready"})

    @operation("add a stream", body="StreamSpec", responses={201: "StreamStatus"})
    async def add_stream(self, request: Request) -> Response:
        spec = parse_stream_spec(await read_json(request, self.config.max_body_bytes))
        with backend_errors(spec["stream_id"]):
            stream_spec(spec)  # validate here: a 400 naming the bad key, before any actor starts
        check_http_source(spec["url"], self.config.media_dir)
        with backend_errors(spec["stream_id"]):
            status = await self.backend.add_stream(spec)
        return JSONResponse(status.to_dict(), status_code=201)

    @operation("list streams", responses={200: "StreamList"})
    async def list_streams(self, request: Request) -> Response:
        with backend_errors():
            streams = await self.backend.list_streams()
        return JSONResponse({"object": "list", "data": [s.to_dict() for s in streams]})

    @operation("one stream's status and telemetry", responses={200: "StreamStatus"})
    async def stream_status(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        with backend_errors(stream_id):
            status = await self.backend.stream_status(stream_id)
        return JSONResponse(status.to_dict())

    @operation("remove a stream (and its alert rules)", responses={200: "StreamDeleted"})
    async def remove_stream(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        with backend_errors(stream_id):
            rules = await self.backend.remove_stream(stream_id)
        return JSONResponse({"id": stream_id, "object": "stream", "deleted": True, "alerts_removed": rules or 0})

    @operation("OpenAI model list", responses={200: "ModelList"})
    async def models(self, request: Request) -> Response:
        with backend_errors():
            names = await self.chat.model_names()
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "tokdyn"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    @operation("encoder and LLM replicas, and the pools' recent events", responses={200: "ReplicaListWithEvents"})
    async def list_replicas(self, request: Request) -> Response:
        with backend_errors():
            replicas = await self.backend.replicas()
            events = await self.backend.scale_events()
        return JSONResponse({"object": "list", "data": [r.to_dict() for r in replicas],
                             "events": [e.to_dict() for e in events]})

    @operation("run this many replicas of a role", body="ScaleRequest", responses={200: "ReplicaList"})
    async def scale(self, request: Request) -> Response:
        role = parse_replica_role(request.path_params["role"])
        count = parse_replica_count(await read_json(request, self.config.max_body_bytes))
        with backend_errors():
            try:
                replicas = await self.backend.scale(role, count)
            except ConfigError as exc:  # a bound of the running config (e.g. autoscale's), beyond ours above
                raise invalid(str(exc), "replicas") from None
        return JSONResponse({"object": "list", "data": [r.to_dict() for r in replicas]})

    @operation("Prometheus text format", responses={200: {"text/plain": {"type": "string"}}})
    async def metrics_text(self, request: Request) -> Response:
        with backend_errors():
            statuses = await self.backend.list_streams()  # one call: list entries carry the telemetry
            replicas = await self.backend.replicas()
            totals = await self.backend.scale_event_totals()
            alerts = await self.backend.alert_stats() if hasattr(self.backend, "alert_stats") else None
        text = render(self.metrics, statuses, replicas, totals)
        if alerts is not None:  # (an in-process test backend may have no alerts)
            text += render_alert_metrics(alerts).encode()  # render() gives the exposition as bytes
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @operation("the web console", responses={200: {"text/html": {"type": "string"}}})
    async def console(self, request: Request) -> Response:
        return FileResponse(CONSOLE_DIR / "index.html", headers=CONSOLE_HEADERS)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 in the OpenAI shape."""
    assert isinstance(exc, HTTPException)
    return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                    code="not_found" if exc.status_code == 404 else "method_not_allowed").response()


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug in the API itself: still a 500 in the OpenAI shape (Starlette logs the traceback)."""
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error").response()


def _openapi(routes: list) -> Callable[[Request], Awaitable[Response]]:
    """GET /openapi.json: the document of `routes` as served (this route included), built once."""
    built: list[dict] = []

    @operation("this API as an OpenAPI 3 document", responses={200: {"application/json": {"type": "object"}}})
    async def openapi(request: Request) -> Response:
        if not built:
            built.append(document(routes, OPEN_PATHS))
        return JSONResponse(built[0])

    return openapi


def create_app(backend: Backend, config: ApiConfig) -> Starlette:
    """The HTTP API over `backend`; `config` gives the API key and the body size limit (actors.config.ApiConfig)."""
    api = Api(backend, config)
    live = LiveRoutes(backend)
    alerts = AlertRoutes(backend, config.max_body_bytes)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/ready", api.ready, methods=["GET"]),
        Route("/v1/streams", api.add_stream, methods=["POST"]),
        Route("/v1/streams", api.list_streams, methods=["GET"]),
        Route("/v1/streams/{stream_id}", api.stream_status, methods=["GET"]),
        Route("/v1/streams/{stream_id}", api.remove_stream, methods=["DELETE"]),
        Route("/v1/chat/completions", api.chat.handle, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/replicas", api.list_replicas, methods=["GET"]),
        Route("/v1/replicas/{role}", api.scale, methods=["POST"]),
        Route("/metrics", api.metrics_text, methods=["GET"]),
        Route("/v1/alerts", alerts.add, methods=["POST"]),
        Route("/v1/alerts", alerts.list, methods=["GET"]),
        Route("/v1/alerts/events", alerts.events, methods=["GET"]),
        Route("/v1/alerts/{rule_id}", alerts.get, methods=["GET"]),
        Route("/v1/alerts/{rule_id}", alerts.delete, methods=["DELETE"]),
        Route("/v1/alerts/{rule_id}/test", alerts.test, methods=["POST"]),
        Route("/v1/streams/{stream_id}/frame.jpg", live.frame_jpeg, methods=["GET"]),
        Route("/v1/streams/{stream_id}/keymap", live.key_map, methods=["GET"]),
        Route("/v1/streams/{stream_id}/events", live.stream_events, methods=["GET"]),
        Route("/v1/events", live.all_events, methods=["GET"]),
        Route("/", api.console, methods=["GET"]),
        Mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console"),
    ]
    routes.insert(0, Route("/openapi.json", _openapi(routes), methods=["GET"]))
    return Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHosts, names=config.trusted_hosts),  # first of all: DNS rebinding
                    Middleware(RequestCounter, registry=api.metrics.registry, routes=routes),
                    Middleware(BrowserGuard, allowed_origins=config.allowed_origins),  # before auth: preflights
                    Middleware(BearerAuth, api_key=config.api_key)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected_error},
    )
