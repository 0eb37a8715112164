"""Cross-dynamics attention: fuse key-map motion features into the K base tokens without adding tokens.

Paper form (method.md): ``M~ = MLP(motion) in R^{K x D}``, ``B' = MHA(Q = B Wq, K = B Wk, V = M~ Wv)``. Here the
attention output goes through a zero-initialised projection and is added to ``B``, so the untrained module
returns ``B`` exactly (training-free mode = plain centroids) and training only adds motion to it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compressor.motion import MOTION_FEATURES
from compressor.snapshot import Snapshot


class MotionEncoder(nn.Module):
    """``[..., K, F]`` motion features -> ``[..., K, D]`` motion tokens (two-layer MLP)."""

    def __init__(self, motion_dim: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(motion_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(motion)))


class CrossDynamicsAttention(nn.Module):
    """Queries and keys from the base tokens, values from their motion tokens; residual, zero-init output.

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
        return base + self.out(attn).to(base.dtype)


def visual_tokens(snapshot: Snapshot, attention: CrossDynamicsAttention | None = None) -> torch.Tensor:
    """The tokens handed to the LLM: ``[K + R, D]`` float32 = base (motion-fused if ``attention``) then recent.

    The base is already in canonical order (first appearance) and at the input tokens' norm. Snapshots without
    motion features (baselines: ``motion`` is ``[K, 0]``) pass through unchanged.
    """
    base = torch.from_numpy(np.array(snapshot.base, dtype=np.float32))      # [K, D]
    if attention is not None and base.shape[0] and snapshot.motion.shape[1]:
        motion = torch.from_numpy(np.array(snapshot.motion, dtype=np.float32))
        device = next(attention.parameters()).device
        with torch.no_grad():
            base = attention(base.to(device), motion.to(device)).float().cpu()
    recent = torch.from_numpy(np.array(snapshot.recent, dtype=np.float32)).reshape(-1, base.shape[1])
    return torch.cat([base, recent], dim=0)
