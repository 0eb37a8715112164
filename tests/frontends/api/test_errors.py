"""Every client mistake gets a 4xx in the OpenAI error shape, over plain HTTP; never a 500."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.frontends.api.conftest import API_KEY, MAX_BODY, video_question

JSON = {"Content-Type": "application/json"}  # the API refuses bodies of any other type (frontends/api/guard.py)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == ("invalid_request_error" if status != 401 else "authentication_error")
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture
def cam(backend, http):
    http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}).raise_for_status()
    backend.feed("cam")
    return "cam"


def chat(http: httpx.Client, **body) -> httpx.Response:
    return http.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("path", ["/ready", "/v1/streams", "/v1/streams/cam", "/v1/models", "/metrics"])
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {API_KEY}", "Bearer"])
def test_every_route_but_health_needs_the_api_key(server, path, header):
    headers = {} if header is None else {"Authorization": header}
    response = httpx.get(server.url + path, headers=headers)
    assert_error(response, 401, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/health").status_code == 200


def test_chat_and_stream_management_need_the_api_key_too(server):
    assert_error(httpx.post(f"{server.url}/v1/chat/completions", json={}), 401)
    assert_error(httpx.delete(f"{server.url}/v1/streams/cam"), 401)


def test_unknown_stream_is_404_everywhere(http):
    assert_error(chat(http, messages=video_question("ghost")), 404, "stream_not_found")
    assert_error(http.get("/v1/streams/ghost"), 404, "stream_not_found")
    assert_error(http.delete("/v1/streams/ghost"), 404, "stream_not_found")


def test_stream_without_a_snapshot_yet_is_409_not_ready(http):
    http.post("/v1/streams", json={"id": "fresh", "url": "synthetic://"}).raise_for_status()
    assert_error(chat(http, messages=video_question("fresh")), 409, "stream_not_ready")


@pytest.mark.parametrize("body, code", [
    ({"messages": []}, "empty_conversation"),
    ({"messages": [{"role": "assistant", "content": "hi"}], "stream_id": "cam"}, "empty_conversation"),
    ({"messages": [{"role": "user", "content": "   "}], "stream_id": "cam"}, "empty_conversation"),
    ({}, "missing_field"),
    ({"messages": [{"role": "user", "content": "what?"}]}, "missing_stream"),
])
def test_conversation_without_a_question_or_stream_is_400(http, cam, body, code):
    assert_error(chat(http, **body), 400, code)


@pytest.mark.parametrize("body, param", [
    ({"messages": "what moves?"}, "messages"),
    ({"messages": [["user", "hi"]]}, "messages[0]"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "x": 1}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "http://x/v.mp4"}}]}]},
     "messages[0].content[0].video_url.url"),
    ({"max_tokens": "8"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"stream_id": 7}, "stream_id"),
    ({"model": ["a"]}, "model"),
    ({"n": 3}, "n"),
    ({"stream_options": []}, "stream_options"),
])
def test_wrong_types_and_ranges_are_400_naming_the_field(http, cam, body, param):
    full = {"messages": video_question(cam), **body}
    error = assert_error(chat(http, **full), 400)
    assert error["param"] == param


def test_two_different_streams_in_one_question_are_400(http, cam):
    assert_error(chat(http, messages=video_question(cam), stream_id="other"), 400, "multiple_streams")


def test_unknown_model_is_404(http, cam):
    assert_error(chat(http, messages=video_question(cam), model="gpt-4o"), 404, "model_not_found")


def test_non_finite_temperature_is_400(http, cam):
    body = '{"messages": [{"role": "user", "content": "hi"}], "stream_id": "cam", "temperature": NaN}'
    assert_error(http.post("/v1/chat/completions", content=body, headers=JSON), 400)


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"\xff\xfe{}", b"[" * 50_000, b'"just a string"', b"[]"])
def test_malformed_or_non_object_json_is_400(http, raw):
    response = http.post("/v1/chat/completions", content=raw, headers=JSON)
    assert_error(response, 400)


def test_body_over_the_limit_is_413_from_the_declared_length(http):
    big = b'{"messages": "' + b"x" * (MAX_BODY + 10) + b'"}'
    assert_error(http.post("/v1/chat/completions", content=big, headers=JSON), 413, "body_too_large")


def test_chunked_body_over_the_limit_is_413_before_the_body_ends(server):
    # A raw chunked upload that never finishes: only a server that counts while reading can answer at all.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n\r\n")
        for _ in range(MAX_BODY // 4096 + 2):
            sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        reply = b""
        while b"}}" not in reply and (piece := sock.recv(65536)):  # headers and body may come apart
            reply += piece
    assert reply.startswith(b"HTTP/1.1 413") and b"body_too_large" in reply


def test_stream_management_errors(http, cam):
    assert_error(http.post("/v1/streams", json={"id": "cam", "url": "synthetic://"}), 409, "stream_exists")
    assert_error(http.post("/v1/streams", json={"url": "synthetic://"}), 400)
    assert_error(http.post("/v1/streams", json={"id": "x", "url": 5}), 400)
    error = assert_error(http.post("/v1/streams", json={"id": "x", "url": "synthetic://", "sample_rate_hz": -1}), 400)
    assert "sample_rate_hz" in error["message"]
    error = assert_error(http.post("/v1/streams", json={"id": "x", "url": "synthetic://", "method": "magic"}), 400)
    assert "method" in error["message"]
    assert_error(http.post("/v1/streams", json={"id": "bad id!", "url": "synthetic://"}), 400)
    assert_error(http.post("/v1/streams", json={"id": "x", "url": "synthetic://", "colour": "red"}), 400)
    assert_error(http.post("/v1/streams", content=b"{oops", headers=JSON), 400, "invalid_json")


def test_unknown_route_and_method_are_openai_shaped(http):
    assert_error(http.get("/v1/nothing"), 404, "not_found")
    assert_error(http.put("/v1/models"), 405, "method_not_allowed")
