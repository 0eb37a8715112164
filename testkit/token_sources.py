"""Weight-free token sources for measuring compression on real video (no downloaded model weights).

``pixel_patch_tokens``: every ``patch x patch`` RGB patch of a resized frame, scaled like SigLIP inputs
((x/255 - 0.5) / 0.5). ``TinySiglip``: a randomly initialised 2-layer SigLIP vision tower built in code from
``transformers`` with a fixed seed. ``lift`` maps tokens to another width by a fixed semi-orthogonal matrix,
which keeps every inner product (so cosines and clusters are unchanged) while giving e.g. the 896-dim shape
of LLaVA-OneVision-0.5B's visual tokens.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from compressor.errors import InvalidTokens
from stream.frames import check_frames


def unit_pixels(frames: np.ndarray, size: int) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 RGB -> ``[T, 3, size, size]`` float32 in [0, 1] (antialiased bilinear): model input
    pixels, unlike stream.sampling.resize_frames, which keeps uint8 frames."""
    x = torch.from_numpy(np.ascontiguousarray(check_frames(frames))).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    if x.shape[-2:] == (size, size):
        return x  # what the resize gives at scale 1, bit for bit, without its cost
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def pixel_patch_tokens(frames: np.ndarray, image_size: int = 224, patch: int = 16) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[T, g, g, 3 * patch * patch]`` float32 with ``g = image_size // patch``."""
    if image_size % patch:
        raise InvalidTokens(f"image_size: expected a multiple of patch={patch}, got {image_size}")
    x = (unit_pixels(frames, image_size) - 0.5) / 0.5                      # [T, 3, S, S]
    t, g = x.shape[0], image_size // patch
    x = x.reshape(t, 3, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5)       # [T, g, g, 3, p, p]
    return x.reshape(t, g, g, 3 * patch * patch).contiguous()


def lift(tokens: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """``[..., d]`` -> ``[..., dim]`` (``dim >= d``) through a fixed semi-orthogonal ``[d, dim]`` matrix."""
    d = tokens.shape[-1]
    if dim < d:
        raise InvalidTokens(f"dim: expected >= token width {d}, got {dim}")
    return tokens.float() @ _lift_matrix(d, dim, seed).T


@functools.lru_cache(maxsize=8)
def _lift_matrix(d: int, dim: int, seed: int) -> torch.Tensor:
    """``[dim, d]`` with orthonormal columns, drawn from ``seed``: cached, since the QR costs ~100x the lift of a
    chunk and benchmarks lift thousands of chunks with the same matrix."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, d, generator=generator))
    return q


class TinySiglip:
    """A tiny randomly initialised SigLIP vision tower (``transformers.SiglipVisionModel``), fixed seed.

    Args:
        image_size, patch: input resolution and patch size (grid ``image_size // patch``).
        hidden, layers, heads: model width, depth, attention heads.
        seed: weights are drawn from this seed, so every run sees the same model.
    """

    def __init__(self, image_size: int = 224, patch: int = 16, hidden: int = 64, layers: int = 2,
                 heads: int = 4, seed: int = 0) -> None:
        from transformers import SiglipVisionConfig, SiglipVisionModel

        config = SiglipVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, image_size=image_size, patch_size=patch,
                                    vision_use_head=False)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.model = SiglipVisionModel(config).eval()
        finally:
            torch.random.set_rng_state(state)  # do not disturb the caller's global RNG
        self.image_size, self.grid = image_size, (image_size // patch, image_size // patch)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, batch: int = 16) -> torch.Tensor:
        """``[T, H, W, 3]`` uint8 -> ``[T, g, g, hidden]`` float32 last hidden states."""
        x = (unit_pixels(frames, self.image_size) - 0.5) / 0.5
        out = [self.model(pixel_values=x[i:i + batch]).last_hidden_state for i in range(0, x.shape[0], batch)]
        h = torch.cat(out)                                                  # [T, g*g, hidden]
        return h.reshape(h.shape[0], *self.grid, h.shape[-1])
