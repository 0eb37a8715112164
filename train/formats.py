"""The memory formats a model is trained on and benchmarked with: a compressor method and budget (adaptive or
not, centroid-only or not), or every token of a few frames."""

from __future__ import annotations

from dataclasses import dataclass

from compressor.config import METHODS, CompressorConfig
from configs.schema import check

#: The memory format that hands the LLM every token of uniformly sampled frames (no compression).
FULL = "full"


@dataclass(frozen=True)
class MemoryFormat:
    """One memory format the model learns to read; a step trains on one format drawn by weight.

    method:        a compressor method (token_dynamics, offline_token_dynamics, uniform, pooling, dycoke, tome)
                   or "full": every token of `frames` uniformly sampled frames, uncompressed.
    budget:        visual tokens handed to the LLM (compressor budget; ignored by "full").
    recent_window: pooled tokens of the latest frame, counted in the budget.
    centroid_only: token_dynamics without the cross-dynamics attention (the ablation: no key map).
    frames:        "full" only: frames sampled uniformly over the memory's span.
    adaptive, k_min, merge_similarity: token_dynamics only, as in compressor.config.CompressorConfig: K may fall
                   to k_min by merging clusters whose centroids are more alike than merge_similarity (an
                   object's cells in one token instead of split over two).
    weight:        relative probability of drawing this format for a step (> 0).
    """

    method: str = "token_dynamics"
    budget: int = 32
    recent_window: int = 0
    centroid_only: bool = False
    frames: int = 16
    adaptive: bool = False
    k_min: int = 12
    merge_similarity: float = 0.95
    weight: float = 1.0

    def __post_init__(self) -> None:
        check(self.method in (*METHODS, FULL), "method", f"one of {(*METHODS, FULL)}", self.method)
        check(self.budget >= 1, "budget", ">= 1", self.budget)
        check(0 <= self.recent_window < self.budget, "recent_window", f"0 <= r < budget={self.budget}",
               self.recent_window)
        check(self.frames >= 1, "frames", ">= 1", self.frames)
        check(self.weight > 0, "weight", "> 0", self.weight)
        check(not self.centroid_only or self.method == "token_dynamics", "centroid_only",
               "false unless method is token_dynamics", self.centroid_only)
        check(not self.adaptive or self.method == "token_dynamics", "adaptive",
               "false unless method is token_dynamics", self.adaptive)
        check(self.k_min >= 1 and (self.k_min <= self.budget or not self.adaptive), "k_min",
              f"1 <= k_min <= budget={self.budget}", self.k_min)
        check(-1.0 <= self.merge_similarity <= 1.0, "merge_similarity", "a cosine in [-1, 1]", self.merge_similarity)

    @property
    def uses_dynamics(self) -> bool:
        """Whether the cross-dynamics attention fuses motion into this format's base tokens."""
        return self.method == "token_dynamics" and not self.centroid_only

    @property
    def name(self) -> str:
        """Short label, e.g. "token_dynamics@32", "token_dynamics@32/centroid", "full@16f"."""
        if self.method == FULL:
            return f"full@{self.frames}f"
        adaptive = f"/adaptive{self.k_min}-{self.merge_similarity:g}" if self.adaptive else ""
        return f"{self.method}@{self.budget}" + adaptive + ("/centroid" if self.centroid_only else "")

    def compressor_config(self, seed: int) -> CompressorConfig:
        """The streaming compressor's config for this format (not for "full", which keeps every token)."""
        adaptive = dict(adaptive=True, k_min=self.k_min, merge_similarity=self.merge_similarity) if self.adaptive else {}
        return CompressorConfig(method=self.method, budget=self.budget, recent_window=self.recent_window, seed=seed,
                                **adaptive)
