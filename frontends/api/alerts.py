"""Alert routes: rules on streams and their firings, live over server-sent events.

    POST   /v1/alerts               add a rule {"stream_id", "prompt", "min_consecutive"?, "cooldown_s"?,
                                    "webhook"?, "webhook_secret"?} -> 201 (the webhook secret shown once)
    GET    /v1/alerts[?stream_id=]  list rules with state, last evaluation and counts
    GET    /v1/alerts/{id}          one rule
    DELETE /v1/alerts/{id}          delete a rule
    POST   /v1/alerts/{id}/test     send the rule's webhook a signed test event now -> {"delivered", "error"}
    GET    /v1/alerts/events        firings as SSE (`id:` = event id); resume with `Last-Event-ID` (or
                                    ?after=N) within the controller's retained history (the newest 1,000)

The rules and events live in the controller's durable table, so an API restart or a dropped connection
loses nothing inside the retained history. A bad rule is a 400 whose `param` names the field (or 404
`stream_not_found` for an unknown stream) and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from actors.errors import AlertNotFound, StreamNotFound
from configs.schema import ConfigError
from frontends.api.errors import ApiError, backend_errors, invalid
from frontends.api.openapi import SSE, operation
from frontends.api.parsing import read_json

POLL_S = 0.5  # how often the event stream asks the controller for new firings
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
PAGE = 100


@contextmanager
def alert_errors() -> Iterator[None]:
    """The alert operations' errors as HTTP errors; everything else as the other routes map it."""
    with backend_errors():
        try:
            yield
        except ConfigError as exc:
            field = str(exc).split(":", 1)[0]
            raise invalid(str(exc), param=field, code="invalid_alert") from None
        except StreamNotFound as exc:
            raise ApiError(404, str(exc), param="stream_id", code="stream_not_found") from None
        except AlertNotFound as exc:
            raise ApiError(404, str(exc), param="id", code="alert_not_found") from None


def _after(request: Request) -> int:
    """The last event id the client has: Last-Event-ID, else ?after=, else 0 (the whole retained history)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.isdigit() or len(raw) > 18:
        raise invalid(f"Last-Event-ID: expected an event id (a non-negative integer), got {raw[:40]!r}",
                      param="Last-Event-ID", code="invalid_event_id")
    return int(raw)


class AlertRoutes:
    """Handlers over a Backend with the alert methods (add_alert, list_alerts, ..., alert_events)."""

    def __init__(self, backend: Any, max_body_bytes: int, poll_s: float = POLL_S) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.poll_s = poll_s

    @operation("add an alert rule", body="AlertSpec", responses={201: "Alert"})
    async def add(self, request: Request) -> Response:
        body = await read_json(request, self.max_body_bytes)
        with alert_errors():
            rule = await self.backend.add_alert(body)
        return JSONResponse(rule, status_code=201)

    @operation("list alert rules", responses={200: "AlertList"}, query={"stream_id": {"type": "string"}})
    async def list(self, request: Request) -> Response:
        stream_id = request.query_params.get("stream_id")
        with alert_errors():
            rules = await self.backend.list_alerts(stream_id)
        return JSONResponse({"object": "list", "data": rules})

    @operation("one alert rule", responses={200: "Alert"})
    async def get(self, request: Request) -> Response:
        with alert_errors():
            rule = await self.backend.get_alert(request.path_params["rule_id"])
        return JSONResponse(rule)

    @operation("delete an alert rule", responses={200: "AlertDeleted"})
    async def delete(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        with alert_errors():
            await self.backend.delete_alert(rule_id)
        return JSONResponse({"id": rule_id, "object": "alert", "deleted": True})

    @operation("send an alert rule's webhook a signed test event", responses={200: "AlertTest"})
    async def test(self, request: Request) -> Response:
        with alert_errors():
            outcome = await self.backend.test_alert(request.path_params["rule_id"])
        return JSONResponse(outcome)

    @operation("alert firings as server-sent events (resume with Last-Event-ID)", responses={200: {SSE: {"type": "string"}}},
               query={"after": {"type": "string"}}, sse=True)
    async def events(self, request: Request) -> Response:
        after = _after(request)
        with alert_errors():  # a pipeline that does not answer is a plain 503 before the stream starts
            first = await self.backend.alert_events(after, PAGE)

        async def stream() -> AsyncIterator[bytes]:
            nonlocal after
            batch, quiet_since = first, time.monotonic()
            yield b"retry: 1000\n\n"
            while True:
                for event in batch:
                    after = event["id"]
                    yield f"id: {after}\nevent: alert\ndata: {json.dumps(event)}\n\n".encode()
                    quiet_since = time.monotonic()
                if len(batch) < PAGE:
                    await asyncio.sleep(self.poll_s)
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    quiet_since = time.monotonic()
                try:
                    with alert_errors():
                        batch = await self.backend.alert_events(after, PAGE)
                except ApiError as exc:  # said as an event; the client reconnects with its Last-Event-ID
                    yield f"event: error\ndata: {json.dumps(exc.body())}\n\n".encode()
                    batch = []

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def render_alert_metrics(stats: dict[str, Any]) -> str:
    """Prometheus text for the controller's alert totals (GET /metrics appends it)."""
    rows = [("tokdyn_alert_evaluations_total", "counter", "rule evaluations (one rule on one snapshot)",
             stats.get("evaluations", 0)),
            ("tokdyn_alert_firings_total", "counter", "rule firings (events)", stats.get("firings", 0)),
            ("tokdyn_alert_skipped_snapshots_total", "counter", "snapshots an owner replica skipped to the newest",
             stats.get("skipped_snapshots", 0)),
            ("tokdyn_alert_deliveries_total", "counter", "webhook deliveries that got a 2xx",
             stats.get("deliveries", 0)),
            ("tokdyn_alert_delivery_failures_total", "counter", "webhook attempts that failed",
             stats.get("delivery_failures", 0)),
            ("tokdyn_alert_evaluation_seconds_sum", "counter", "seconds spent evaluating snapshots' rules",
             stats.get("evaluation_seconds_sum", 0.0)),
            ("tokdyn_alert_evaluation_seconds_count", "counter", "snapshots whose rules were evaluated",
             stats.get("evaluated_snapshots", 0)),
            ("tokdyn_alert_rules", "gauge", "alert rules", stats.get("rules", 0))]
    out = []
    for name, kind, help_text, value in rows:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {float(value)}"]
    return "\n".join(out) + "\n"
