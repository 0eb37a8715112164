"""Baselines behind one budget and one streaming interface; metrics; weight-free token sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.baselines import BipartiteMerger, dycoke, reduce_clip, uniform
from compressor.config import METHODS, CompressorConfig
from compressor.metrics import (compression_ratio, fidelity, fidelity_keymap, fidelity_nearest, state_size_bytes,
                                tok_dense, token_counts)
from compressor.offline import token_dynamics
from compressor.registry import make_stream_compressor, restore_stream_compressor
from testkit.token_sources import TinySiglip, lift, pixel_patch_tokens
from tests.compressor.helpers import clustered_tokens, feed, timestamps

CLIP_METHODS = ("offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")


@pytest.mark.parametrize("method", CLIP_METHODS)
@pytest.mark.parametrize("budget", [1, 5, 16])
def test_whole_clip_methods_meet_the_budget(method: str, budget: int) -> None:
    tokens = clustered_tokens(12, grid=(6, 6), centres=10)
    reduction = reduce_clip(method, tokens, CompressorConfig(budget=budget))
    assert 1 <= reduction.tokens.shape[0] <= budget and reduction.tokens.shape[1] == 16
    assert 0.0 < fidelity(tokens, reduction) <= 1.0 + 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_every_method_streams_swaps_by_name_and_restores(method: str) -> None:
    config = CompressorConfig(method=method, budget=10, recent_window=2, window_frames=6)
    compressor = make_stream_compressor(config)
    tokens = clustered_tokens(12, grid=(4, 4))
    feed(compressor, tokens[:8])
    restored = restore_stream_compressor(compressor.to_bytes())
    feed(compressor, tokens[8:], start=8)
    feed(restored, tokens[8:], start=8)
    a, b = compressor.snapshot(), restored.snapshot()
    assert a.method == b.method == method and a.tokens_held <= 10 and a.recent.shape == (2, 16)
    assert np.array_equal(a.base, b.base) and a.version == b.version == 3
    assert (a.frames_seen, a.tokens_seen) == (12, 12 * 16)


def test_windowed_baseline_covers_only_its_window() -> None:
    compressor = make_stream_compressor(CompressorConfig(method="uniform", budget=4, window_frames=4))
    for start in range(0, 12, 3):
        compressor.update(clustered_tokens(3, seed=start), timestamps(start, 3))
    snap = compressor.snapshot()
    assert (snap.t_start, snap.t_end) == (4.0, 5.5) and snap.frames_seen == 12


def test_uniform_takes_evenly_spaced_frames() -> None:
    tokens = torch.arange(8.0)[:, None, None, None].expand(8, 2, 2, 3) + 1
    kept = uniform(tokens, budget=4, pool=1).tokens[:, 0]
    assert kept.tolist() == [2.0, 4.0, 6.0, 8.0]  # frames 1, 3, 5, 7: the centre of each quarter


def test_dycoke_keeps_first_frame_of_each_window_and_prunes_static_tokens() -> None:
    # given a static clip but for one changing token per frame
    tokens = torch.ones(4, 2, 2, 3)
    tokens[:, 0, 0] = torch.randn(4, 3)
    tokens[:, 1, 1] = torch.tensor([1.0, -1.0, 0.0])
    kept = dycoke(tokens, budget=7, pool=2, prune=0.5).tokens
    # 4 of the first frame + the changing token of the 3 later frames
    assert kept.shape[0] == 7
    assert torch.equal(kept[:4], tokens[0].reshape(4, 3))


def test_tome_sizes_add_up() -> None:
    merger = BipartiteMerger(budget=5)
    for frame in clustered_tokens(6, grid=(3, 3)).reshape(6, 9, 16):
        merger.add(frame)
    assert merger.tokens.shape[0] == 5 and float(merger.sizes.sum()) == 54.0


def test_fidelity_metrics() -> None:
    tokens = clustered_tokens(4, noise=0.0)
    result = token_dynamics(tokens, 6)
    assert fidelity_keymap(tokens, result.base, result.key_map) == pytest.approx(1.0, abs=1e-5)
    assert fidelity_nearest(tokens, result.llm_tokens()) == pytest.approx(1.0, abs=1e-5)
    assert fidelity_nearest(tokens, -result.base, block=7) < 0.5


def test_counts_ratio_tokdense_state_size() -> None:
    counts = token_counts(32, 32)
    assert (counts.tokens_in, counts.convention, counts.compression_ratio) == (6272, "pooled-196", 196.0)
    assert token_counts(32, 32, "full-729").tokens_in == 23328
    assert compression_ratio(10, 0) == float("inf")
    assert tok_dense(57.46, 32) == pytest.approx(1.795625)
    with pytest.raises(ValueError, match="expected >= 1"):
        tok_dense(50.0, 0)
    with pytest.raises(ValueError, match="convention"):
        token_counts(1, 1, "huge")
    compressor = make_stream_compressor(CompressorConfig(budget=4))
    feed(compressor, clustered_tokens(4))
    assert state_size_bytes(compressor) == len(compressor.to_bytes()) > 0


def test_pixel_patches_and_lift() -> None:
    frames = np.zeros((2, 40, 60, 3), dtype=np.uint8)
    frames[1] = 255
    tokens = pixel_patch_tokens(frames, image_size=32, patch=8)
    assert tokens.shape == (2, 4, 4, 192)
    assert float(tokens[0].max()) == pytest.approx(-1.0) and float(tokens[1].min()) == pytest.approx(1.0)
    x = torch.randn(5, 12)
    lifted = lift(x, 20, seed=3)
    assert lifted.shape == (5, 20) and torch.allclose(lifted @ lifted.T, x @ x.T, atol=1e-4)


def test_tiny_siglip_is_deterministic_and_leaves_global_rng_alone() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TinySiglip(image_size=32, patch=8, hidden=16, layers=1, heads=2)(frames)
    after = torch.rand(1)
    b = TinySiglip(image_size=32, patch=8, hidden=16, layers=1, heads=2)(frames)
    assert a.shape == (2, 4, 4, 16) and torch.equal(a, b) and torch.equal(before, after)
