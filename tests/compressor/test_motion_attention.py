"""Motion features (relabel-invariant, incremental) and the cross-dynamics attention (identity at init)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compressor.attention import CrossDynamicsAttention, visual_tokens
from compressor.config import CompressorConfig
from compressor.motion import MOTION_FEATURES, MotionStats, motion_features
from compressor.registry import make_stream_compressor
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, feed

key_maps = arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 4)),
                  elements=st.integers(0, 4))


@settings(max_examples=30, deadline=None)
@given(key_map=key_maps, perm_seed=st.integers(0, 1000))
def test_motion_features_invariant_to_relabelling(key_map: np.ndarray, perm_seed: int) -> None:
    # given a key map and the same key map with its cluster ids permuted
    perm = np.random.default_rng(perm_seed).permutation(5)
    times = np.arange(key_map.shape[0]) * 0.5
    original = motion_features(key_map, 5, times)
    relabelled = motion_features(perm[key_map], 5, times)
    # then each cluster keeps its features: rows are permuted, nothing else changes
    assert original.shape == (5, len(MOTION_FEATURES))
    assert np.allclose(relabelled[perm], original, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(key_map=key_maps, split=st.integers(1, 5))
def test_motion_incremental_equals_all_at_once(key_map: np.ndarray, split: int) -> None:
    t, h, w = key_map.shape
    times = np.arange(t, dtype=np.float64)
    whole = MotionStats(5, (h, w))
    whole.update(key_map.reshape(t, -1), times, 0)
    parts = MotionStats(5, (h, w))
    for start in range(0, t, split):
        parts.update(key_map[start:start + split].reshape(-1, h * w), times[start:start + split], start)
    order = np.arange(5)
    assert np.allclose(whole.features(order, t, 0, t - 1), parts.features(order, t, 0, t - 1))


def test_motion_of_a_moving_blob() -> None:
    # a one-token object moving one column right per frame on an empty background
    key_map = np.zeros((4, 1, 4), dtype=np.int64)
    for t in range(4):
        key_map[t, 0, t] = 1
    features = dict(zip(MOTION_FEATURES, motion_features(key_map, 2)[1]))
    assert np.isclose(features["vel_col"], 0.25) and np.isclose(features["vel_row"], 0.0)
    assert np.isclose(features["coverage"], 0.25) and np.isclose(features["presence"], 1.0)
    assert np.isclose(features["duration"], 1.0)


def test_merge_combines_statistics() -> None:
    stats = MotionStats(3, (2, 2))
    stats.update(np.array([[0, 0, 1, 1], [0, 1, 1, 1]]), np.array([0.0, 1.0]), 0)
    stats.merge(1, 0)
    features = stats.features(np.array([0]), 2, 0.0, 1.0)
    assert np.isclose(features[0, MOTION_FEATURES.index("share")], 1.0)
    assert stats.arrays["tokens"][1] == 0


def test_untrained_attention_is_exactly_identity() -> None:
    torch.manual_seed(0)
    attention = CrossDynamicsAttention(32, heads=4)
    base, motion = torch.randn(7, 32) * 5, torch.rand(7, len(MOTION_FEATURES))
    assert torch.equal(attention(base, motion), base)
    batched = torch.randn(2, 7, 32)
    assert torch.equal(attention(batched, torch.rand(2, 7, len(MOTION_FEATURES))), batched)


def test_trained_attention_adds_motion_without_adding_tokens() -> None:
    torch.manual_seed(0)
    attention = CrossDynamicsAttention(16, heads=2)
    torch.nn.init.normal_(attention.out.weight)
    base = torch.randn(5, 16)
    still, moving = torch.zeros(5, len(MOTION_FEATURES)), torch.ones(5, len(MOTION_FEATURES))
    out_still, out_moving = attention(base, still), attention(base, moving)
    assert out_still.shape == (5, 16) and not torch.allclose(out_still, out_moving)


def test_attention_rejects_bad_shapes() -> None:
    attention = CrossDynamicsAttention(16, heads=2)
    try:
        attention(torch.zeros(3, 8), torch.zeros(3, len(MOTION_FEATURES)))
    except ValueError as exc:
        assert "expected base" in str(exc) and "got" in str(exc)
    else:
        raise AssertionError("no error")


def test_visual_tokens_canonical_base_then_recent() -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=8, recent_window=2))
    feed(compressor, clustered_tokens(8, centres=8))
    snap = compressor.snapshot()
    tokens = visual_tokens(snap, CrossDynamicsAttention(16, heads=2))
    assert tokens.shape == (snap.tokens_held, 16) == (8, 16)
    assert torch.equal(tokens[:6], torch.from_numpy(snap.base.copy()))
    assert torch.equal(tokens[6:], torch.from_numpy(snap.recent.copy()))
    # the base sits at the input tokens' typical norm (3..4 in this clip), not on the unit sphere
    assert 2.5 < float(torch.linalg.vector_norm(tokens[:6], dim=1).mean()) < 4.5


def test_visual_tokens_of_a_baseline_pass_through() -> None:
    compressor = make_stream_compressor(CompressorConfig(method="tome", budget=5))
    feed(compressor, clustered_tokens(4))
    snap = compressor.snapshot()
    assert snap.motion.shape == (5, 0)
    assert torch.equal(visual_tokens(snap, CrossDynamicsAttention(16, heads=2)), torch.from_numpy(snap.base.copy()))
