"""Spatial average pooling of token grids (recent window, uniform/pooling/DyCoke baselines)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pool_grid(count: int, grid: tuple[int, int]) -> tuple[int, int]:
    """The most square ``(gh, gw)`` with ``gh * gw == count`` that fits in ``grid``; if none fits, the largest
    square-ish one with ``gh * gw <= count``."""
    h, w = grid
    for gh in range(int(math.isqrt(count)), 0, -1):
        gw = count // gh
        if gh * gw == count and gh <= h and gw <= w:
            return gh, gw
        if gh * gw == count and gw <= h and gh <= w:
            return gw, gh
    gh = min(h, int(math.isqrt(count)))
    return gh, max(1, min(w, count // gh))


def pool_frames(tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Average-pool ``[T, H, W, D]`` to ``[T, gh, gw, D]`` (float32, adaptive bins)."""
    x = tokens.float().permute(0, 3, 1, 2)  # [T, D, H, W]
    return F.adaptive_avg_pool2d(x, (gh, gw)).permute(0, 2, 3, 1).contiguous()  # [T, gh, gw, D]


def pool_to_count(frame: torch.Tensor, count: int) -> torch.Tensor:
    """Pool one frame ``[H, W, D]`` to at most ``count`` tokens ``[R, D]`` (R = count when it factors)."""
    gh, gw = pool_grid(count, (frame.shape[0], frame.shape[1]))
    return pool_frames(frame[None], gh, gw).reshape(gh * gw, frame.shape[-1])
