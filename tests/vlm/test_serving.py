"""Encoder (frames from many streams, batched) and Answerer (streamed answer events), without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm import NOT_MEANINGFUL, Answerer, Encoder, InputError, ModelConfig, PlaceholderMismatch, load_vlm


@pytest.fixture(scope="module")
def model():
    return load_vlm(ModelConfig(path="tiny"))


def frames(t: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def test_encoder_batches_streams_and_returns_each_streams_tokens_in_order(model):
    batch = [("cam-a", frames(2, seed=1)), ("cam-b", frames(3, seed=2)), ("cam-a", frames(1, seed=3))]
    calls = []
    encode = model.encode_frames
    model.encode_frames = lambda f: calls.append(f.shape[0]) or encode(f)  # count vision-tower passes
    try:
        out = Encoder(model, batch_frames=32).encode(batch)
    finally:
        del model.encode_frames
    assert calls == [6]  # one forward pass for all six frames
    assert [(sid, tuple(t.shape)) for sid, t in out] == [
        ("cam-a", (2, 14, 14, 128)), ("cam-b", (3, 14, 14, 128)), ("cam-a", (1, 14, 14, 128))
    ]
    for (_, f), (_, tokens) in zip(batch, out):
        torch.testing.assert_close(tokens, model.encode_frames(f), atol=1e-5, rtol=1e-5)


def test_encoder_splits_by_batch_size_and_frame_size(model):
    batch = [("a", frames(3)), ("b", frames(2, size=64)), ("c", frames(2))]
    out = Encoder(model, batch_frames=2).encode(batch)
    assert [tuple(t.shape[:1]) for _, t in out] == [(3,), (2,), (2,)]
    torch.testing.assert_close(out[2][1], model.encode_frames(frames(2)), atol=1e-5, rtol=1e-5)


def test_encoder_rejects_bad_frames_naming_the_problem(model):
    with pytest.raises(InputError, match="expected dtype uint8, got float64"):
        Encoder(model).encode([("a", frames(1)), ("b", np.zeros((1, 112, 112, 3)))])
    with pytest.raises(InputError, match="batch_frames"):
        Encoder(model, batch_frames=0)


def test_answerer_streams_deltas_then_done(model):
    visual = np.random.default_rng(0).standard_normal((32, 128)).astype(np.float32)  # a snapshot's [K, D]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What happened?"}]
    events = list(Answerer(model).stream(visual, messages, max_tokens=12,
                                         extra={"span": {"t_start": 0.0, "t_end": 60.0}, "snapshot_version": 7}))
    *deltas, done = events
    assert deltas and all(e["type"] == "delta" and e["text"] for e in deltas)
    assert done["type"] == "done" and done["text"] == "".join(e["text"] for e in deltas)
    assert done["usage"]["visual_tokens"] == 32
    assert done["usage"]["prompt_tokens"] == model.count_prompt_tokens(32, messages)
    assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]
    assert done["finish_reason"] in ("stop", "length") and done["model"] == "tiny-llava-onevision"
    assert done["meaningful"] is False and done["note"] == NOT_MEANINGFUL
    assert done["span"] == {"t_start": 0.0, "t_end": 60.0} and done["snapshot_version"] == 7
    assert 0 < done["ttft_s"] and done["prefill_s"] > 0


def test_answerer_caps_max_tokens(model):
    *_, done = Answerer(model, max_tokens_limit=3).stream(torch.zeros(4, 128), "Why?", max_tokens=100)
    assert done["usage"]["completion_tokens"] <= 3


def test_answerer_rejects_bad_input_before_streaming(model):
    answerer = Answerer(model)
    with pytest.raises(InputError, match="max_tokens: expected >= 1, got 0"):
        answerer.stream(torch.zeros(4, 128), "Why?", max_tokens=0)
    with pytest.raises(InputError, match=r"expected a tensor \[N, 128\], got \(4, 3\)"):
        answerer.stream(torch.zeros(4, 3), "Why?")
    with pytest.raises(InputError, match="non-empty"):
        answerer.stream(torch.zeros(4, 128), [])


def test_placeholder_count_mismatch_is_loud(model, monkeypatch):
    """A chat template that drops or repeats the visual marker cannot silently mis-place the memory."""
    monkeypatch.setattr(model, "chat_template", "{{ messages[-1]['content'] }} {{ messages[-1]['content'] }}")
    with pytest.raises(PlaceholderMismatch, match="rendered 2 '<video>' markers, expected 1"):
        Answerer(model).stream(torch.zeros(4, 128), "Why?")
