"""Input checks shared by every method: shape, grid and D consistency, finiteness, timestamps."""

from __future__ import annotations

import math

import numpy as np
import torch

from compressor.errors import InvalidTokens


def as_tensor(tokens: np.ndarray | torch.Tensor) -> torch.Tensor:
    """View ``tokens`` as a torch tensor without copying when possible (numpy -> CPU tensor)."""
    if isinstance(tokens, torch.Tensor):
        return tokens
    if isinstance(tokens, np.ndarray):
        if tokens.dtype == np.float16 or tokens.dtype == np.float32 or tokens.dtype == np.float64:
            return torch.from_numpy(np.ascontiguousarray(tokens))
        raise InvalidTokens(f"tokens: expected a float16/32/64 array, got dtype {tokens.dtype}")
    raise InvalidTokens(f"tokens: expected numpy.ndarray or torch.Tensor, got {type(tokens).__name__}")


def check_chunk(tokens: np.ndarray | torch.Tensor, grid: tuple[int, int] | None = None,
                dim: int | None = None) -> torch.Tensor:
    """Check the shape of a token chunk ``[T_c, H, W, D]`` and return it as a tensor every method can use.

    Soft edges are made hard here, once for every method: float64 is converted to float32 (the state is
    float32; a float64 matmul against it would fail later), a tensor that requires grad is detached (the
    compressor never trains, and in-place updates of grad-tracked sums would fail half-way), and the result is
    C-contiguous, so a strided view of the same values gives the same state bits as a packed copy.

    Args:
        tokens: ``[T_c, H, W, D]`` floating point.
        grid: ``(H, W)`` of earlier chunks of the same stream, or None for the first one.
        dim: ``D`` of earlier chunks, or None.
    Raises:
        InvalidTokens: wrong rank, non-float dtype, an empty axis, or grid/D different from earlier chunks.
    """
    x = as_tensor(tokens)
    if x.dim() != 4:
        raise InvalidTokens(f"tokens: expected rank 4 [T, H, W, D], got rank {x.dim()} with shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InvalidTokens(f"tokens: expected a floating point dtype, got {x.dtype}")
    if min(x.shape) == 0:
        raise InvalidTokens(f"tokens: expected a non-empty chunk, got shape {tuple(x.shape)}")
    if grid is not None and tuple(x.shape[1:3]) != tuple(grid):
        raise InvalidTokens(f"tokens: expected grid {tuple(grid)} like earlier chunks, got {tuple(x.shape[1:3])}")
    if dim is not None and x.shape[3] != dim:
        raise InvalidTokens(f"tokens: expected D={dim} like earlier chunks, got D={x.shape[3]}")
    x = x.detach()
    if x.dtype == torch.float64:
        x = x.float()
    return x.contiguous()


def check_finite(values: torch.Tensor, what: str = "tokens") -> None:
    """Reject NaN/Inf. Called on per-token norms: any NaN/Inf element makes its token's norm non-finite,
    so one pass over ``[N]`` norms replaces a second pass over ``[N, D]``. (A sum of finite values that
    overflows is not an error: the element-wise test below then finds nothing.)"""
    if math.isfinite(float(values.sum())):  # one scalar test: NaN/Inf in any element propagates to the sum
        return
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        raise InvalidTokens(f"{what}: expected finite values, got NaN/Inf in {int(bad.sum())} of {values.numel()}")


def check_timestamps(timestamps: np.ndarray | None, frames: int, after: float | None = None) -> np.ndarray:
    """Return timestamps as float64 ``[T_c]`` media seconds (None is not allowed: streams need time).

    Policy for time that goes backwards: media time in a stream never decreases. The sources already repair
    raw PTS into a strictly increasing clock (``stream/timestamps.py``), so a chunk that goes backwards is a
    bug or a replay (a chunk delivered twice after a restart); it is rejected whole, and the memory actor
    counts and skips it. Equal timestamps are allowed (a duplicated frame time is harmless).

    Args:
        after: the newest timestamp the stream already holds, or None for its first chunk.
    Raises:
        InvalidTokens: wrong length, NaN/Inf, negative, decreasing inside the chunk, or earlier than ``after``.
    """
    try:
        ts = np.asarray(timestamps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidTokens(f"timestamps: expected {frames} real numbers, got {type(timestamps).__name__}") from exc
    if ts.shape != (frames,):
        raise InvalidTokens(f"timestamps: expected shape ({frames},) matching the chunk, got {ts.shape}")
    if not np.all(np.isfinite(ts)):
        raise InvalidTokens("timestamps: expected finite values, got NaN/Inf")
    if ts.min() < 0:
        raise InvalidTokens(f"timestamps: expected media seconds >= 0, got {ts.min()}")
    if np.any(np.diff(ts) < 0):
        raise InvalidTokens(f"timestamps: expected non-decreasing values within the chunk, got {ts.tolist()}")
    if after is not None and ts[0] < after:
        raise InvalidTokens(f"timestamps: expected >= {after} (the newest time already seen; media time never "
                            f"goes backwards), got {ts[0]}")
    return ts


def token_norms(flat: torch.Tensor) -> torch.Tensor:
    """L2 norm of each row of ``flat [N, D]`` accumulated in float32 (float16/bfloat16 inputs included)."""
    return torch.linalg.vector_norm(flat, dim=1, dtype=torch.float32)
