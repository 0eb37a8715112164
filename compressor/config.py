"""Configuration of one stream's compressor (method by name, token budget, thresholds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from compressor.errors import InvalidConfig

METHODS = ("token_dynamics", "offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")
ADAPTIVE_RULES = ("merge_cost", "elbow", "silhouette")


@dataclass(frozen=True)
class CompressorConfig:
    """How one stream's visual tokens are reduced before they reach the LLM.

    Fields:
        method: registry name, one of ``METHODS``.
        budget: maximum number of visual tokens handed to the LLM, recent window included.
        adaptive: Token Dynamics picks K in [k_min, k_max] (capped by budget - recent_window) instead of a
            fixed K = budget - recent_window.
        k_min, k_max: adaptive K range (the paper uses 12..32).
        adaptive_rule: how the first chunk picks K ("elbow" or "silhouette" run the offline rules; "merge_cost"
            uses the elbow rule on the first chunk too). Later chunks always use merge cost: clusters whose
            centroids are more similar than ``merge_similarity`` are merged down to k_min.
        recent_window: pooled tokens of the latest frame appended to the base, counted in the budget.
        seed: seeds every random choice (k-means++); same seed + same input -> same state, bit for bit.
        novelty_threshold: a token whose best cosine to the current centroids is below this seeds new
            clusters (cosine units, -1..1).
        max_new_clusters: at most this many clusters are seeded per chunk (then merged back to the budget).
        merge_similarity: adaptive mode merges pairs with centroid cosine above this while K > k_min.
        kmeans_tol: offline k-means stops when no centroid moved more than this (Euclidean, unit sphere).
        kmeans_max_iter: offline k-means iteration cap.
        silhouette_sample: tokens subsampled (seeded) for the silhouette score.
        window_frames: baselines that stream keep this many recent frames and reduce them at snapshot time.
        pool_grid: uniform/pooling/dycoke pool each kept frame or segment to pool_grid x pool_grid tokens.
        dycoke_prune: DyCoke stage-1 fraction of later-frame tokens dropped per window of 4 (0.3/0.5/0.7).
    """

    method: str = "token_dynamics"
    budget: int = 32
    adaptive: bool = False
    k_min: int = 12
    k_max: int = 32
    adaptive_rule: str = "elbow"
    recent_window: int = 0
    seed: int = 0
    novelty_threshold: float = 0.6
    max_new_clusters: int = 4
    merge_similarity: float = 0.95
    kmeans_tol: float = 1e-4
    kmeans_max_iter: int = 100
    silhouette_sample: int = 2000
    window_frames: int = 32
    pool_grid: int = 2
    dycoke_prune: float = 0.7

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidConfig(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.budget < 1:
            raise InvalidConfig(f"budget: expected >= 1, got {self.budget}")
        if not 0 <= self.recent_window < self.budget:
            raise InvalidConfig(f"recent_window: expected 0 <= recent_window < budget={self.budget}, "
                                f"got {self.recent_window}")
        if self.k_min < 1:
            raise InvalidConfig(f"k_min: expected >= 1, got {self.k_min}")
        if self.k_min > self.k_max:
            raise InvalidConfig(f"k_min/k_max: expected k_min <= k_max, got k_min={self.k_min} > k_max={self.k_max}")
        if self.adaptive_rule not in ADAPTIVE_RULES:
            raise InvalidConfig(f"adaptive_rule: expected one of {ADAPTIVE_RULES}, got {self.adaptive_rule!r}")
        if not -1.0 <= self.novelty_threshold <= 1.0:
            raise InvalidConfig(f"novelty_threshold: expected a cosine in [-1, 1], got {self.novelty_threshold}")
        if self.max_new_clusters < 0:
            raise InvalidConfig(f"max_new_clusters: expected >= 0, got {self.max_new_clusters}")
        if not -1.0 <= self.merge_similarity <= 1.0:
            raise InvalidConfig(f"merge_similarity: expected a cosine in [-1, 1], got {self.merge_similarity}")
        if self.kmeans_tol < 0 or self.kmeans_max_iter < 1:
            raise InvalidConfig(f"kmeans_tol/kmeans_max_iter: expected >= 0 and >= 1, "
                                f"got {self.kmeans_tol} and {self.kmeans_max_iter}")
        if self.silhouette_sample < 2:
            raise InvalidConfig(f"silhouette_sample: expected >= 2, got {self.silhouette_sample}")
        if self.window_frames < 1 or self.pool_grid < 1:
            raise InvalidConfig(f"window_frames/pool_grid: expected >= 1, got {self.window_frames}/{self.pool_grid}")
        if not 0.0 <= self.dycoke_prune < 1.0:
            raise InvalidConfig(f"dycoke_prune: expected 0 <= p < 1, got {self.dycoke_prune}")

    @property
    def base_budget(self) -> int:
        """Slots for content tokens: the budget minus the recent window."""
        return self.budget - self.recent_window

    @property
    def k_range(self) -> tuple[int, int]:
        """(lowest, highest) K the base may hold, both capped by ``base_budget``."""
        if not self.adaptive:
            return self.base_budget, self.base_budget
        return min(self.k_min, self.base_budget), min(self.k_max, self.base_budget)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (msgpack-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressorConfig:
        """Inverse of ``to_dict``; unknown keys are rejected, naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig(f"compressor config: unknown key(s) {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)
