"""Routes for watching streams (the web console's data): the newest sampled frame as JPEG, optionally with
the key map painted over it, the key map itself, and stream telemetry as server-sent events.

    GET /v1/streams/{id}/frame.jpg[?overlay=keymap]   image/jpeg of the newest sampled frame, as the encoder
                                                      gets it (S x S); with the overlay, the frame the newest
                                                      key map belongs to, one colour per base token
    GET /v1/streams/{id}/keymap                       {"version", "t", "grid": [H, W], "ids": [[...]], "tokens":
                                                      [{"id", "first_seen", "last_seen"}], "t_start", "t_end",
                                                      "colours": ["#rrggbb", ...]}  (409 before the first chunk)
    GET /v1/streams/{id}/events                       SSE: "event: status" with the stream's status every
                                                      EVENT_PERIOD_S; "event: error" with an error body when
                                                      the pipeline fails (the stream keeps going) or the stream
                                                      is removed (the stream ends)
    GET /v1/events                                    SSE: "event: streams" with {"object": "list", "data": [...]}
                                                      every EVENT_PERIOD_S; "event: error" while the pipeline
                                                      is unavailable (503), and streams again once it is back

Frames are kept by reference in the source actor and encoded here only when asked for, so watching costs
the data path nothing but the Ray call that fetches one frame.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from actors.config import STREAM_ID_RE
from frontends.api.backend import Backend
from frontends.api.errors import ApiError, backend_errors, invalid
from frontends.api.openapi import SSE, operation
from frontends.keymap_colors import hex_colours, overlay

EVENT_PERIOD_S = 1.0  # telemetry push period: the console's list and sparklines move once a second
JPEG_QUALITY = 85
OVERLAYS = ("none", "keymap")
SHOWN_CHARS = 40  # how much of a bad value an error message repeats


def _shown(value: str) -> str:
    """A client's value as an error message repeats it: quoted, cut to SHOWN_CHARS characters."""
    return repr(value[:SHOWN_CHARS]) + (f"... ({len(value)} characters)" if len(value) > SHOWN_CHARS else "")


def stream_id_of(request: Request) -> str:
    """The path's stream id, checked before it reaches the pipeline (400 naming the expected form)."""
    stream_id = request.path_params["stream_id"]
    if not STREAM_ID_RE.match(stream_id):
        raise invalid(f"stream id: expected 1-64 characters of [A-Za-z0-9_.-], got {_shown(stream_id)}",
                      param="stream_id", code="invalid_stream_id")
    return stream_id


def query_params(request: Request, allowed: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """The query parameters, each named in `allowed` with its allowed values; anything else is a 400."""
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise invalid(f"query parameter: expected one of {sorted(allowed)}, got {_shown(name)}", param=name,
                          code="unknown_parameter")
        if value not in allowed[name] or name in out:
            raise invalid(f"{name}: expected one of {list(allowed[name])} once, got {_shown(value)}", param=name)
        out[name] = value
    return out


def encode_jpeg(image: np.ndarray) -> bytes:
    """[H, W, 3] uint8 -> JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class LiveRoutes:
    """Handlers of the routes above over one Backend."""

    def __init__(self, backend: Backend, period_s: float = EVENT_PERIOD_S) -> None:
        self.backend = backend
        self.period_s = period_s

    @operation("the newest sampled frame as JPEG", responses={200: {"image/jpeg": {"type": "string", "format": "binary"}}},
               query={"overlay": {"type": "string", "enum": list(OVERLAYS)}})
    async def frame_jpeg(self, request: Request) -> Response:
        stream_id = stream_id_of(request)
        wanted = query_params(request, {"overlay": OVERLAYS}).get("overlay", "none")
        with backend_errors(stream_id):
            view = await self.backend.key_map(stream_id) if wanted == "keymap" else None
            if wanted == "keymap" and view is None:
                raise _keymap_not_ready(stream_id)
            frame = await self.backend.latest_frame(stream_id, view["t"] if view else None)
        if frame is None:
            raise ApiError(409, f"stream {stream_id!r} has no sampled frame yet, retry shortly", param="stream_id",
                           code="stream_not_ready")
        image = np.asarray(frame["image"])  # [S, S, 3] uint8
        if view is not None:
            image = overlay(image[None], np.asarray(view["ids"])[None])[0]
        data = await asyncio.to_thread(encode_jpeg, image)  # a few ms: off the event loop
        headers = {"Cache-Control": "no-store", "X-Tokdyn-Frame-T": f"{frame['t']:.3f}"}
        if view is not None:
            headers["X-Tokdyn-Snapshot-Version"] = str(view["version"])
        return Response(data, media_type="image/jpeg", headers=headers)

    @operation("the newest frame's key map", responses={200: "KeyMap"})
    async def key_map(self, request: Request) -> Response:
        stream_id = stream_id_of(request)
        query_params(request, {})
        with backend_errors(stream_id):
            view = await self.backend.key_map(stream_id)
        if view is None:
            raise _keymap_not_ready(stream_id)
        return JSONResponse(dict(view, colours=hex_colours(len(view["tokens"]))),
                            headers={"Cache-Control": "no-store"})

    @operation("the stream's status as server-sent events", responses={200: {SSE: {"type": "string"}}}, sse=True)
    async def stream_events(self, request: Request) -> Response:
        stream_id = stream_id_of(request)
        query_params(request, {})
        async def status() -> dict[str, Any]:
            return (await self.backend.stream_status(stream_id)).to_dict()

        with backend_errors(stream_id):  # an unknown stream is a plain 404, before the event stream starts
            first = await status()
        return self._sse(status, "status", first, stream_id)

    @operation("every stream's status as server-sent events", responses={200: {SSE: {"type": "string"}}}, sse=True)
    async def all_events(self, request: Request) -> Response:
        query_params(request, {})

        async def listing() -> dict[str, Any]:
            return {"object": "list", "data": [s.to_dict() for s in await self.backend.list_streams()]}

        with backend_errors():
            first = await listing()
        return self._sse(listing, "streams", first, None)

    def _sse(self, poll: Callable[[], Awaitable[dict[str, Any]]], name: str, first: dict[str, Any],
             stream_id: str | None) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            payload: dict[str, Any] | None = first
            while True:
                if payload is not None:
                    yield _event(name, payload)
                await asyncio.sleep(self.period_s)
                try:
                    with backend_errors(stream_id):
                        payload = await poll()
                except ApiError as exc:  # said to the page as an event; the stream goes on unless it is gone
                    yield _event("error", exc.body())
                    if exc.status == 404:
                        return
                    payload = None

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _keymap_not_ready(stream_id: str) -> ApiError:
    return ApiError(409, f"stream {stream_id!r} has no key map yet: it has compressed no chunk, or its method "
                         "keeps none (only token_dynamics does)", param="stream_id", code="keymap_not_ready")
