"""Streaming Token Dynamics: budget, key map, restore, determinism, one chunk == offline, snapshots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.config import CompressorConfig
from compressor.offline import token_dynamics
from compressor.keymap import BLOCK_FRAMES
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, feed, timestamps

SETTINGS = settings(max_examples=12, deadline=None)
configs = st.builds(
    CompressorConfig,
    budget=st.integers(1, 12), adaptive=st.booleans(), k_min=st.integers(1, 4), k_max=st.integers(4, 10),
    recent_window=st.just(0), seed=st.integers(0, 3), novelty_threshold=st.floats(0.0, 0.99),
    max_new_clusters=st.integers(0, 4), merge_similarity=st.floats(0.5, 0.99))
clips = st.builds(clustered_tokens, frames=st.integers(1, 14), grid=st.just((3, 4)), dim=st.just(8),
                  centres=st.integers(1, 12), noise=st.floats(0.0, 0.8), seed=st.integers(0, 100))


def run(config: CompressorConfig, tokens: torch.Tensor, chunk: int = 3) -> StreamingTokenDynamics:
    compressor = StreamingTokenDynamics(config)
    feed(compressor, tokens, chunk)
    return compressor


@SETTINGS
@given(config=configs, tokens=clips, chunk=st.integers(1, 5))
def test_budget_key_map_and_reconstruction(config: CompressorConfig, tokens: torch.Tensor, chunk: int) -> None:
    compressor = run(config, tokens, chunk)
    snap = compressor.snapshot()
    k_lo, k_hi = config.k_range
    # the budget is never exceeded
    assert snap.tokens_held <= config.budget and snap.base.shape[0] <= k_hi
    # key-map ids always index the current base
    key_map = compressor.key_map()
    assert key_map.shape == tokens.shape[:3]
    assert int(key_map.max()) < snap.base.shape[0]
    assert set(np.unique(key_map)) == set(range(snap.base.shape[0]))  # every base token is used
    # reconstruction has the input's shape
    assert compressor.reconstruct().shape == tokens.shape
    assert snap.frames_seen == tokens.shape[0] and snap.tokens_seen == tokens.shape[:3].numel()


@SETTINGS
@given(config=configs, tokens=clips, cut=st.integers(1, 4))
def test_restore_then_continue_equals_uninterrupted(config: CompressorConfig, tokens: torch.Tensor, cut: int) -> None:
    whole = run(config, tokens)
    first = StreamingTokenDynamics(config)
    feed(first, tokens[: 3 * cut], 3)
    restored = StreamingTokenDynamics.from_bytes(first.to_bytes())
    feed(restored, tokens[3 * cut:], 3, start=3 * cut)
    a, b = whole.snapshot(), restored.snapshot()
    assert np.array_equal(a.base, b.base) and np.array_equal(a.motion, b.motion)
    assert np.array_equal(whole.key_map(), restored.key_map())
    assert whole.to_bytes() == restored.to_bytes()


@SETTINGS
@given(config=configs, tokens=clips)
def test_same_seed_same_result(config: CompressorConfig, tokens: torch.Tensor) -> None:
    assert run(config, tokens).to_bytes() == run(config, tokens).to_bytes()


@SETTINGS
@given(tokens=clips, k=st.integers(1, 10), seed=st.integers(0, 5))
def test_one_chunk_equals_offline(tokens: torch.Tensor, k: int, seed: int) -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=k, seed=seed))
    compressor.update(tokens, timestamps(0, tokens.shape[0]))
    offline = token_dynamics(tokens, k, seed=seed)
    assert np.array_equal(compressor.key_map(), offline.key_map)
    assert np.allclose(compressor.snapshot().base, offline.llm_tokens().numpy(), atol=1e-5)


def test_adaptive_one_chunk_equals_offline_elbow() -> None:
    tokens = clustered_tokens(4, centres=5, noise=0.05)
    config = CompressorConfig(budget=32, adaptive=True, k_min=2, k_max=10, adaptive_rule="silhouette")
    compressor = StreamingTokenDynamics(config)
    compressor.update(tokens, timestamps(0, 4))
    offline = token_dynamics(tokens, 10, adaptive_rule="silhouette", k_min=2)
    assert np.array_equal(compressor.key_map(), offline.key_map) and offline.k == 5


def test_adaptive_merge_cost_first_chunk_finds_the_clusters_with_one_fit() -> None:
    # given 5 well-separated groups and the default first-chunk rule
    tokens = clustered_tokens(4, centres=5, noise=0.05)
    config = CompressorConfig(budget=32, adaptive=True, k_min=2, k_max=10, merge_similarity=0.8)
    assert config.adaptive_rule == "merge_cost"
    compressor = StreamingTokenDynamics(config)
    compressor.update(tokens, timestamps(0, 4))
    # then K_max clusters were fitted once and the similar ones merged back to the 5 groups
    assert compressor.snapshot().base.shape[0] == 5 and compressor.merges >= 5
    offline = token_dynamics(tokens, 10, adaptive_rule="elbow", k_min=2)
    assert offline.k == 5  # the same K the elbow rule finds with k-means for every K in the range


def test_new_content_seeds_clusters_and_merges_keep_history_valid() -> None:
    # given a stream whose second half shows different content
    config = CompressorConfig(budget=6, novelty_threshold=0.8)
    early, late = clustered_tokens(8, centres=4, seed=1, noise=0.05), clustered_tokens(8, centres=4, seed=2, noise=0.05)
    compressor = run(config, torch.cat([early, late]), chunk=4)
    # then new clusters were seeded and merged back to the budget
    assert compressor.new_clusters > 0 and compressor.merges > 0
    assert compressor.snapshot().base.shape[0] == 6
    # and early key-map entries still resolve to a base token that represents them
    rebuilt = compressor.reconstruct(0, 8).reshape(-1, 16)
    cos = torch.nn.functional.cosine_similarity(rebuilt, early.reshape(-1, 16), dim=1)
    assert float(cos.mean()) > 0.6


def test_adaptive_merges_similar_clusters_down_to_k_min() -> None:
    config = CompressorConfig(budget=32, adaptive=True, k_min=2, k_max=12, merge_similarity=0.5,
                              novelty_threshold=0.99)
    compressor = run(config, clustered_tokens(12, centres=2, noise=0.05), chunk=4)
    assert 2 <= compressor.snapshot().base.shape[0] <= 3


def test_snapshots_are_immutable_and_versioned() -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=4))
    empty = compressor.snapshot()
    assert empty.version == 0 and empty.tokens_held == 0
    tokens = clustered_tokens(8)
    compressor.update(tokens[:4], timestamps(0, 4))
    first = compressor.snapshot()
    kept = first.base.copy()
    compressor.update(tokens[4:], timestamps(4, 4))
    second = compressor.snapshot()
    assert (first.version, second.version) == (1, 2)
    assert np.array_equal(first.base, kept) and not first.base.flags.writeable
    assert (second.t_start, second.t_end) == (0.0, 3.5)


def test_recent_window_counted_in_budget() -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=8, recent_window=4))
    feed(compressor, clustered_tokens(8, centres=8))
    snap = compressor.snapshot()
    assert snap.recent.shape == (4, 16) and snap.base.shape[0] == 4 and snap.tokens_held == 8


def test_key_map_spans_several_storage_blocks() -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=3, max_new_clusters=1, novelty_threshold=0.9))
    tokens = clustered_tokens(64, grid=(1, 2), dim=4, centres=5, noise=0.3)
    chunk = torch.cat([tokens] * (BLOCK_FRAMES // 64 + 2))
    feed(compressor, chunk, chunk=64)
    key_map = compressor.key_map()
    assert key_map.shape[0] == chunk.shape[0] and compressor.keymap.frames > BLOCK_FRAMES
    assert np.array_equal(compressor.key_map(BLOCK_FRAMES - 3, BLOCK_FRAMES + 3), key_map[BLOCK_FRAMES - 3:BLOCK_FRAMES + 3])
    restored = StreamingTokenDynamics.from_bytes(compressor.to_bytes())
    assert np.array_equal(restored.key_map(), key_map)


def test_low_precision_chunks() -> None:
    tokens = clustered_tokens(8, noise=0.05)
    for dtype in (torch.float16, torch.bfloat16):
        compressor = run(CompressorConfig(budget=6), tokens.to(dtype))
        assert compressor.snapshot().base.dtype == np.float32 and compressor.snapshot().base.shape[0] == 6


@pytest.mark.gpu
def test_gpu_stream_matches_cpu_and_is_deterministic() -> None:
    tokens = clustered_tokens(16, noise=0.2, centres=10)
    config = CompressorConfig(budget=6, novelty_threshold=0.9)
    cpu = run(config, tokens)
    gpu_a, gpu_b = StreamingTokenDynamics(config, device="cuda"), StreamingTokenDynamics(config, device="cuda")
    feed(gpu_a, tokens.cuda(), 3)
    feed(gpu_b, tokens.cuda(), 3)
    assert gpu_a.to_bytes() == gpu_b.to_bytes()
    assert (gpu_a.key_map() == cpu.key_map()).mean() > 0.9


def test_reader_thread_sees_whole_versions_while_updates_continue() -> None:
    import threading

    compressor = StreamingTokenDynamics(CompressorConfig(budget=5, novelty_threshold=0.9))
    tokens = clustered_tokens(40, centres=12, noise=0.3)
    seen: list[tuple[int, int, int]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            snap = compressor.snapshot()
            seen.append((snap.version, snap.frames_seen, snap.base.shape[0]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        feed(compressor, tokens, chunk=2)
    finally:
        done.set()
        reader.join(timeout=10)
    versions = [v for v, _, _ in seen]
    assert versions == sorted(versions)
    assert all(frames == 2 * version and k <= 5 for version, frames, k in seen)
