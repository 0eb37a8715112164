"""Questions about a time window: `"tokdyn": {"window": {"t_start", "t_end"}}` in the chat body."""

from __future__ import annotations

import pytest

from tests.frontends.api.conftest import video_question


@pytest.fixture
def cam(backend, http):
    """A stream 'cam' with 3.2 s of media (16 chunks of 2 frames at 10 fps), segments of 1 s."""
    spec = {"id": "cam", "url": "synthetic://?fps=10", "budget": 8, "compressor": {"segment_s": 1.0}}
    assert http.post("/v1/streams", json=spec).status_code == 201
    backend.feed("cam", chunks=16)
    return "cam"


def ask(http, body_extra: dict):
    return http.post("/v1/chat/completions", json={"messages": video_question("cam"), "max_tokens": 4, **body_extra})


def test_window_answer_covers_only_its_window(http, cam):
    # when asked about 0.5..1.5 s of a 3.2 s stream, then the answer's span lies inside that window
    reply = ask(http, {"tokdyn": {"window": {"t_start": 0.5, "t_end": 1.5}}})
    assert reply.status_code == 200, reply.text
    span = reply.json()["tokdyn"]["span"]
    assert 0.5 <= span["t_start"] <= span["t_end"] <= 1.5
    assert reply.json()["usage"]["visual_tokens"] <= 8
    # and without a window the live memory answers over the whole stream
    whole = ask(http, {})
    assert whole.json()["tokdyn"]["span"] == {"t_start": 0.0, "t_end": pytest.approx(3.1)}


@pytest.mark.parametrize("window,code,message", [
    ({"t_start": 50.0, "t_end": 60.0}, "window_unavailable", "expected a span the segments hold"),
    ({"t_start": 2.0, "t_end": 1.0}, None, "expected t_start <= t_end"),
    ({"t_start": -1.0, "t_end": 1.0}, None, "t_start: expected 0.0.."),
    ({"t_start": 1.0}, "missing_field", "expected both t_start and t_end"),
    ({"t_start": "0", "t_end": 1.0}, "invalid_type", "t_start: expected a number"),
])
def test_bad_or_unavailable_window_is_a_clear_400(http, cam, window, code, message):
    reply = ask(http, {"tokdyn": {"window": window}})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and (code is None or error["code"] == code)
    assert "/tmp" not in error["message"] and "segments" not in error["message"].split("expected")[0]
