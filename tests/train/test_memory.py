"""Memories for training: the pipeline's streaming compressor chunk by chunk (snapshots after chosen chunks),
"full" tokens of uniformly picked frames, and the slow path that rebuilds them with grad into the vision path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.config import ModelInit
from train.formats import MemoryFormat
from train.memory import FrameSource, encode, live_memory, snapshot_chunks, stream_memories
from train.model import load_model


@pytest.fixture(scope="module")
def vlm():
    return load_model(ModelInit(), seed=0, device="cpu")


@pytest.fixture(scope="module")
def frames(vlm):
    rng = np.random.default_rng(0)
    out = np.full((12, vlm.image_size, vlm.image_size, 3), 120, np.uint8)
    for i in range(12):  # a bright square moving right over a grey background, and noise
        out[i, 40:70, 5 + 6 * i:35 + 6 * i] = (230, 40, 40)
    return np.clip(out + rng.integers(-5, 6, out.shape), 0, 255).astype(np.uint8)


def test_snapshot_chunks_spread_and_keep_the_last():
    assert snapshot_chunks(10, 3) == [3, 6, 9]
    assert snapshot_chunks(10, 1) == [9]
    assert snapshot_chunks(2, 5) == [0, 1]


def test_stream_memories_follow_the_chunks(vlm, frames):
    times = np.arange(12) / 2.0
    tokens = encode(vlm, frames)
    early, late = stream_memories(tokens, times, MemoryFormat(budget=8), 4, [0, 2])
    assert (early.t_start, early.t_end, late.t_end) == (0.0, 1.5, 5.5)
    assert late.base.shape == (8, vlm.hidden_size) and late.motion.shape[0] == 8
    (full,) = stream_memories(tokens, times, MemoryFormat(method="full", frames=3), 4, [1])
    assert full.base.shape == (3 * 196, vlm.hidden_size) and full.t_end == 3.5
    assert torch.equal(full.base[:196], tokens[0].reshape(196, -1))  # frame 0 is the first pick


@pytest.mark.parametrize("fmt", [MemoryFormat(budget=8), MemoryFormat(method="full", frames=4)])
def test_live_memory_equals_the_cached_one_and_carries_grad_to_the_vision_tower(vlm, frames, fmt):
    times = np.arange(12) / 2.0
    (cached,) = stream_memories(encode(vlm, frames), times, fmt, 4, [2])
    vlm.model.zero_grad(set_to_none=True)
    live = live_memory(vlm, FrameSource(frames, times, fmt, 4, seed=0))
    assert torch.allclose(live.base, cached.base, atol=1e-5)  # straight-through: the compressor's own values
    live.base.square().sum().backward()
    grads = [p.grad for p in vlm.model.model.vision_tower.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_live_baseline_memory_has_no_vision_grad(vlm, frames):
    live = live_memory(vlm, FrameSource(frames, np.arange(12) / 2.0, MemoryFormat(method="uniform", budget=8), 4, 0))
    assert not live.base.requires_grad
