"""Bad input raises ValueError subclasses naming expected vs actual; a rejected update changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.config import METHODS, CompressorConfig
from compressor.errors import InvalidConfig, InvalidState, InvalidTokens
from compressor.registry import make_stream_compressor, restore_stream_compressor
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, timestamps


def nan_chunk() -> torch.Tensor:
    x = clustered_tokens(2)
    x[1, 2, 3, 4] = float("nan")
    return x


def inf_chunk() -> np.ndarray:
    x = clustered_tokens(2).numpy()
    x[0, 0, 0, 0] = np.inf
    return x


BAD_CHUNKS = [
    (torch.zeros(2, 4, 16), "rank 4"),                         # wrong rank
    (clustered_tokens(2, grid=(4, 5)), "grid"),                 # grid differs from earlier chunks
    (clustered_tokens(2, dim=8), "D=16"),                       # D differs
    (nan_chunk(), "finite"),                                    # NaN
    (inf_chunk(), "finite"),                                    # Inf
    (torch.zeros(0, 4, 4, 16), "non-empty"),                    # empty chunk
    (torch.zeros(2, 4, 4, 16, dtype=torch.int64), "floating"),  # integer tokens
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad,message", BAD_CHUNKS)
def test_bad_chunk_rejected_and_state_unchanged(method: str, bad: torch.Tensor, message: str) -> None:
    # given a compressor that has seen one good chunk
    compressor = make_stream_compressor(CompressorConfig(method=method, budget=6, window_frames=4))
    compressor.update(clustered_tokens(2), timestamps(0, 2))
    before = compressor.to_bytes()
    # when a bad chunk arrives, then it is rejected with expected vs actual, and nothing changed
    with pytest.raises(InvalidTokens, match=message) as info:
        compressor.update(bad, timestamps(2, bad.shape[0]))
    assert isinstance(info.value, ValueError) and "expected" in str(info.value) and "got" in str(info.value)
    assert compressor.to_bytes() == before


def test_bad_timestamps_rejected() -> None:
    compressor = StreamingTokenDynamics(CompressorConfig(budget=4))
    with pytest.raises(InvalidTokens, match=r"expected shape \(2,\)"):
        compressor.update(clustered_tokens(2), np.zeros(3))
    with pytest.raises(InvalidTokens, match="finite"):
        compressor.update(clustered_tokens(2), np.array([0.0, np.nan]))
    with pytest.raises(InvalidTokens, match="expected media seconds >= 0, got -1.0"):
        compressor.update(clustered_tokens(2), np.array([-1.0, 0.0]))
    with pytest.raises(InvalidTokens, match="non-decreasing"):
        compressor.update(clustered_tokens(2), np.array([2.0, 1.0]))
    with pytest.raises(InvalidTokens, match="real numbers"):
        compressor.update(clustered_tokens(2), ["a", "b"])
    assert compressor.frames_seen == 0 and compressor.version == 0


@pytest.mark.parametrize("method", METHODS)
def test_time_going_backwards_rejected_whole(method: str) -> None:
    # given a stream at media time 1.5 s
    compressor = make_stream_compressor(CompressorConfig(method=method, budget=6, window_frames=4))
    compressor.update(clustered_tokens(4), timestamps(0, 4))
    before = compressor.to_bytes()
    # when a chunk starts before that (a replay), then it is refused and nothing changed
    with pytest.raises(InvalidTokens, match=r"expected >= 1.5 .*, got 1.0"):
        compressor.update(clustered_tokens(2, seed=1), timestamps(2, 2))
    assert compressor.to_bytes() == before
    # and a chunk starting at the same time as the newest frame is accepted (equal times are allowed)
    compressor.update(clustered_tokens(2, seed=1), np.array([1.5, 2.0]))
    assert compressor.frames_seen == 6


@pytest.mark.parametrize("method", METHODS)
def test_float64_grad_and_layout_give_the_same_state(method: str) -> None:
    # given the same float32 values as a packed tensor, a strided view, float64, and a tensor with grad
    config = CompressorConfig(method=method, budget=6, window_frames=4)
    tokens = [clustered_tokens(4, seed=s) for s in range(3)]
    wide = [torch.cat([x, torch.zeros_like(x)], dim=3)[..., :16] for x in tokens]  # same values, strided
    assert not wide[0].is_contiguous()
    variants = {"packed": tokens, "strided": wide, "float64": [x.double() for x in tokens],
                "numpy transposed": [np.asfortranarray(x.numpy()) for x in tokens],
                "requires_grad": [x.clone().requires_grad_(True) for x in tokens]}
    states = {}
    for name, chunks in variants.items():
        compressor = make_stream_compressor(config)
        for i, chunk in enumerate(chunks):
            compressor.update(chunk, timestamps(4 * i, 4))
        compressor.snapshot()
        states[name] = compressor.to_bytes()
    # then every variant gives the packed float32 state, bit for bit
    assert all(state == states["packed"] for state in states.values()), \
        [name for name, state in states.items() if state != states["packed"]]


@pytest.mark.parametrize("kwargs,message", [
    ({"budget": 0}, "budget: expected 1 <= budget <= 1024, got 0"),
    ({"budget": 32.5}, "budget: expected int, got float 32.5"),
    ({"budget": "32"}, "budget: expected int, got str '32'"),
    ({"budget": True}, "budget: expected int, got bool"),
    ({"budget": 10**9}, "budget: expected 1 <= budget <= 1024, got 1000000000"),
    ({"budget": 200000}, "budget: expected 1 <= budget <= 1024"),
    ({"k_max": 5000}, "k_max: expected 1 <= k_max <= 1024"),
    ({"max_new_clusters": 10**6}, "max_new_clusters: expected 0 <= max_new_clusters <= 64"),
    ({"novelty_threshold": float("nan")}, "novelty_threshold: expected a finite float"),
    ({"half_life_s": -1.0}, "half_life_s: expected 0.0 <= half_life_s"),
    ({"segment_s": float("inf")}, "segment_s: expected a finite float"),
    ({"retention_bytes": 2**50}, "retention_bytes: expected 0 <= retention_bytes <= 1099511627776"),
    ({"kmeans_restarts": 0}, "kmeans_restarts: expected 1 <= kmeans_restarts <= 32"),
    ({"adaptive": 1}, "adaptive: expected bool, got int"),
    ({"seed": -1}, "seed: expected 0 <= seed"),
    ({"k_min": 9, "k_max": 4}, "expected k_min <= k_max, got k_min=9 > k_max=4"),
    ({"method": "nope"}, "method: expected one of"),
    ({"recent_window": 4, "budget": 4}, "recent_window"),
    ({"novelty_threshold": 2.0}, "novelty_threshold"),
    ({"dycoke_prune": 1.0}, "dycoke_prune"),
    ({"adaptive_rule": "guess"}, "adaptive_rule"),
])
def test_bad_config_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        CompressorConfig(**kwargs)


def test_config_round_trip_and_unknown_key() -> None:
    config = CompressorConfig(method="tome", budget=9)
    assert CompressorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidConfig, match="unknown key"):
        CompressorConfig.from_dict({"budgett": 3})


def test_bad_state_bytes() -> None:
    with pytest.raises(InvalidState, match="expected msgpack"):
        restore_stream_compressor(b"\xc1not msgpack")
    good = make_stream_compressor(CompressorConfig(method="tome")).to_bytes()
    with pytest.raises(InvalidState, match="expected method 'token_dynamics', got 'tome'"):
        StreamingTokenDynamics.from_bytes(good)


def test_method_mismatch_rejected() -> None:
    with pytest.raises(InvalidConfig, match="expected 'token_dynamics'"):
        StreamingTokenDynamics(CompressorConfig(method="uniform"))
