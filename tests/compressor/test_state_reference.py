"""The streaming state after every chunk equals a from-scratch recomputation through its own key map.

The update keeps per-cluster running totals (sums, counts, norm sums, first token, motion token counts) that
seeding, merging and decay change in place, in batches. This test recomputes every one of them after every
chunk by the obvious slow path: resolve the key map (the cluster each token of the stream belongs to now)
and add up each token's unit vector, weight and norm, the weight being the decay since its chunk. So any
change to the update's bookkeeping that drifts from what the key map says fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.config import CompressorConfig
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, timestamps

CHUNKS = 24
FRAMES = 4


def changing_stream() -> list[torch.Tensor]:
    """``CHUNKS`` chunks ``[4, 4, 4, 16]``; every chunk mixes old content with directions never seen before,
    so (with the default novelty threshold) new clusters are seeded and merged away in most chunks."""
    return [torch.cat([clustered_tokens(2, centres=6, noise=0.2, seed=0),
                       clustered_tokens(2, centres=3, noise=0.2, seed=100 + i)]) for i in range(CHUNKS)]


def reference(chunks: list[torch.Tensor], times: list[np.ndarray], slot_of: np.ndarray, slots: int,
              half_life_s: float) -> dict[str, np.ndarray]:
    """Per-slot totals of the stream so far, from scratch: ``slot_of [T, H, W]`` is the resolved key map."""
    x = torch.cat(chunks).double().reshape(-1, chunks[0].shape[-1])           # [N, D]
    norms = torch.linalg.vector_norm(x, dim=1)                                # [N]
    now = times[-1].max()
    # A token decays by 0.5 per half-life of media time after the newest frame of its own chunk.
    weight = np.concatenate([np.full(c.shape[0] * c.shape[1] * c.shape[2], 0.5 ** ((now - t.max()) / half_life_s))
                             for c, t in zip(chunks, times)])
    label = slot_of.reshape(-1)
    sums = np.zeros((slots, x.shape[1]))
    np.add.at(sums, label, (x / norms[:, None]).numpy() * weight[:, None])
    first = np.full(slots, -1)
    for token in range(label.shape[0] - 1, -1, -1):
        first[label[token]] = token
    return {"sums": sums, "counts": np.bincount(label, weight, slots),
            "norm_sums": np.bincount(label, weight * norms.numpy(), slots), "first": first,
            "tokens": np.bincount(label, minlength=slots).astype(np.float64)}


@pytest.mark.parametrize("config", [CompressorConfig(budget=8), CompressorConfig(budget=6, max_new_clusters=3,
                                                                                half_life_s=5.0)],
                         ids=["defaults", "short-half-life"])
def test_state_after_every_chunk_equals_recomputation_from_key_map(config: CompressorConfig) -> None:
    compressor = StreamingTokenDynamics(config)
    chunks, times = changing_stream(), []
    for i, chunk in enumerate(chunks):
        times.append(timestamps(i * FRAMES, FRAMES))
        compressor.update(chunk, times[-1])
        act = np.flatnonzero(compressor.active)
        ref = reference(chunks[:i + 1], times, compressor.keymap.resolve(), compressor.slots, config.half_life_s)
        assert np.array_equal(np.flatnonzero(ref["tokens"]), act), f"chunk {i}: active slots"
        assert act.size <= config.budget
        np.testing.assert_allclose(compressor.sums[act].double().numpy(), ref["sums"][act], rtol=1e-4, atol=1e-5,
                                   err_msg=f"chunk {i}: sums")
        np.testing.assert_allclose(compressor.counts[act], ref["counts"][act], rtol=1e-9, err_msg=f"chunk {i}")
        np.testing.assert_allclose(compressor.norm_sums[act], ref["norm_sums"][act], rtol=1e-6, err_msg=f"chunk {i}")
        assert np.array_equal(compressor.first[act], ref["first"][act]), f"chunk {i}: first token"
        assert np.array_equal(compressor.motion.arrays["tokens"][act], ref["tokens"][act]), f"chunk {i}: motion"
        unit = torch.nn.functional.normalize(compressor.sums[act], dim=1)
        torch.testing.assert_close(compressor.centroids[act], unit, rtol=1e-6, atol=1e-7)
    # The stream exercised what the bookkeeping batches: seeding and merging in most chunks.
    assert compressor.new_clusters >= CHUNKS // 2 and compressor.merges >= CHUNKS // 2
