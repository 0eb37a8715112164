"""The console's routes on a real `tokdyn serve`: frame.jpg (plain and with the key map), keymap, the SSE
feeds, the static page; the same auth and error shape as the rest of the API, counted in /metrics."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.frontends.console.conftest import STARTUP_S
from tests.helpers import wait_for

pytestmark = pytest.mark.ray
STREAM = {"id": "routes", "url": "synthetic://?width=320&height=240&fps=10", "sample_rate_hz": 4,
          "frames_per_chunk": 2, "budget": 16}
ROUTES = ("/v1/streams/routes/frame.jpg", "/v1/streams/routes/keymap", "/v1/streams/routes/events", "/v1/events")


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def first_event(http, path: str) -> tuple[str, dict]:
    """(name, data) of the first server-sent event of `path`."""
    with http.stream("GET", path) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in response.iter_lines():
            if not line and lines:
                break
            lines.append(line)
    name = next(line[6:].strip() for line in lines if line.startswith("event:"))
    return name, json.loads("".join(line[5:] for line in lines if line.startswith("data:")))


def request_counts(http) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {(s.labels["route"], s.labels["status"]): s.value for f in families for s in f.samples
            if s.name == "tokdyn_http_requests_total"}


def test_frame_keymap_and_events_of_a_live_stream(serve):
    with serve.http() as http:
        assert http.post("/v1/streams", json=STREAM).status_code == 201
        try:
            wait_for(lambda: http.get("/v1/streams/routes/keymap").status_code == 200, STARTUP_S, "a key map")
            plain = http.get("/v1/streams/routes/frame.jpg")
            assert plain.status_code == 200 and plain.headers["content-type"] == "image/jpeg"
            assert plain.headers["cache-control"] == "no-store" and float(plain.headers["x-tokdyn-frame-t"]) >= 0
            image = np.asarray(Image.open(io.BytesIO(plain.content)))
            assert image.ndim == 3 and image.shape[0] == image.shape[1]  # as the encoder gets it: S x S
            # the overlay paints the frame its key map belongs to, and says which snapshot that is
            painted = http.get("/v1/streams/routes/frame.jpg", params={"overlay": "keymap"})
            assert painted.status_code == 200 and int(painted.headers["x-tokdyn-snapshot-version"]) >= 1
            keymap = http.get("/v1/streams/routes/keymap").json()
            k = len(keymap["tokens"])
            assert 1 <= k <= 16 and len(keymap["colours"]) == k and keymap["grid"] == [14, 14]
            ids = np.asarray(keymap["ids"])
            assert ids.shape == (14, 14) and ids.min() >= 0 and ids.max() < k
            for token in keymap["tokens"]:
                assert keymap["t_start"] <= token["first_seen"] <= token["last_seen"] <= keymap["t_end"]
            assert keymap["t_start"] <= keymap["t"] <= keymap["t_end"]
            # the SSE feeds start with the stream's status and the list
            name, status = first_event(http, "/v1/streams/routes/events")
            assert name == "status" and status["stream_id"] == "routes" and "lag_s" in status
            name, listing = first_event(http, "/v1/events")
            assert name == "streams" and [s["stream_id"] for s in listing["data"]] == ["routes"]
        finally:
            assert http.delete("/v1/streams/routes").status_code == 200
        # a removed stream is a 404 on every route, in the API's error shape
        for path in ROUTES[:3]:
            assert error_of(http.get(path))["code"] == "stream_not_found", path


def test_bad_requests_are_4xx_in_the_api_shape_and_counted(serve):
    with serve.http() as http, serve.http(key="wrong") as wrong, serve.http(key=None) as anonymous:
        before = request_counts(http)
        for path in ROUTES:
            assert error_of(wrong.get(path))["code"] == "invalid_api_key", path
            assert anonymous.get(path).status_code == 401, path
        huge = http.get("/v1/streams/nope/frame.jpg", params={"overlay": "x" * 20_000})
        assert huge.status_code in (400, 414, 431)  # refused, by us or by the HTTP server, never served
        long = http.get("/v1/streams/nope/frame.jpg", params={"overlay": "x" * 4_000})
        error = error_of(long)
        assert long.status_code == 400 and error["param"] == "overlay" and len(error["message"]) < 200
        assert error_of(http.get("/v1/streams/nope/frame.jpg", params={"overlay": "heat"}))["param"] == "overlay"
        assert error_of(http.get("/v1/streams/nope/frame.jpg", params={"size": "9"}))["code"] == "unknown_parameter"
        bad_id = http.get("/v1/streams/" + "a" * 300 + "/keymap")
        assert bad_id.status_code == 400 and error_of(bad_id)["code"] == "invalid_stream_id"
        assert error_of(http.get("/v1/streams/%2E%2E%20x/frame.jpg"))["code"] == "invalid_stream_id"
        for path in ("/v1/streams/nope/frame.jpg", "/v1/streams/nope/keymap", "/v1/streams/nope/events"):
            missing = http.get(path)
            assert missing.status_code == 404 and error_of(missing)["code"] == "stream_not_found", path
        after = request_counts(http)

    def grew(route: str, status: str) -> float:
        return after.get((route, status), 0) - before.get((route, status), 0)

    assert grew("/v1/streams/{stream_id}/frame.jpg", "401") == 2
    assert grew("/v1/events", "401") == 2
    assert grew("/v1/streams/{stream_id}/frame.jpg", "400") >= 4
    assert grew("/v1/streams/{stream_id}/keymap", "404") == 1
    assert grew("/v1/streams/{stream_id}/events", "404") == 1


def test_the_console_page_is_served_without_the_key_and_locked_down(serve):
    with serve.http(key=None) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and "tokdyn" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("main.js", "api.js", "streams.js", "live.js", "chat.js", "replicas.js", "alerts.js",
                      "console.css"):
            assert anonymous.get(f"/console/{asset}").status_code == 200, asset
        assert error_of(anonymous.get("/console/missing.js"))["code"] == "not_found"
        assert anonymous.get("/console/%2E%2E/app.py").status_code == 404  # no way out of the folder
        assert anonymous.get("/v1/streams").status_code == 401  # the data still needs the key
