"""GET /openapi.json describes every route the app serves, and schemathesis fuzzes each route from it against
a real uvicorn server on 127.0.0.1 (the in-process backend of real parts, with the controller's alert book):
no 5xx, no response outside the document (issue 22). Endless event streams are documented, not fuzzed."""

from __future__ import annotations

import collections
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.config import ApiConfig
from actors.control.alerts import AlertBook
from actors.control.kv import MemoryStore
from actors.control.webhooks import send_test_event
from frontends.api.server import ApiServer
from starlette.routing import Mount
from tests.frontends.api.conftest import API_KEY
from tests.frontends.api.local_backend import LocalBackend

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

EXAMPLES = 5  # per route and mode (valid, invalid); the first try at 12 ran past 10 min on a starved machine
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


class AlertingBackend(LocalBackend):
    """LocalBackend plus the controller's alert rule book over its streams."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.book = AlertBook(MemoryStore())

    async def add_alert(self, spec):
        return self.book.add(spec, list(self.streams))

    async def list_alerts(self, stream_id=None):
        return self.book.list(stream_id)

    async def get_alert(self, rule_id):
        return self.book.get(rule_id)

    async def delete_alert(self, rule_id):
        self.book.delete(rule_id)

    async def test_alert(self, rule_id):
        return send_test_event(rule_id, *self.book.test_event(rule_id))

    async def alert_events(self, after, limit):
        return self.book.events_after(after, limit)

    async def alert_stats(self):
        return self.book.stats()


@pytest.fixture
def served(tiny_model):
    backend = AlertingBackend(tiny_model)
    with ApiServer(backend, ApiConfig(port=0, api_key=API_KEY, max_body_bytes=64 * 1024)) as server:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}).raise_for_status()
            backend.feed("cam")
            yield server, http


def test_the_document_lists_every_route_the_app_serves(served) -> None:
    server, http = served
    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    served_ops = {(f"{r.path}/{{path}}", "get") if isinstance(r, Mount) else (r.path, m.lower())
                  for r in server._server.config.app.routes for m in (getattr(r, "methods", None) or {"GET"})
                  if m != "HEAD"}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served_ops == documented
    assert {"/v1/alerts", "/v1/streams/{stream_id}", "/openapi.json"} <= set(document["paths"])
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401  # behind the key like the data


@pytest.mark.slow  # not yet timed to completion on this machine (issue 22)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(served) -> None:
    server, http = served
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    examples: dict[str, int] = collections.Counter()
    skipped = []
    inputs: dict[str, bool] = {}  # whether a route takes parameters or a body (else one request is all there is)
    started = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        inputs[op.label] = bool(op.definition.raw.get("parameters") or op.definition.raw.get("requestBody"))
        if op.definition.raw.get("x-sse"):
            skipped.append(op.label)
            continue
        strategy = st.one_of(op.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             op.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @given(case=strategy)
        @settings(max_examples=2 * EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = case.call(base_url=server.url, headers=AUTH, timeout=30)
            case.validate_response(response, checks=CHECKS)
            examples[op.label] += 1

        fuzz()
    report = {"examples_per_route": dict(sorted(examples.items())), "not_fuzzed_sse": skipped,
              "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report, indent=1))
    assert len(examples) >= 18 and all(n >= (EXAMPLES // 2 if inputs[label] else 1) for label, n in examples.items()), report
