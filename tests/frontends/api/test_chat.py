"""Chat completions through the official openai client, streamed and not, over real parts in-process."""

from __future__ import annotations

import gc
import json

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.frontends.api.conftest import API_KEY, video_question
from tests.helpers import wait_for


@pytest.fixture
def cam(backend, http):
    """A stream 'cam' with two compressed chunks (4 frames, 0.0..0.3 s of media time)."""
    assert http.post("/v1/streams", json={"id": "cam", "url": "synthetic://?fps=10", "budget": 16}).status_code == 201
    backend.feed("cam", chunks=2)
    return "cam"


def test_non_streamed_answer_reports_usage_with_visual_tokens_and_span(client, cam, tiny_model):
    # given a stream holding a compact memory; when asked through the openai client
    reply = client.chat.completions.create(model=tiny_model.name, messages=video_question(cam), max_tokens=8)
    # then a normal completion comes back, whose usage counts the visual tokens inside the prompt
    usage = reply.usage.model_dump()
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < usage["visual_tokens"] <= 16 < usage["prompt_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # and it says which media time it covers, and from which snapshot
    extra = reply.model_extra["tokdyn"]
    assert extra["stream_id"] == "cam" and extra["snapshot_version"] == 2
    assert extra["span"] == {"t_start": 0.0, "t_end": pytest.approx(0.3)}
    assert "not meaningful" in extra["note"]  # the tiny model has random weights, and says so


def test_streamed_answer_matches_the_non_streamed_one(client, cam, tiny_model):
    messages = video_question(cam)
    whole = client.chat.completions.create(model=tiny_model.name, messages=messages, max_tokens=8)
    chunks = list(client.chat.completions.create(model=tiny_model.name, messages=messages, max_tokens=8,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # greedy decoding: same memory, same answer
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].model_extra["tokdyn"]["span"]["t_end"] == pytest.approx(0.3)
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_stream_named_by_extra_body_field(client, cam, tiny_model):
    reply = client.chat.completions.create(model=tiny_model.name, max_tokens=4, extra_body={"stream_id": cam},
                                           messages=[{"role": "user", "content": "What moves?"}])
    assert reply.model_extra["tokdyn"]["stream_id"] == cam


def test_sse_wire_format(http, cam):
    # the raw bytes, as curl sees them: "data: {json}\n\n" events ending with "data: [DONE]"
    body = {"messages": video_question(cam), "max_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ") and json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_models_lists_the_answering_model(client, tiny_model):
    assert [m.id for m in client.models.list()] == [tiny_model.name]


def test_query_latency_and_ttft_histograms_count_answers(client, http, cam, tiny_model):
    def counts() -> dict[str, float]:
        families = text_string_to_metric_families(http.get("/metrics").text)
        return {s.name: s.value for f in families for s in f.samples if s.name.endswith("_count")}

    before = counts()
    client.chat.completions.create(model=tiny_model.name, messages=video_question(cam), max_tokens=4)
    list(client.chat.completions.create(model=tiny_model.name, messages=video_question(cam), max_tokens=4,
                                        stream=True))
    after = counts()
    for name in ("tokdyn_query_latency_seconds_count", "tokdyn_query_ttft_seconds_count"):
        assert after[name] == before.get(name, 0) + 2


def test_pipeline_failure_before_the_answer_is_a_clean_500_and_the_server_keeps_serving(client, backend, cam,
                                                                                         tiny_model, http):
    async def broken(*args, **kwargs):
        raise RuntimeError("LLM actor exploded")
        yield  # an async generator, like the real one

    backend.ask, real_ask = broken, backend.ask
    response = http.post("/v1/chat/completions", json={"messages": video_question(cam)})
    assert response.status_code == 500
    error = response.json()["error"]  # the cause stays in the server log: it may name pids, IPs, paths
    assert error["type"] == "server_error" and error["code"] == "backend_error" and "exploded" not in error["message"]
    backend.ask = real_ask
    assert client.chat.completions.create(model=tiny_model.name, messages=video_question(cam), max_tokens=2).choices


def test_pipeline_failure_mid_answer_ends_the_sse_stream_with_an_error_event(http, backend, cam):
    backend.fail_next_ask = RuntimeError("LLM actor died mid-answer")
    body = {"messages": video_question(cam), "max_tokens": 8, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert response.status_code == 200  # sent before the failure
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["type"] == "server_error" and "mid-answer" not in last["error"]["message"]
    assert "data: [DONE]" not in events
    assert http.get("/health").status_code == 200


def test_client_leaving_mid_answer_stops_the_generation(server, backend, cam):
    backend.pace_s = 0.5  # a slow model: 32 tokens would take 16 s
    body = {"messages": video_question(cam), "max_tokens": 32, "stream": True}
    gc.disable()  # the API must close the answer itself, not leave it to the garbage collector
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                pieces = response.iter_bytes()  # kept referenced: dropping it would close the connection
                next(pieces)  # the answer has started
                assert backend.open_answers == 1
        wait_for(lambda: backend.open_answers == 0, 5.0, "the abandoned answer to be closed")
    finally:
        gc.enable()


def test_openai_client_raises_its_own_error_types(client, tiny_model):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model=tiny_model.name, messages=video_question("nope"))
    assert err.value.code == "stream_not_found"
    bad_key = openai.OpenAI(base_url=str(client.base_url), api_key="wrong-key-000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()


def test_a_bug_in_the_api_is_still_an_openai_shaped_500(server, http, cam, monkeypatch):
    monkeypatch.setattr("frontends.api.chat._Turn.collect", None)  # calling None: a TypeError inside the handler
    response = http.post("/v1/chat/completions", json={"messages": video_question(cam)})
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    # uvicorn closes the connection after an unhandled error; a new one is served
    assert httpx.get(f"{server.url}/v1/models", headers=http.headers).status_code == 200
