"""Measurements: token counts and compression ratio, reconstruction fidelity, TokDense, state size.

Token-count convention: papers differ. VQToken counts against 729 tokens per frame (27x27 SigLIP patches of
LLaVA-OneVision without pooling); DyCoke, HoliTom and most others against the 196 pooled tokens per frame
(14x14). ``token_counts`` always reports which one it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compressor.baselines import Reduction
from compressor.kmeans import normalize_rows
from compressor.stream_base import StreamCompressor

TOKENS_PER_FRAME = {"pooled-196": 196, "full-729": 729}


@dataclass(frozen=True)
class TokenCounts:
    """``tokens_in`` visual tokens the full video would give the LLM, ``tokens_out`` after compression."""

    frames: int
    convention: str
    tokens_in: int
    tokens_out: int

    @property
    def compression_ratio(self) -> float:
        """tokens_in / tokens_out (inf when nothing is kept)."""
        return compression_ratio(self.tokens_in, self.tokens_out)

    @property
    def kept_fraction(self) -> float:
        """tokens_out / tokens_in."""
        return self.tokens_out / self.tokens_in if self.tokens_in else 0.0


def compression_ratio(tokens_in: int, tokens_out: int) -> float:
    """``tokens_in / tokens_out``."""
    return tokens_in / tokens_out if tokens_out else float("inf")


def token_counts(frames: int, tokens_out: int, convention: str = "pooled-196") -> TokenCounts:
    """Counts for ``frames`` frames under ``convention`` ("pooled-196" or "full-729").

    Raises:
        ValueError: unknown convention.
    """
    if convention not in TOKENS_PER_FRAME:
        raise ValueError(f"convention: expected one of {sorted(TOKENS_PER_FRAME)}, got {convention!r}")
    return TokenCounts(frames, convention, frames * TOKENS_PER_FRAME[convention], tokens_out)


def fidelity_keymap(tokens: torch.Tensor, base: torch.Tensor, key_map: np.ndarray) -> float:
    """Mean cosine between every token ``[T, H, W, D]`` and its reconstruction ``base[key_map]``."""
    d = tokens.shape[-1]
    flat = normalize_rows(tokens.reshape(-1, d).float())
    unit = normalize_rows(base.float().to(flat.device))
    index = torch.from_numpy(np.asarray(key_map).reshape(-1).astype(np.int64)).to(flat.device)
    return float((flat * unit[index]).sum(dim=1).mean())


def fidelity_nearest(tokens: torch.Tensor, kept: torch.Tensor, block: int = 8192) -> float:
    """Mean over every token ``[..., D]`` of its best cosine with a kept token ``[B, D]`` (pruning methods:
    a dropped token is represented by its most similar kept token). Blocks bound the memory."""
    d = tokens.shape[-1]
    flat = tokens.reshape(-1, d).float()
    unit = normalize_rows(kept.float().to(flat.device))
    total = 0.0
    for start in range(0, flat.shape[0], block):
        total += float((normalize_rows(flat[start:start + block]) @ unit.T).max(dim=1).values.sum())
    return total / flat.shape[0]


def fidelity(tokens: torch.Tensor, reduction: Reduction) -> float:
    """Reconstruction fidelity of a whole-clip reduction: through its key map if it has one, else nearest."""
    if reduction.key_map is not None:
        return fidelity_keymap(tokens, reduction.tokens, reduction.key_map)
    return fidelity_nearest(tokens, reduction.tokens)


def tok_dense(accuracy_percent: float, visual_tokens: int) -> float:
    """TokDense = accuracy (%) / number of visual tokens fed to the LLM (VQToken's metric).

    Raises:
        ValueError: visual_tokens < 1.
    """
    if visual_tokens < 1:
        raise ValueError(f"visual_tokens: expected >= 1, got {visual_tokens}")
    return accuracy_percent / visual_tokens


def state_size_bytes(compressor: StreamCompressor) -> int:
    """Size of the serialised state (what a checkpoint stores)."""
    return len(compressor.to_bytes())
