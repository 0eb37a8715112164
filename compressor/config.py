"""Configuration of one stream's compressor (method by name, token budget, thresholds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from compressor.errors import InvalidConfig
from configs.schema import check, check_types

METHODS = ("token_dynamics", "offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")
ADAPTIVE_RULES = ("merge_cost", "elbow", "silhouette")


# Upper bounds of the integer and float fields: well above any sensible stream, low enough that a typo (an
# extra zero, a count of tokens instead of clusters) fails here instead of as a 1 GB allocation later.
MAX_BUDGET = 1024
MAX_NEW_CLUSTERS = 64
MAX_KMEANS_ITER = 10_000
MAX_SAMPLE = 100_000
MAX_WINDOW_FRAMES = 4096
MAX_POOL_GRID = 64
MAX_SEED = 2**63 - 1
MAX_SECONDS = 10 * 365 * 86400.0   # ten years of media time
MAX_RETENTION_BYTES = 2**40        # 1 TiB of segments per stream


@dataclass(frozen=True)
class CompressorConfig:
    """How one stream's visual tokens are reduced before they reach the LLM.

    Fields (every integer must be an ``int`` and every real a finite ``int``/``float``; ``bool`` is neither):
        method: registry name, one of ``METHODS``.
        budget: maximum number of visual tokens handed to the LLM, recent window included (1..1024).
        adaptive: Token Dynamics picks K in [k_min, k_max] (capped by budget - recent_window) instead of a
            fixed K = budget - recent_window.
        k_min, k_max: adaptive K range (the paper uses 12..32), 1..1024.
        adaptive_rule: how the first chunk picks K. "merge_cost" (the default) fits k_max clusters and merges
            those whose centroids are more similar than ``merge_similarity`` down to k_min, as every later chunk
            does; "elbow" and "silhouette" run the offline rules, k-means for every K in the range (a first
            chunk 18x dearer on vtest: 1.08 s against 0.06 s, bench/compressor.py; the model shipped before
            2026-12-07 23:00 answered as well from either on the held-out suite, 72.1 % elbow / 72.5 %
            merge_cost at k_min 4, similarity 0.9). Offline Token Dynamics has no merge step: there
            "merge_cost" means the elbow rule.
        recent_window: pooled tokens of the latest frame appended to the base, counted in the budget.
        seed: seeds every random choice (k-means++); same seed + same input -> same state, bit for bit.
        novelty_threshold: a token whose best cosine to the current centroids is below this seeds new
            clusters (cosine units, -1..1). Default 0.8: with 0.6, tokens of new content at cosine 0.6-0.8 from
            a stale cluster were never novel and blurred it (the latest 5 minutes after 2 hours of changing
            content: 0.937 of a fresh stream with 0.6, 0.987 with 0.8 and a 60 s half-life; bench/long_stream.py).
        max_new_clusters: at most this many clusters are seeded per chunk (then merged back to the budget), 0..64.
        merge_similarity: adaptive mode merges pairs with centroid cosine above this while K > k_min.
        half_life_s: streaming Token Dynamics: media seconds after which the weight of what the memory saw
            halves (sums, counts and norm sums of every cluster decay by ``0.5 ** (dt / half_life_s)``), so old
            clusters become cheap to merge and new content claims clusters of its own; 0 = never forget
            (weights by all history). Default 60 s: the live memory is about the last few minutes (content 5
            minutes old weighs 1/32 of the newest), which it reconstructs as well as a fresh stream would
            (>= 0.98 in bench/long_stream.py; 10 minutes gave 0.94-0.95 there, since the previous half hour still
            held clusters); older time stays reachable, at full fidelity, through the sealed segments
            (``segment_s``) and window questions.
        segment_s: the memory actor seals a segment (its own compact memory of that span: base + key map +
            motion) every this many media seconds, next to the checkpoint; 0 = no segments. Default 5 minutes:
            a window memory is built from whole segments' clusters, so a segment should not be longer than the
            windows asked about.
        retention_s: sealed segments older than this many media seconds (before the newest frame) are deleted.
            Default 7 days.
        retention_bytes: the oldest sealed segments are deleted while all of a stream's segments take more
            than this many bytes. Default 512 MiB (about 12 days of a 1 frame/s stream at K = 32).
        keymap_frames: streaming Token Dynamics keeps the key map of at least this many recent frames (it
            drops whole blocks of 1,024 frames beyond it; the snapshot and motion do not need old entries, the
            segments keep them for windows); 0 = keep every frame. Default 4,096 (over an hour at 1 frame/s).
        kmeans_tol: offline k-means stops when no centroid moved more than this (Euclidean, unit sphere).
        kmeans_max_iter: offline k-means iteration cap (1..10000).
        kmeans_restarts: k-means runs from independent seeds, the best kept (1..32; the first chunk and the
            offline method).
        silhouette_sample: tokens subsampled (seeded) for the silhouette score (2..100000).
        window_frames: baselines that stream keep this many recent frames and reduce them at snapshot time.
        pool_grid: uniform/pooling/dycoke pool each kept frame or segment to pool_grid x pool_grid tokens.
        dycoke_prune: DyCoke stage-1 fraction of later-frame tokens dropped per window of 4 (0.3/0.5/0.7).
    """

    method: str = "token_dynamics"
    budget: int = 32
    adaptive: bool = False
    k_min: int = 12
    k_max: int = 32
    adaptive_rule: str = "merge_cost"
    recent_window: int = 0
    seed: int = 0
    novelty_threshold: float = 0.8
    max_new_clusters: int = 4
    merge_similarity: float = 0.95
    half_life_s: float = 60.0
    segment_s: float = 300.0
    retention_s: float = 7 * 86400.0
    retention_bytes: int = 512 * 2**20
    keymap_frames: int = 4096
    kmeans_tol: float = 1e-4
    kmeans_max_iter: int = 100
    kmeans_restarts: int = 3
    silhouette_sample: int = 2000
    window_frames: int = 32
    pool_grid: int = 2
    dycoke_prune: float = 0.7

    def __post_init__(self) -> None:
        check_types(self, InvalidConfig)
        check(self.method in METHODS, "method", f"one of {METHODS}", self.method, InvalidConfig)
        check(self.adaptive_rule in ADAPTIVE_RULES, "adaptive_rule", f"one of {ADAPTIVE_RULES}", self.adaptive_rule,
              InvalidConfig)
        for name, low, high in (("budget", 1, MAX_BUDGET), ("k_min", 1, MAX_BUDGET), ("k_max", 1, MAX_BUDGET),
                                ("seed", 0, MAX_SEED), ("max_new_clusters", 0, MAX_NEW_CLUSTERS),
                                ("kmeans_max_iter", 1, MAX_KMEANS_ITER),
                                ("kmeans_restarts", 1, 32),
                                ("keymap_frames", 0, 2**40), ("silhouette_sample", 2, MAX_SAMPLE),
                                ("window_frames", 1, MAX_WINDOW_FRAMES), ("pool_grid", 1, MAX_POOL_GRID),
                                ("novelty_threshold", -1.0, 1.0), ("merge_similarity", -1.0, 1.0),
                                ("half_life_s", 0.0, MAX_SECONDS), ("segment_s", 0.0, MAX_SECONDS),
                                ("retention_s", 0.0, MAX_SECONDS), ("retention_bytes", 0, MAX_RETENTION_BYTES),
                                ("kmeans_tol", 0.0, 1.0)):
            value = getattr(self, name)
            check(low <= value <= high, name, f"{low} <= {name} <= {high}", value, InvalidConfig)
        check(0 <= self.recent_window < self.budget, "recent_window",
              f"0 <= recent_window < budget={self.budget}", self.recent_window, InvalidConfig)
        if self.k_min > self.k_max:
            raise InvalidConfig(f"k_min/k_max: expected k_min <= k_max, got k_min={self.k_min} > k_max={self.k_max}")
        check(0.0 <= self.dycoke_prune < 1.0, "dycoke_prune", "0 <= p < 1", self.dycoke_prune, InvalidConfig)

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
