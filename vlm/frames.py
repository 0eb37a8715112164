"""Frames -> normalised pixel tensors, in plain torch (no torchvision: it has no CPU build here)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vlm.base import InputError


def check_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate frames uint8 [T, H, W, 3] (numpy or torch) -> a torch view of them, not copied."""
    if not isinstance(frames, (np.ndarray, torch.Tensor)):
        raise InputError(f"frames: expected a numpy array or tensor [T, H, W, 3] uint8, got {type(frames).__name__}")
    dtype = str(frames.dtype).removeprefix("torch.")
    if dtype != "uint8":
        raise InputError(f"frames: expected dtype uint8, got {dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InputError(f"frames: expected shape [T, H, W, 3] with T, H, W > 0, got {tuple(frames.shape)}")
    if isinstance(frames, torch.Tensor):
        return frames
    # Arrays received zero-copy from ZeroMQ are read-only; torch wants writable memory.
    return torch.from_numpy(np.ascontiguousarray(frames) if frames.flags.writeable else frames.copy())


def preprocess(
    frames: np.ndarray | torch.Tensor,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Frames uint8 [T, H, W, 3] RGB -> pixels [T, 3, size, size], scaled to [0, 1] then (x - mean) / std.

    Frames of another size are resized with antialiased bicubic interpolation (what the LLaVA-OneVision
    processor does with PIL); the aspect ratio is not kept, as in that processor.
    """
    pixels = check_frames(frames).to(device).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", antialias=True).clamp_(0, 255)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((pixels / 255.0 - mean_t) / std_t).to(dtype)
