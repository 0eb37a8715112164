"""End to end through the real Ray pipeline: the API actor in front of PIPELINE's controller, a live
synthetic stream, the tiny model; driven with the official openai client and plain HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from actors.config import ApiConfig, EncoderConfig, LLMConfig, PipelineConfig, TransportConfig
from vlm import ModelConfig
from tests.frontends.api.conftest import served_pipeline, video_question
from tests.helpers import wait_for

pytestmark = pytest.mark.ray
API_KEY = "e2e-key-0123456789"
STARTUP_S = 180.0  # actor processes + imports + tiny model on a busy 2-core machine
LIVE = {"id": "live", "url": "synthetic://?width=160&height=120&fps=10", "sample_rate_hz": 4,
        "frames_per_chunk": 2, "budget": 16}


@pytest.fixture(scope="module")
def api(ray_local, tmp_path_factory):
    """(url, api actor) of the API serving a fresh tiny pipeline."""
    config = PipelineConfig(
        transport=TransportConfig(hwm=8, send_timeout_ms=500), model=ModelConfig(path="tiny", max_new_tokens=6),
        encoder=EncoderConfig(batch_frames=8, max_wait_ms=20), llm=LLMConfig(max_concurrent=2),
        api=ApiConfig(port=0, api_key=API_KEY), checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
    )
    with served_pipeline(config) as (_, url, actor):
        yield url, actor


@pytest.fixture(scope="module")
def http(api):
    with httpx.Client(base_url=api[0], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client


def scrape(http: httpx.Client) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {(s.name, s.labels.get("stream_id", "")): s.value for f in families for s in f.samples}


def answered(client: openai.OpenAI, **kwargs):
    """The answer, or None while the LLM has no snapshot of the stream yet (409 stream_not_ready)."""
    try:
        return client.chat.completions.create(**kwargs)
    except openai.ConflictError:
        return None


def test_live_stream_is_managed_played_metered_and_answered(api, http):
    url, _ = api
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    assert url.startswith("http://127.0.0.1:") and http.get("/ready").status_code == 200
    # given a live synthetic stream added over HTTP
    added = http.post("/v1/streams", json=LIVE)
    assert added.status_code == 201, added.text
    assert [s["stream_id"] for s in http.get("/v1/streams").json()["data"]] == ["live"]
    wait_for(lambda: (http.get("/v1/streams/live").json().get("snapshot_version") or 0) >= 1, STARTUP_S,
             "a first snapshot")
    # then /metrics counters move while it plays (each waited for: they move at different rates, a scrape
    # apart may be too soon for a 4 Hz sampler)
    before = scrape(http)
    for name in ("tokdyn_stream_tokens_seen_total", "tokdyn_stream_frames_in_total",
                 "tokdyn_stream_frames_sampled_total", "tokdyn_stream_snapshot_version"):
        wait_for(lambda: scrape(http)[name, "live"] > before[name, "live"], STARTUP_S, f"{name} to grow")
    after = scrape(http)
    assert after["tokdyn_stream_tokens_held", "live"] <= 16 < after["tokdyn_stream_compression_ratio", "live"]
    # and the official client gets answers, non-streamed then streamed, with visual tokens counted
    model = client.models.list().data[0].id
    reply = wait_for(lambda: answered(client, model=model, messages=video_question("live"), max_tokens=4),
                     STARTUP_S, "an answer")
    usage, extra = reply.usage.model_dump(), reply.model_extra["tokdyn"]
    assert 0 < usage["visual_tokens"] <= 16 and usage["prompt_tokens"] > usage["visual_tokens"]
    assert extra["stream_id"] == "live" and 0 <= extra["span"]["t_start"] < extra["span"]["t_end"]
    chunks = list(client.chat.completions.create(model=model, messages=video_question("live"), max_tokens=4,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.visual_tokens > 0
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.model_extra["tokdyn"]["span"]["t_end"] >= extra["span"]["t_end"]  # a newer or equal snapshot
    # several clients at once are all answered (the LLM actor serves llm.max_concurrent questions together)
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: client.chat.completions.create(
            model=model, messages=video_question("live"), max_tokens=4), range(3)))
    assert all(r.usage.visual_tokens > 0 and r.choices[0].message.content is not None for r in replies)
    assert scrape(http)[("tokdyn_query_ttft_seconds_count", "")] >= 5
    # and pipeline errors come back as the right 4xx through Ray
    assert http.post("/v1/streams", json=LIVE).json()["error"]["code"] == "stream_exists"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=model, messages=video_question("nope"))
    # when the stream is removed, it is gone everywhere
    assert http.delete("/v1/streams/live").status_code == 200
    assert http.get("/v1/streams/live").status_code == 404
    assert ("tokdyn_stream_up", "live") not in scrape(http)


# 10 s of live camera at 4 frames/s in chunks of 0.5 s: a segment sealed about every second, and those that
# ended over 4 s before the newest frame deleted, so at the end [6, 8] is held and [0, 2] is gone.
WINDOWED = {"id": "win", "url": "synthetic://?width=160&height=120&fps=10&seconds=10", "sample_rate_hz": 4,
            "frames_per_chunk": 2, "budget": 16, "compressor": {"segment_s": 1.0, "retention_s": 4.0}}


def test_window_questions_through_ray(api, http):
    """Given a live camera with 1 s segments and 4 s retention played to its end, when asked about an
    earlier window, then the answer covers that window only, within the budget; a window retention dropped or
    the stream never reached is a 400 window_unavailable; without a window the live memory answers."""
    client = openai.OpenAI(base_url=f"{api[0]}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    assert http.post("/v1/streams", json=WINDOWED).status_code == 201
    try:
        wait_for(lambda: (s := http.get("/v1/streams/win").json())["state"] == "ended" and (s["t_end"] or 0) >= 9.0,
                 STARTUP_S, "the 10 s camera played to its end")
        model = client.models.list().data[0].id

        def ask(window: dict | None = None):
            extra = {"tokdyn": {"window": window}} if window else None
            return client.chat.completions.create(model=model, messages=video_question("win"), max_tokens=4,
                                                  extra_body=extra)

        reply = ask({"t_start": 6.0, "t_end": 8.0})
        span = reply.model_extra["tokdyn"]["span"]
        assert 6.0 <= span["t_start"] <= span["t_end"] <= 8.0 and 0 < reply.usage.visual_tokens <= 16
        for gone in ({"t_start": 0.0, "t_end": 2.0}, {"t_start": 50.0, "t_end": 60.0}):
            with pytest.raises(openai.BadRequestError) as refused:
                ask(gone)
            assert refused.value.code == "window_unavailable", refused.value.body
            assert "expected a span the segments hold" in refused.value.message
            assert "/tmp" not in refused.value.message and "Traceback" not in refused.value.message
        # the live memory's span is the status's once its snapshot of the last chunk reached the LLM
        live = http.get("/v1/streams/win").json()
        whole = wait_for(lambda: (r := ask()).model_extra["tokdyn"]["span"]["t_end"] == live["t_end"] and r,
                         STARTUP_S, "an answer from the last snapshot")
        assert whole.model_extra["tokdyn"]["span"] == {"t_start": 0.0, "t_end": live["t_end"]}
    finally:
        http.delete("/v1/streams/win")


def test_api_actor_restarts_on_the_same_url(api):
    url, actor = api
    pid = ray.get(actor.pid.remote())
    ray.kill(actor, no_restart=False)  # the process dies as in a crash; Ray restarts it

    def back() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200 and ray.get(actor.pid.remote()) != pid
        except (httpx.HTTPError, ray.exceptions.RayActorError):
            return False

    wait_for(back, STARTUP_S, "the API back on the same URL")
