"""The alert routes on a real uvicorn server on 127.0.0.1 over an in-process backend whose rule book is the
controller's (actors/control/alerts.py): CRUD, 4xx naming the field, SSE resume across an API restart."""

from __future__ import annotations

import json

import httpx
import pytest

from actors.config import ApiConfig
from actors.control.alerts import AlertBook
from actors.control.kv import MemoryStore
from actors.control.webhooks import send_test_event
from actors.errors import StreamNotFound
from frontends.api.server import ApiServer
from tests.helpers import WebhookReceiver

API_KEY = "test-key-0123456789"


class AlertBackend:
    """The Backend's alert methods over an AlertBook (what the controller does), two streams."""

    def __init__(self, store: MemoryStore) -> None:
        self.book = AlertBook(store)
        self.streams = ["cam", "dock"]

    async def add_alert(self, spec):
        return self.book.add(spec, self.streams)

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

    async def list_streams(self):
        return []  # no stream telemetry: /metrics then carries the query and alert families only

    async def replicas(self):
        return []

    async def scale_event_totals(self):
        return {}

    async def alert_stats(self):
        return self.book.stats()

    async def remove_stream(self, stream_id):
        if stream_id not in self.streams:
            raise StreamNotFound(stream_id)
        self.streams.remove(stream_id)
        return self.book.remove_stream(stream_id)

    def fire(self, rule_id: str, version: int) -> None:
        self.book.apply([{"stream_id": self.book.get(rule_id)["stream_id"], "version": version, "t_start": 0.0,
                          "t_end": float(version), "answers": {rule_id: [version % 2 == 0, 1.0]}, "skipped": 0,
                          "latency_s": 0.01}])


def serve(backend):
    return ApiServer(backend, ApiConfig(port=0, api_key=API_KEY, max_body_bytes=65536))


def client(srv) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)


def read_events(http: httpx.Client, count: int, last_id: int | None = None) -> list[dict]:
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    out = []
    with http.stream("GET", "/v1/alerts/events", headers=headers) as response:
        assert response.status_code == 200
        current_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                current_id = int(line[4:])
            elif line.startswith("data: "):
                out.append({**json.loads(line[6:]), "_sse_id": current_id})
                if len(out) == count:
                    return out
    return out


@pytest.mark.parametrize("body, field, status", [
    ({"stream_id": "cam", "prompt": "q", "colour": 1}, "colour", 400),
    ({"stream_id": "cam", "prompt": ""}, "prompt", 400),
    ({"stream_id": "cam", "prompt": "q" * 600}, "prompt", 400),
    ({"stream_id": "cam", "prompt": "q", "webhook": "gopher://h/x"}, "webhook", 400),
    ({"stream_id": "nope", "prompt": "q"}, "stream_id", 404),
])
def test_bad_rules_get_4xx_naming_the_field_and_change_nothing(body, field, status):
    backend = AlertBackend(MemoryStore())
    with serve(backend) as srv, client(srv) as http:
        response = http.post("/v1/alerts", json=body)
        assert response.status_code == status
        assert response.json()["error"]["param"] == field
        assert http.get("/v1/alerts").json()["data"] == []


def test_crud_and_a_stream_removal_says_how_many_rules_went():
    backend = AlertBackend(MemoryStore())
    with serve(backend) as srv, client(srv) as http:
        made = http.post("/v1/alerts", json={"stream_id": "cam", "prompt": "Is a star visible?",
                                             "webhook": "https://user:pw123@example.org/h"})
        assert made.status_code == 201 and made.json()["id"] == "alert-1" and "webhook_secret" in made.json()
        http.post("/v1/alerts", json={"stream_id": "dock", "prompt": "Is something moving left?"})
        got = http.get("/v1/alerts/alert-1").json()
        assert got["webhook"] == "https://user:***@example.org/h" and "webhook_secret" not in got
        assert [r["id"] for r in http.get("/v1/alerts", params={"stream_id": "dock"}).json()["data"]] == ["alert-2"]
        assert http.get("/v1/alerts/alert-9").status_code == 404
        assert http.delete("/v1/alerts/alert-2").json()["deleted"] is True
        assert http.delete("/v1/alerts/alert-2").json()["error"]["code"] == "alert_not_found"
        removed = http.delete("/v1/streams/cam").json()
        assert removed["alerts_removed"] == 1 and http.get("/v1/alerts").json()["data"] == []
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert "tokdyn_alert_rules 0.0" in metrics.text and "tokdyn_alert_evaluations_total" in metrics.text


def test_sse_resumes_after_an_api_restart_without_losing_an_event():
    store = MemoryStore()  # the controller's durable table: outlives the API
    backend = AlertBackend(store)
    rule = backend.book.add({"stream_id": "cam", "prompt": "q", "cooldown_s": 0}, backend.streams)["id"]
    for version in (0, 2, 4):  # yes at even versions, no at odd ones: three firings
        backend.fire(rule, version)
        backend.fire(rule, version + 1)
    with serve(backend) as srv, client(srv) as http:
        first = read_events(http, 2)
    assert [e["_sse_id"] for e in first] == [1, 2] and first[0]["rule_id"] == rule
    for version in (6, 8):  # fired while the API is down
        backend.fire(rule, version)
        backend.fire(rule, version + 1)
    with serve(AlertBackend(store)) as srv, client(srv) as http:  # a new API process, a new book on the table
        rest = read_events(http, 3, last_id=first[-1]["_sse_id"])
        assert [e["id"] for e in rest] == [3, 4, 5]
        assert [e["snapshot_version"] for e in rest] == [4, 6, 8]
        assert http.get("/v1/alerts/events", headers={"Last-Event-ID": "x"}).status_code == 400


def test_a_rule_s_webhook_can_be_tested_over_http():
    backend = AlertBackend(MemoryStore())
    receiver = WebhookReceiver([])
    try:
        with serve(backend) as srv, client(srv) as http:
            hooked = http.post("/v1/alerts", json={"stream_id": "cam", "prompt": "q", "webhook": receiver.url}).json()
            plain = http.post("/v1/alerts", json={"stream_id": "cam", "prompt": "q"}).json()
            tested = http.post(f"/v1/alerts/{hooked['id']}/test")
            assert tested.status_code == 200 and tested.json()["delivered"] is True and len(receiver.got) == 1
            refused = http.post(f"/v1/alerts/{plain['id']}/test")
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "webhook"
            assert http.post("/v1/alerts/alert-9/test").json()["error"]["code"] == "alert_not_found"
    finally:
        receiver.shutdown()
