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
    assert compressor.frames_seen == 0 and compressor.version == 0


@pytest.mark.parametrize("kwargs,message", [
    ({"budget": 0}, "budget: expected >= 1, got 0"),
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
