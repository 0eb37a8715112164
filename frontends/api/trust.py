"""What the HTTP API trusts: the host names it answers to, and the video sources a request may open.

Trusted hosts (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at 127.0.0.1 is, to the
browser, same-origin with this API, so the cross-origin guard cannot see it; its requests still carry
``Host: evil.example``. Every request is therefore checked first of all: its Host must be an IP literal
(a rebound request always carries a name), ``localhost``, or a name in ``api.trusted_hosts``; anything else
gets 400 ``untrusted_host`` before any other middleware or handler runs.

Sources over HTTP: a stream added through the API may use network (rtsp, http(s), ...), generated
(synthetic://, scene://) and sample:// sources; a local file (a path or ``file:``) only under
``api.media_dir`` (none by default: 403 ``source_forbidden``). The config file and the CLI keep full access.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from frontends.api.errors import ApiError

LOCAL_SCHEMES = frozenset({"", "file"})


def host_name(host_header: str) -> str:
    """The name or address of a Host header, without port, brackets or a trailing dot, lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class TrustedHosts:
    """ASGI middleware: 400 ``untrusted_host`` unless Host is an IP literal, localhost or a configured name."""

    def __init__(self, app: ASGIApp, names: Iterable[str] = ()) -> None:
        self.app = app
        self.names = frozenset({"localhost"} | {host_name(n) for n in names})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope["headers"]).get(b"host")
            name = host_name(raw.decode("latin-1")) if raw is not None else None
            if name is not None and not is_ip_literal(name) and name not in self.names:
                await ApiError(400, f"Host: expected an IP address, localhost or one of api.trusted_hosts, got "
                                    f"{name[:100]!r}", code="untrusted_host").response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def check_http_source(url: str, media_dir: str | None) -> None:
    """Raise ApiError 403 ``source_forbidden`` for a local file outside ``media_dir`` (any, without one).
    Symbolic links and ``..`` are resolved before the check."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in LOCAL_SCHEMES:
        return
    path = unquote(parts.path) if parts.scheme else url
    if media_dir is not None:
        folder = os.path.realpath(os.path.expanduser(media_dir))
        real = os.path.realpath(os.path.expanduser(path))
        if os.path.commonpath([folder, real]) == folder:
            return
    where = f"under api.media_dir ({media_dir})" if media_dir else "nowhere (api.media_dir is not set)"
    raise ApiError(403, f"url: streams added over HTTP may open network, generated and sample:// sources, and local "
                        f"files {where}; got a local file (the config file and the CLI can open any)",
                   param="url", code="source_forbidden")
