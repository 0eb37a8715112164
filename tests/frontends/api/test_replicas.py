"""Replica pools over HTTP: GET /v1/replicas, POST /v1/replicas/{role}, their errors, and the replica
families of /metrics (parsed with the Prometheus text parser), against the in-process pools of LocalBackend."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.config import MAX_REPLICAS
from actors.errors import PipelineUnavailable
from configs.schema import ConfigError
from tests.frontends.api.conftest import API_KEY, video_question
from tests.frontends.api.test_errors import assert_error
from tests.frontends.api.test_hardening import assert_clean_error


def names(body: dict, role: str) -> list[str]:
    return [r["name"] for r in body["data"] if r["role"] == role]


def replica_samples(http: httpx.Client) -> dict[tuple[str, ...], float]:
    """{(sample name, role, replica or action[, state]): value} of the replica and scale-event families."""
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return {(s.name, *(s.labels[k] for k in ("role", "replica", "action", "state") if k in s.labels)): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples
            if s.name.startswith(("tokdyn_replica_", "tokdyn_scale_"))}


def test_list_then_scale_up_and_down(http, backend):
    # given three streams and one replica of each role
    for cam in ("a", "b", "c"):
        http.post("/v1/streams", json={"id": cam, "url": "synthetic://"}).raise_for_status()
    listed = http.get("/v1/replicas").json()
    assert listed["object"] == "list" and listed["events"] == []
    assert [(r["role"], r["name"], r["state"], r["streams"]) for r in listed["data"]] == [
        ("encoder", "local-encoder", "alive", 3), ("llm", "local-llm", "alive", 3)]
    assert set(listed["data"][0]) == {"role", "name", "node_id", "state", "streams", "frames_per_s", "batch_fill",
                                      "queue_depth", "answers_in_flight"}
    # when the encoders are scaled to 3, the answer is the replicas after the change: one stream each
    scaled = http.post("/v1/replicas/encoder", json={"replicas": 3})
    assert scaled.status_code == 200, scaled.text
    assert names(scaled.json(), "encoder") == ["local-encoder", "local-encoder-2", "local-encoder-3"]
    assert [r["streams"] for r in scaled.json()["data"] if r["role"] == "encoder"] == [1, 1, 1]
    assert names(scaled.json(), "llm") == ["local-llm"]
    # and the events say what changed, oldest first
    events = http.get("/v1/replicas").json()["events"]
    assert [(e["role"], e["action"], e["replica"], e["replicas"], e["reason"]) for e in events] == [
        ("encoder", "add", "local-encoder-2", 2, "requested"), ("encoder", "add", "local-encoder-3", 3, "requested")]
    # when scaled back down, the streams return to the one left
    down = http.post("/v1/replicas/encoder", json={"replicas": 1}).json()
    assert [(r["name"], r["streams"]) for r in down["data"] if r["role"] == "encoder"] == [("local-encoder", 3)]
    assert [e["action"] for e in http.get("/v1/replicas").json()["events"]] == ["add", "add", "remove", "remove"]


def test_metrics_report_each_replica_and_count_scale_events(http, backend):
    http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}).raise_for_status()
    http.post("/v1/replicas/llm", json={"replicas": 2}).raise_for_status()
    backend.feed("cam", chunks=2, frames_per_chunk=4)
    samples = replica_samples(http)
    assert samples["tokdyn_replica_up", "encoder", "local-encoder", "alive"] == 1
    assert samples["tokdyn_replica_up", "llm", "local-llm-2", "alive"] == 1
    assert samples["tokdyn_replica_streams", "encoder", "local-encoder"] == 1
    assert samples["tokdyn_replica_frames_per_second", "encoder", "local-encoder"] > 0
    assert samples["tokdyn_replica_batch_fill", "encoder", "local-encoder"] == 4 / 16  # 4 frames a batch of 16
    assert samples["tokdyn_replica_answers_in_flight", "llm", "local-llm"] == 0
    # fields that do not apply to a role (None) are left out, not reported as 0
    assert ("tokdyn_replica_frames_per_second", "llm", "local-llm") not in samples
    assert ("tokdyn_replica_answers_in_flight", "encoder", "local-encoder") not in samples
    assert samples["tokdyn_scale_events_total", "llm", "add"] == 1
    # a removed replica disappears instead of going stale; the removal is counted
    http.post("/v1/replicas/llm", json={"replicas": 1}).raise_for_status()
    after = replica_samples(http)
    assert not any("local-llm-2" in key for key in after)
    assert after["tokdyn_scale_events_total", "llm", "remove"] == 1


def test_scale_event_counter_never_goes_down_as_the_history_drops_old_events(http, backend):
    http.post("/v1/replicas/encoder", json={"replicas": 3}).raise_for_status()
    assert replica_samples(http)["tokdyn_scale_events_total", "encoder", "add"] == 2
    # the controller keeps only its recent events: the oldest ones fall off as new ones arrive, even
    # between two scrapes; the counter is the controller's total, not a count of the list
    for count in (4, 2, 3):  # add, remove, remove, add
        http.post("/v1/replicas/encoder", json={"replicas": count}).raise_for_status()
    del backend.events[:4]  # only the last remove and add are still listed
    samples = replica_samples(http)
    assert samples["tokdyn_scale_events_total", "encoder", "add"] == 4
    assert replica_samples(http)["tokdyn_scale_events_total", "encoder", "add"] == 4  # counted once


def test_an_answer_being_generated_shows_on_its_replica(server, backend):
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    with http:
        http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}).raise_for_status()
        backend.feed("cam")
        backend.pace_s = 0.5  # a slow model: the answer stays open while the test looks
        body = {"messages": video_question("cam"), "max_tokens": 32, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            pieces = response.iter_bytes()  # kept referenced: dropping it would close the connection
            next(pieces)  # the answer has started
            busy = {r["name"]: r["answers_in_flight"] for r in http.get("/v1/replicas").json()["data"]
                    if r["role"] == "llm"}
            assert busy == {"local-llm": 1}


@pytest.mark.parametrize("role, body, param, code", [
    ("gpu", {"replicas": 2}, "role", "invalid_value"),
    ("Encoder", {"replicas": 2}, "role", "invalid_value"),
    ("encoder", {}, "replicas", "missing_field"),
    ("encoder", {"replicas": None}, "replicas", "missing_field"),
    ("encoder", {"replicas": 0}, "replicas", "invalid_value"),
    ("encoder", {"replicas": MAX_REPLICAS + 1}, "replicas", "invalid_value"),
    ("encoder", {"replicas": -1}, "replicas", "invalid_value"),
    ("llm", {"replicas": "2"}, "replicas", "invalid_type"),
    ("llm", {"replicas": 2.5}, "replicas", "invalid_type"),
    ("llm", {"replicas": True}, "replicas", "invalid_type"),
    ("llm", {"replicas": "auto"}, "replicas", "invalid_type"),
    ("llm", [2], None, "invalid_type"),
    ("llm", {"replicas": 2, "replica": 3}, None, "unknown_field"),
])
def test_bad_scale_request_is_400_naming_the_param_and_changes_nothing(http, backend, role, body, param, code):
    error = assert_error(http.post(f"/v1/replicas/{role}", json=body), 400, code)
    assert error["param"] == param
    assert backend.events == [] and [len(backend.pools[r]) for r in ("encoder", "llm")] == [1, 1]


def test_bad_json_body_is_400(http):
    response = http.post("/v1/replicas/encoder", content=b'{"replicas": ', headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_scale_the_cluster_cannot_host_is_409_and_changes_nothing(http, backend):
    error = assert_error(http.post("/v1/replicas/encoder", json={"replicas": backend.capacity + 1}), 409,
                         "scale_refused")
    assert error["param"] == "replicas" and f"at most {backend.capacity} replicas" in error["message"]
    assert names(http.get("/v1/replicas").json(), "encoder") == ["local-encoder"]
    assert backend.events == []


def test_a_config_bound_of_the_pipeline_is_400_naming_replicas(http, backend):
    async def bounded(role, count):  # as a controller whose autoscale bounds are tighter than MAX_REPLICAS
        raise ConfigError("encoder.autoscale.max_replicas: expected at most 2 replicas, got 3")

    backend.scale = bounded
    error = assert_error(http.post("/v1/replicas/encoder", json={"replicas": 3}), 400, "invalid_value")
    assert error["param"] == "replicas" and "autoscale.max_replicas" in error["message"]


def test_unreachable_pipeline_is_503(http, backend):
    async def down(*args):
        raise PipelineUnavailable("controller restarting")

    backend.replicas = backend.scale_events = backend.scale = down
    for response in (http.get("/v1/replicas"), http.get("/metrics"),
                     http.post("/v1/replicas/llm", json={"replicas": 2})):
        assert response.status_code == 503 and response.json()["error"]["code"] == "backend_unavailable"


def test_an_unexpected_failure_is_500_without_internals(http, backend):
    async def broken(role, count):
        raise RuntimeError('Traceback: File "/work/main/actors/control/controller.py", pid=4242 on 10.1.2.3')

    backend.scale = broken
    assert_clean_error(http.post("/v1/replicas/llm", json={"replicas": 2}), 500, "backend_error")
    assert http.get("/v1/replicas").status_code == 200  # and the API keeps serving


@pytest.mark.parametrize("header", [None, "Bearer wrong-key"])
def test_replica_routes_need_the_api_key(server, backend, header):
    headers = {} if header is None else {"Authorization": header}
    assert_error(httpx.get(f"{server.url}/v1/replicas", headers=headers), 401, "invalid_api_key")
    assert_error(httpx.post(f"{server.url}/v1/replicas/encoder", json={"replicas": 2}, headers=headers), 401,
                 "invalid_api_key")
    assert backend.events == [] and len(backend.pools["encoder"]) == 1
