"""`tokdyn_http_requests_total{route, method, status}`: every HTTP request the API answers, by route template.

Pure ASGI middleware, outermost, so refused requests (401, 404, 413) are counted too. The route label is the
matched route's template (`/v1/streams/{stream_id}`), never the raw path, so clients cannot grow the label set;
a path no route matches is counted as "unmatched".
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontends.api.metrics import PREFIX


class RequestCounter:
    """Counts each HTTP response by route template, method and status code into `registry`."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by route template, method "
                                "and status.", ["route", "method", "status"], registry=registry)

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:  # PARTIAL: the path matched, the method did not (a 405)
                return getattr(route, "path", "unmatched")
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app fails before it starts a response

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.requests.labels(self._route(scope), scope["method"], str(status)).inc()
