"""Cross-dynamics attention: fuse key-map motion features into the K base tokens without adding tokens.

Paper form (VQToken): ``M~ = MLP(motion) in R^{K x D}``, ``B' = MHA(Q = B Wq, K = B Wk, V = M~ Wv)``. Two changes
of ours: each token also gets its *own* motion token ``M~_i`` added to what it attends to (with attention alone a
token only sees motion mixed by content similarity, so "where is the red star now" would need the attention to
learn to be diagonal first), and the sum goes through a zero-initialised projection added to ``B``, so the
untrained module returns ``B`` exactly (training-free mode = plain centroids) and training only adds motion.
Motion features are numbers of very different ranges (fractions, grid units per second, media seconds), so the
motion encoder first expands each one into sines and cosines at frequencies picked by its unit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compressor.motion import MOTION_FEATURES, MOTION_UNITS
from compressor.snapshot import Snapshot

#: Periods of the sine/cosine expansion per feature unit: fractions resolve about 1/16 of their range,
#: media seconds resolve 1 s up to about 68 minutes (enough for "when did X appear?" to the second).
PERIODS = {
    "fraction": (0.125, 0.25, 0.5, 1.0, 2.0),
    "rate": (0.125, 0.25, 0.5, 1.0, 2.0),
    "seconds": tuple(2.0 ** k for k in range(1, 13)),
}
#: The raw value rides along too, scaled to about unit range (10 media minutes -> 1).
SCALES = {"fraction": 1.0, "rate": 1.0, "seconds": 1 / 600}


class FourierFeatures(nn.Module):
    """``[..., F]`` features -> ``[..., F * (1 + 2P)]``: each value, then its sines and cosines at fixed periods."""

    def __init__(self, units: tuple[str, ...]) -> None:
        super().__init__()
        periods = max(len(p) for p in PERIODS.values())
        omega = torch.zeros(len(units), periods)           # [F, P]; 0 where a unit has fewer periods
        for i, unit in enumerate(units):
            if unit not in PERIODS:
                raise ValueError(f"units: expected each of {sorted(PERIODS)}, got {unit!r}")
            for j, period in enumerate(PERIODS[unit]):
                omega[i, j] = 2 * math.pi / period
        self.register_buffer("omega", omega, persistent=False)
        self.register_buffer("scale", torch.tensor([SCALES[u] for u in units]), persistent=False)  # [F]
        self.out_dim = len(units) * (1 + 2 * periods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x.unsqueeze(-1) * self.omega                # [..., F, P]
        feats = torch.cat([(x * self.scale).unsqueeze(-1), angles.sin(), angles.cos()], dim=-1)  # [..., F, 1 + 2P]
        return feats.flatten(-2)


class MotionEncoder(nn.Module):
    """``[..., K, F]`` motion features -> ``[..., K, D]`` motion tokens (Fourier expansion + two-layer MLP)."""

    def __init__(self, motion_dim: int, dim: int, units: tuple[str, ...] | None = None) -> None:
        super().__init__()
        if units is None:
            units = tuple(MOTION_UNITS[name] for name in MOTION_FEATURES) if motion_dim == len(MOTION_FEATURES) \
                else ("fraction",) * motion_dim
        if len(units) != motion_dim:
            raise ValueError(f"units: expected {motion_dim} (one per motion feature), got {len(units)}")
        self.fourier = FourierFeatures(units)
        self.fc1 = nn.Linear(self.fourier.out_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.fourier(motion))))


class CrossDynamicsAttention(nn.Module):
    """Queries and keys from the base tokens, values from their motion tokens, plus each token's own motion;
    residual with a zero-initialised output projection.

    Args:
        dim: D of the base tokens (the LLM's embedding size).
        motion_dim: F, the number of motion features (``len(MOTION_FEATURES)`` by default).
        heads: attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, motion_dim: int = len(MOTION_FEATURES), heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: expected a divisor of dim={dim}, got {heads}")
        self.dim, self.motion_dim, self.heads = dim, motion_dim, heads
        self.motion = MotionEncoder(motion_dim, dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)  # identity at initialisation: B' = B + 0
        nn.init.zeros_(self.out.bias)

    def forward(self, base: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``base [..., K, D]``, ``motion [..., K, F]`` -> ``[..., K, D]`` (same dtype as ``base``).

        Raises:
            ValueError: D or F differs from the module's, or K differs between the two.
        """
        if base.shape[-1] != self.dim or motion.shape[-1] != self.motion_dim or base.shape[-2] != motion.shape[-2]:
            raise ValueError(f"expected base [..., K, {self.dim}] and motion [..., K, {self.motion_dim}], "
                             f"got {tuple(base.shape)} and {tuple(motion.shape)}")
        k, hd = base.shape[-2], self.dim // self.heads
        x = base.to(self.q.weight.dtype)
        m = self.motion(motion.to(self.q.weight.dtype))                     # [..., K, D]

        def split(t: torch.Tensor) -> torch.Tensor:  # [..., K, D] -> [..., heads, K, D/heads]
            return t.reshape(*t.shape[:-2], k, self.heads, hd).transpose(-3, -2)

        attn = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(m)))
        attn = attn.transpose(-3, -2).reshape(*base.shape[:-2], k, self.dim)  # [..., K, D]
        return base + self.out(attn + m).to(base.dtype)


def fuse_memory(base: torch.Tensor, motion: torch.Tensor, recent: torch.Tensor,
                attention: CrossDynamicsAttention | None = None) -> torch.Tensor:
    """The tokens handed to the LLM, differentiable: ``base [K, D]`` (motion-fused by ``attention`` when given
    and when ``motion [K, F]`` has features), then ``recent [R, D]`` -> ``[K + R, D]`` in base's dtype."""
    if attention is not None and base.shape[0] and motion.shape[-1]:
        base = attention(base, motion.to(base.device))
    return torch.cat([base, recent.to(base.device, base.dtype).reshape(-1, base.shape[1])], dim=0)


def visual_tokens(snapshot: Snapshot, attention: CrossDynamicsAttention | None = None) -> torch.Tensor:
    """The tokens handed to the LLM for one snapshot: ``[K + R, D]`` float32 (no gradients), on the attention's
    device when one is given. The base is already in canonical order (first appearance) and at the input
    tokens' norm; snapshots without motion features (baselines: ``motion`` is ``[K, 0]``) pass through."""
    device = next(attention.parameters()).device if attention is not None else torch.device("cpu")
    base = torch.from_numpy(np.array(snapshot.base, dtype=np.float32)).to(device)      # [K, D]
    motion = torch.from_numpy(np.array(snapshot.motion, dtype=np.float32))             # [K, F]
    recent = torch.from_numpy(np.array(snapshot.recent, dtype=np.float32))             # [R, D]
    with torch.no_grad():
        return fuse_memory(base, motion, recent, attention).float()
