"""The shipped model answers held-out scene questions through the real pipeline: scene cameras played through
the Ray actors, questions asked over HTTP with the official openai client, each answer scored against the
truth at the end of the snapshot it was drawn from (the answer's own span)."""

from __future__ import annotations

import dataclasses

import httpx
import openai
import pytest

from actors.config import ApiConfig, EncoderConfig, LLMConfig, PipelineConfig, TransportConfig
from frontends.quiz import Quiz
from scenes.questions import is_correct
from scenes.scene import make_scene
from scenes.suites import last_sampled_time, suite
from tests.frontends.api.conftest import served_pipeline, video_question
from tests.helpers import wait_for
from vlm import ModelConfig

pytestmark = pytest.mark.ray  # the shipped weights are in the repo: no skip if they go missing
API_KEY = "shipped-model-key-0123"
STARTUP_S = 300.0
SCENES = 3  # the first held-out scenes (scenes.suites "heldout"): a fixed set, about 22 questions
#: Lowest accuracy accepted through the pipeline. bench/qa.py (2026-12-07, the model continued on adaptive memories,
#: configs/train-adaptive.yaml) measured the shipped model at 73.4 % on the held-out suite (token_dynamics@32, real
#: memory; a uniform guess scores about 23 %), and 82 % (18 of 22) on exactly these three scenes' questions from
#: memories built offline with the same sampling and chunking. The bar leaves four answers of slack for what the
#: live path may change (chunk timing) and stays 37 points above chance: a serving path that breaks the model's
#: answers, or a model that learned nothing, fails it.
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def api(ray_local, tmp_path_factory):
    config = PipelineConfig(
        transport=TransportConfig(hwm=8, send_timeout_ms=1000),
        model=ModelConfig(path="embedded", max_new_tokens=24),
        encoder=EncoderConfig(batch_frames=16, max_wait_ms=20), llm=LLMConfig(max_concurrent=2),
        api=ApiConfig(port=0, api_key=API_KEY), checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
    )
    with served_pipeline(config) as (_, url, _):
        yield url


def test_shipped_model_answers_held_out_scene_questions(api):
    http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    client = openai.OpenAI(base_url=f"{api}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    right, asked = 0, 0
    for i, (spec, qas) in enumerate(suite("heldout")[:SCENES]):
        stream_id, url = f"scene{i}", spec.to_url()
        quiz = Quiz(make_scene(spec), tuple(qas), last_sampled_time(spec))
        # given a held-out scene played as fast as the pipeline takes it (nothing dropped)
        assert http.post("/v1/streams", json={"id": stream_id, "url": url, "sample_rate_hz": 2,
                                              "frames_per_chunk": 4, "live": False}).status_code == 201
        wait_for(lambda: (http.get(f"/v1/streams/{stream_id}").json().get("t_end") or 0) >= quiz.ready_at - 1e-6,
                 STARTUP_S, f"{stream_id}'s memory reaching its last frame")
        # when each question is asked over the API
        for qa in quiz.questions:
            completion = client.chat.completions.create(
                model=http.get("/v1/models").json()["data"][0]["id"], messages=video_question(stream_id, qa.question),
                max_tokens=24, temperature=0)
            answer = completion.choices[0].message.content
            extra = completion.model_extra["tokdyn"]
            assert "note" not in extra  # a trained model: answers are not marked "not meaningful"
            truth = quiz.truth(qa, extra["span"]["t_end"])
            right += is_correct(answer, dataclasses.replace(qa, answer=truth))
            asked += 1
        assert http.delete(f"/v1/streams/{stream_id}").status_code == 200
    # then most answers are right
    assert asked >= 15
    assert right / asked >= THRESHOLD, f"{right}/{asked} right"
