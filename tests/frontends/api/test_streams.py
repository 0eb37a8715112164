"""Stream management over HTTP, and /metrics parsed with the Prometheus text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from actors.errors import PipelineUnavailable


def stream_samples(http) -> dict[tuple[str, str], float]:
    """{(metric sample name, stream_id): value} from /metrics."""
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, s.labels["stream_id"]): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples
            if "stream_id" in s.labels}


def test_add_list_status_remove(http, backend):
    # when a stream is added with the short keys of the API
    spec = {"id": "door", "url": "synthetic://?fps=10", "sample_rate_hz": 5, "budget": 24, "method": "token_dynamics"}
    added = http.post("/v1/streams", json=spec)
    assert added.status_code == 201 and added.json()["stream_id"] == "door"
    assert backend.streams["door"].spec.compressor.budget == 24  # budget/method went into the compressor config
    # then it is listed, and its status carries the telemetry
    assert [s["stream_id"] for s in http.get("/v1/streams").json()["data"]] == ["door"]
    backend.feed("door", chunks=3)
    status = http.get("/v1/streams/door").json()
    assert status["frames_in"] == 6 and status["tokens_held"] <= 24 and status["compression_ratio"] > 1
    # and removing it makes it unknown
    assert http.delete("/v1/streams/door").json() == {"id": "door", "object": "stream", "deleted": True,
                                                      "alerts_removed": 0}
    assert http.get("/v1/streams").json()["data"] == []
    assert http.get("/v1/streams/door").status_code == 404


def test_metrics_counters_move_as_the_stream_plays(http, backend):
    http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}).raise_for_status()
    backend.feed("cam", chunks=1)
    before = stream_samples(http)
    backend.feed("cam", chunks=2)
    after = stream_samples(http)
    for name in ("tokdyn_stream_frames_in_total", "tokdyn_stream_frames_sampled_total",
                 "tokdyn_stream_tokens_seen_total", "tokdyn_stream_snapshot_version"):
        assert after[name, "cam"] > before[name, "cam"], name
    assert after["tokdyn_stream_tokens_held", "cam"] < after["tokdyn_stream_tokens_seen_total", "cam"]
    assert after["tokdyn_stream_compression_ratio", "cam"] > before["tokdyn_stream_compression_ratio", "cam"]
    assert after["tokdyn_stream_up", "cam"] == 1
    # a removed stream disappears from the metrics instead of going stale
    http.delete("/v1/streams/cam").raise_for_status()
    assert not any(stream == "cam" for _, stream in stream_samples(http))


def test_health_and_ready(server, http):
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ready"}


def test_unreachable_pipeline_is_503_and_not_ready(http, backend):
    async def down(*args):
        raise PipelineUnavailable("controller restarting")

    async def not_ready():
        return False

    backend.list_streams = backend.stream_status = down
    backend.ready = not_ready
    for path in ("/v1/streams", "/v1/streams/cam", "/metrics"):
        response = http.get(path)
        assert response.status_code == 503 and response.json()["error"]["code"] == "backend_unavailable", path
    assert http.get("/ready").json()["error"]["code"] == "not_ready"
    assert http.get("/health").status_code == 200  # the HTTP process itself is fine
