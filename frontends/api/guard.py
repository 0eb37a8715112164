"""Browser guard: no cross-site requests, JSON bodies only. Pure ASGI middleware, before authentication.

Why: with no API key (the default on 127.0.0.1) any web page the user visits could otherwise make the
browser POST to the API: a `text/plain` form post needs no CORS preflight, so "the browser will not let
the page read the answer" protects nothing when the request itself opens a camera URL or a local file.

The rule, per request:

- A request that a browser marks as coming from another site is refused with 403 ``cross_origin``:
  an ``Origin`` header other than this server's own origin (``scheme://Host``), or, without Origin, a
  ``Sec-Fetch-Site`` of ``cross-site`` / ``same-site``. Origins listed in ``api.allowed_origins`` pass, and
  get CORS headers (preflights answered here) so their pages can read the answers. Requests without these
  headers (curl, the openai client, servers) and same-origin ones (the web console) pass.
- A request with a body (POST, PUT, PATCH) must say ``Content-Type: application/json``, else 415
  ``unsupported_media_type``: an HTML form cannot send that type, a script on another origin only after a
  preflight, which is refused above.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontends.api.errors import ApiError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CROSS_SITE = frozenset({b"cross-site", b"same-site"})  # same-site: another port or subdomain: another origin
PREFLIGHT_MAX_AGE_S = 600
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "authorization, content-type"


def _has_body(headers: dict[bytes, bytes]) -> bool:
    """Whether the request carries a body (an empty POST is refused later anyway: it has no JSON)."""
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


def _media_type(value: bytes) -> bytes:
    """b"application/json" from b"Application/JSON; charset=utf-8"."""
    return value.split(b";", 1)[0].strip().lower()


class BrowserGuard:
    """Refuses cross-origin requests (unless allowed) and bodies that are not JSON; see the module docstring."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(origin.encode() for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        allowed = origin is not None and origin in self.allowed
        if not allowed and self._cross_site(scope, headers, origin):
            shown = origin.decode("latin-1")[:100] if origin is not None else "another site (Sec-Fetch-Site)"
            await ApiError(403, f"expected a request from this server's own origin or one in api.allowed_origins, "
                                f"got one from {shown}", code="cross_origin").response()(scope, receive, send)
            return
        if allowed and scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(origin, send)
            return
        if scope["method"] in BODY_METHODS and _has_body(headers):
            media = _media_type(headers.get(b"content-type", b""))
            if media != b"application/json":
                got = media.decode("latin-1")[:100] or "none"
                await ApiError(415, f"expected Content-Type: application/json, got {got}",
                               code="unsupported_media_type").response()(scope, receive, send)
                return
        if allowed:
            send = _with_cors(send, origin)
        await self.app(scope, receive, send)

    @staticmethod
    def _cross_site(scope: Scope, headers: dict[bytes, bytes], origin: bytes | None) -> bool:
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://".encode() + headers.get(b"host", b"")
            return origin != own  # "null" (sandboxed pages, file://) is never our origin
        return headers.get(b"sec-fetch-site") in CROSS_SITE

    @staticmethod
    async def _preflight(origin: bytes, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode())]})
        await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: bytes) -> Send:
    """`send` that adds the CORS headers letting an allowed origin's page read the response."""

    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"access-control-allow-origin", origin), (b"vary", b"Origin")]}
        await send(message)

    return cors_send
