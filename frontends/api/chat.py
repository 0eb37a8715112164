"""`POST /v1/chat/completions` in the OpenAI wire format, streamed (SSE) or not.

Conventions (also in the frontends/api package docstring):

- The stream is named by a content part ``{"type": "video_url", "video_url": {"url": "tokdyn://<stream_id>"}}``
  in any message (primary), or by the extra body field ``"stream_id"``. ``"stream": true`` keeps its OpenAI
  meaning: answer as server-sent events, ``data: {chunk}\\n\\n`` ... ``data: [DONE]\\n\\n``.
- ``usage.prompt_tokens`` counts every token the LLM prefilled, the visual ones included; ``usage.visual_tokens``
  says how many of them were visual (the compact memory the answer came from).
- Every answer says what it covers in an extra top-level field ``"tokdyn": {"stream_id", "span": {"t_start",
  "t_end"} (media seconds), "snapshot_version", "ttft_s", "note" (random-weight models only)}``; a streamed
  answer carries it (and ``usage``) on the chunk with ``finish_reason``. With ``stream_options.include_usage``
  a final ``choices: []`` chunk with ``usage`` follows too, as OpenAI sends it.
- Errors before the first token are plain HTTP errors; an error after it (the answer already started with
  200) arrives as one ``data: {"error": {...}}`` event, and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from frontends.api.backend import Backend
from frontends.api.errors import ApiError, backend_errors
from frontends.api.metrics import QueryMetrics
from frontends.api.openapi import SSE, operation
from frontends.api.parsing import ChatRequest, parse_chat, read_json


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class ChatHandler:
    """Answers chat completions from a Backend, recording latency and TTFT in `metrics`."""

    def __init__(self, backend: Backend, metrics: QueryMetrics, max_body_bytes: int) -> None:
        self.backend = backend
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._models: list[str] | None = None  # fixed for the pipeline's life: asked once

    async def model_names(self) -> list[str]:
        if self._models is None:
            self._models = list(await self.backend.models())
        return self._models

    @operation("OpenAI chat completions about a stream, as JSON or server-sent events", body="ChatRequest",
               responses={200: {"application/json": {"$ref": "#/components/schemas/ChatCompletion"}, SSE: {"type": "string"}}})
    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            req = parse_chat(await read_json(request, self.max_body_bytes))
            model = await self._resolve_model(req.model)
            answer = self.backend.ask(req.stream_id, req.messages, req.max_tokens, req.temperature, list(req.stop),
                                      req.window)
            with backend_errors(req.stream_id):
                first = await anext(answer)  # unknown / not-ready streams fail here, before any 200
        except ApiError as exc:
            self.metrics.observe_failure(exc.status, exc.code)
            raise
        turn = _Turn(req, model, started, self.metrics)
        if req.stream:
            return StreamingResponse(turn.events(first, answer), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            return JSONResponse(await turn.collect(first, answer))
        except ApiError as exc:
            self.metrics.observe_failure(exc.status, exc.code)
            raise

    async def _resolve_model(self, requested: str | None) -> str:
        with backend_errors():
            names = await self.model_names()
        if not names:
            raise ApiError(503, "pipeline has no model to answer with", code="backend_unavailable")
        if requested is None:
            return names[0]
        if requested not in names:
            raise ApiError(404, f"model: expected one of {names}, got {requested!r}", param="model",
                           code="model_not_found")
        return requested


class _Turn:
    """One answer in progress: turns backend items into an OpenAI completion or chunks."""

    def __init__(self, req: ChatRequest, model: str, started: float, metrics: QueryMetrics) -> None:
        self.req = req
        self.model = model
        self.started = started
        self.metrics = metrics
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.ttft_s: float | None = None

    async def _items(self, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict]:
        """The backend's items, first included, with backend errors as ApiError; always closes the backend."""
        try:
            item: dict[str, Any] | None = first
            while item is not None:
                if item.get("type") == "delta" and self.ttft_s is None:
                    self.ttft_s = time.perf_counter() - self.started
                yield item
                if item.get("type") == "done":
                    return
                with backend_errors(self.req.stream_id):
                    item = await anext(rest, None)
            raise ApiError(500, "pipeline ended the answer without a 'done' item", code="backend_error")
        finally:
            close = getattr(rest, "aclose", None)
            if close is not None:  # client gone or error: stop generating (RayBackend cancels the task)
                # Shielded: when the client left, Starlette's cancel scope would cancel this await too,
                # leaving the backend's generator (and its Ray task) open until garbage collection.
                with anyio.CancelScope(shield=True):
                    await close()

    def _finish(self, done: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(usage, tokdyn extra) of a done item; records the query in the metrics."""
        usage = dict(done.get("usage", {}))
        self.metrics.observe_done(time.perf_counter() - self.started, self.ttft_s, usage)
        extra = {"stream_id": self.req.stream_id, "span": done.get("span"),
                 "snapshot_version": done.get("snapshot_version"), "ttft_s": done.get("ttft_s")}
        if done.get("note"):  # e.g. "random-weight model: the answer is not meaningful"
            extra["note"] = done["note"]
        return usage, extra

    async def collect(self, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        """The whole answer as one ``chat.completion`` object."""
        texts: list[str] = []
        async for item in self._items(first, rest):
            if item.get("type") == "delta":
                texts.append(item.get("text", ""))
            elif item.get("type") == "done":
                usage, extra = self._finish(item)
                choice = {"index": 0, "message": {"role": "assistant", "content": "".join(texts)},
                          "finish_reason": item.get("finish_reason", "stop"), "logprobs": None}
                return {"id": self.id, "object": "chat.completion", "created": self.created,
                        "model": self.model, "choices": [choice], "usage": usage, "tokdyn": extra}
        raise AssertionError("unreachable: _items raises unless it yields a done item")

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice], **more}

    async def events(self, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """The answer as SSE bytes: role chunk, content chunks, finish chunk (+ usage chunk), [DONE]."""
        yield _sse(self._chunk({"role": "assistant", "content": ""}))
        try:
            async for item in self._items(first, rest):
                if item.get("type") == "delta" and item.get("text"):
                    yield _sse(self._chunk({"content": item["text"]}))
                elif item.get("type") == "done":
                    usage, extra = self._finish(item)
                    yield _sse(self._chunk({}, item.get("finish_reason", "stop"), usage=usage, tokdyn=extra))
                    if self.req.include_usage:
                        yield _sse({**self._chunk({}), "choices": [], "usage": usage})
        except ApiError as exc:  # the 200 is already sent: report in-band, as OpenAI does
            self.metrics.observe_failure(exc.status, exc.code)
            yield _sse(exc.body())
            return
        yield _sse("[DONE]")
