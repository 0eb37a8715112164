"""Small synthetic token clips with cluster structure, for compressor tests."""

from __future__ import annotations

import numpy as np
import torch


def clustered_tokens(frames: int, grid: tuple[int, int] = (4, 4), dim: int = 16, centres: int = 6,
                     noise: float = 0.1, seed: int = 0) -> torch.Tensor:
    """``[T, H, W, D]`` float32 tokens drawn around ``centres`` random directions (norms vary around 3)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(centres, dim, generator=g), dim=1)
    labels = torch.randint(0, centres, (frames, *grid), generator=g)
    scale = 3.0 + torch.rand(frames, *grid, 1, generator=g)
    return (dirs[labels] + noise * torch.randn(frames, *grid, dim, generator=g)) * scale


def timestamps(start: int, count: int, fps: float = 2.0) -> np.ndarray:
    """Media timestamps of frames ``start .. start + count - 1`` at ``fps``."""
    return (np.arange(start, start + count) / fps).astype(np.float64)


def feed(compressor, tokens: torch.Tensor, chunk: int = 4, start: int = 0) -> None:
    """Update ``compressor`` with ``tokens`` in chunks of ``chunk`` frames."""
    for i in range(0, tokens.shape[0], chunk):
        part = tokens[i:i + chunk]
        compressor.update(part, timestamps(start + i, part.shape[0]))
