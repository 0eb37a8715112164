"""Hostile HTTP requests against the API on a real uvicorn server (127.0.0.1) over real parts in-process:
cross-site and non-JSON requests, undecodable text, oversized prompts, internals in error bodies, `stop`."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.config import ApiConfig
from frontends.api.server import ApiServer
from tests.frontends.api.conftest import API_KEY, MAX_BODY, video_question
from tests.frontends.api.local_backend import LocalBackend

EVIL = "http://evil.example"
FRIEND = "http://friend.example:3000"
PROMPT_CAP = 400  # tokens; the tiny model's own default (its context) is far above any test body
# What must never reach a client: tracebacks, source paths, pids, IPv4 addresses, actor ids.
INTERNALS = re.compile(r"Traceback|File \"|\.py\b|/work/|/tmp/|pid[ =:]\s*\d|\b\d{1,3}(\.\d{1,3}){3}\b|"
                       r"actor[_ ]id|\x1b\[")


def assert_clean_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    assert not INTERNALS.search(response.text), response.text
    return error


@pytest.fixture(params=[None, API_KEY], ids=["no-key", "key"])
def guarded(request, tiny_model):
    """(server, headers, backend): the API with no key and with one, allowing one other origin."""
    backend = LocalBackend(tiny_model, max_prompt_tokens=PROMPT_CAP)
    config = ApiConfig(port=0, api_key=request.param, max_body_bytes=MAX_BODY, allowed_origins=(FRIEND,))
    headers = {"Authorization": f"Bearer {request.param}"} if request.param else {}
    with ApiServer(backend, config) as server:
        yield server, headers, backend


def _post(server, headers: dict, path: str, body: dict | bytes, **more: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=content, headers={**headers, **more}, timeout=30)


def test_cross_site_requests_are_refused_and_start_nothing(guarded):
    server, headers, backend = guarded
    spec = {"id": "cam", "url": "synthetic://"}
    # a browser-style "simple" POST from another site, as any web page could send it
    refused = [_post(server, headers, "/v1/streams", spec, **{"Content-Type": "text/plain", "Origin": EVIL}),
               _post(server, headers, "/v1/streams", spec, **{"Content-Type": "application/json", "Origin": EVIL}),
               _post(server, headers, "/v1/streams", spec, **{"Content-Type": "application/json",
                                                              "Sec-Fetch-Site": "cross-site"}),
               _post(server, headers, "/v1/streams", spec, **{"Content-Type": "application/json", "Origin": "null"}),
               httpx.get(server.url + "/v1/streams", headers={**headers, "Origin": EVIL}),
               httpx.get(server.url + "/v1/streams/cam/frame.jpg", headers={**headers, "Sec-Fetch-Site": "same-site"}),
               httpx.options(server.url + "/v1/streams", headers={"Origin": EVIL,
                                                                  "Access-Control-Request-Method": "POST"})]
    for response in refused:
        assert_clean_error(response, 403, "cross_origin")
        assert "access-control-allow-origin" not in response.headers
    assert not backend.streams  # nothing was started
    # the same request from the server's own origin (the web console) passes
    own = _post(server, headers, "/v1/streams", spec, **{"Content-Type": "application/json", "Origin": server.url,
                                                         "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 201, own.text


def test_an_allowed_origin_gets_cors_and_its_preflight_answered(guarded):
    server, headers, backend = guarded
    preflight = httpx.options(server.url + "/v1/streams", headers={
        "Origin": FRIEND, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == FRIEND
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    created = _post(server, headers, "/v1/streams", {"id": "cam", "url": "synthetic://"},
                    **{"Content-Type": "application/json", "Origin": FRIEND, "Sec-Fetch-Site": "cross-site"})
    assert created.status_code == 201 and created.headers["access-control-allow-origin"] == FRIEND


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp"])
@pytest.mark.parametrize("path", ["/v1/streams", "/v1/chat/completions"])
def test_bodies_that_are_not_declared_json_are_refused(guarded, content_type, path):
    server, headers, backend = guarded
    body = {"id": "cam", "url": "synthetic://"} if path == "/v1/streams" else {
        "stream_id": "cam", "messages": [{"role": "user", "content": "hi"}]}
    more = {} if content_type is None else {"Content-Type": content_type}
    response = _post(server, headers, path, body, **more)
    error = assert_clean_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]
    assert not backend.streams
    ok = _post(server, headers, "/v1/streams", {"id": "ok", "url": "synthetic://"},
               **{"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 201


def _chat(server, headers: dict, raw: bytes) -> httpx.Response:
    return _post(server, headers, "/v1/chat/completions", raw, **{"Content-Type": "application/json"})


@pytest.mark.parametrize("raw", [
    rb'{"stream_id": "cam", "messages": [{"role": "user", "content": "a\ud800b"}]}',
    rb'{"stream_id": "cam", "messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]}',
    rb'{"stream_id": "cam\ud83d", "messages": [{"role": "user", "content": "hi"}]}',
    rb'{"stream_id": "cam", "messages": [{"role": "user", "content": "hi", "\udc00": 1}]}',
], ids=["content", "part", "stream-id", "key"])
def test_lone_surrogates_are_400_without_internals(guarded, raw):
    server, headers, backend = guarded
    backend.streams.clear()
    _post(server, headers, "/v1/streams", {"id": "cam", "url": "synthetic://"}, **{"Content-Type": "application/json"})
    backend.feed("cam")
    assert_clean_error(_chat(server, headers, raw), 400, "invalid_text")
    # the stream id path is checked too
    assert_clean_error(_post(server, headers, "/v1/streams", rb'{"id": "\ud800", "url": "synthetic://"}',
                             **{"Content-Type": "application/json"}), 400, "invalid_text")


def test_undecodable_bytes_and_paths_are_400_without_internals(guarded):
    server, headers, _ = guarded
    assert_clean_error(_chat(server, headers, b'{"stream_id": "cam", "messages": "\xff\xfe"}'), 400, "invalid_json")
    # uvicorn decodes %-escapes that are not UTF-8 to U+FFFD: a plain unknown stream, not a crash
    assert_clean_error(httpx.get(server.url + "/v1/streams/%ff%fe", headers=headers), 404, "stream_not_found")


def test_a_pipeline_failure_is_a_500_that_names_no_internals(guarded):
    server, headers, backend = guarded
    _post(server, headers, "/v1/streams", {"id": "cam", "url": "synthetic://"}, **{"Content-Type": "application/json"})
    backend.feed("cam")
    backend.fail_next_ask = RuntimeError('\x1b[31mTraceback: File "/work/main/actors/workers/llm.py", pid=4242, '
                                         'ip=192.0.2.2, actor_id=abc123\x1b[0m')
    response = _post(server, headers, "/v1/chat/completions", {"messages": video_question("cam")},
                     **{"Content-Type": "application/json"})
    assert_clean_error(response, 500, "backend_error")


def test_an_oversized_prompt_is_refused_with_the_limit_and_counted(guarded):
    server, headers, backend = guarded
    _post(server, headers, "/v1/streams", {"id": "cam", "url": "synthetic://"}, **{"Content-Type": "application/json"})
    backend.feed("cam")
    long_question = "how many people walked past the door " * 200  # far more than PROMPT_CAP tokens
    response = _post(server, headers, "/v1/chat/completions", {"messages": video_question("cam", long_question)},
                     **{"Content-Type": "application/json"})
    error = assert_clean_error(response, 400, "prompt_too_long")
    assert str(PROMPT_CAP) in error["message"]
    assert backend.open_answers == 0  # refused before any generation
    metrics = httpx.get(server.url + "/metrics", headers=headers).text
    rejected = {s.labels["code"]: s.value for f in text_string_to_metric_families(metrics)
                if f.name == "tokdyn_queries_rejected" for s in f.samples if s.name.endswith("_total")}
    assert rejected.get("prompt_too_long") == 1
    short = _post(server, headers, "/v1/chat/completions", {"messages": video_question("cam"), "max_tokens": 2},
                  **{"Content-Type": "application/json"})
    assert short.status_code == 200, short.text


def _answer(server, headers: dict, stream: bool, **body) -> tuple[str, str]:
    """(text, finish_reason) of one answer, streamed (SSE) or not."""
    payload = {"messages": video_question("cam"), "max_tokens": 24, "temperature": 0, "stream": stream, **body}
    response = _post(server, headers, "/v1/chat/completions", payload, **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    if not stream:
        choice = response.json()["choices"][0]
        return choice["message"]["content"], choice["finish_reason"]
    chunks = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]]
    return text, finish[-1]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_stop_ends_the_answer_before_the_stop_string(guarded, stream):
    server, headers, backend = guarded
    _post(server, headers, "/v1/streams", {"id": "cam", "url": "synthetic://"}, **{"Content-Type": "application/json"})
    backend.feed("cam")
    full, _ = _answer(server, headers, stream)  # greedy: the same text every time
    assert len(full) >= 6, full
    stop = full[len(full) // 2:len(full) // 2 + 2]
    expected = full[:full.find(stop)]
    text, finish = _answer(server, headers, stream, stop=[stop, "never-appears"])
    assert text == expected and stop not in text and finish == "stop"
    text, finish = _answer(server, headers, stream, stop=stop)  # a single string works too
    assert text == expected
    assert_clean_error(_post(server, headers, "/v1/chat/completions",
                             {"messages": video_question("cam"), "stop": ["a", "b", "c", "d", "e"]},
                             **{"Content-Type": "application/json"}), 400, "invalid_value")
