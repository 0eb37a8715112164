"""Whole-clip reductions of ``[T, H, W, D]`` tokens to at most ``budget`` tokens for the LLM.

Every method takes the same budget (tokens into the LLM) so fidelity can be compared at equal cost:
``uniform`` (frame sampling + spatial pooling), ``pooling`` (spatio-temporal average pooling), ``dycoke``
(DyCoke stage 1, temporal pruning in windows of 4 frames), ``tome`` (ToMe bipartite soft matching) and
``offline_token_dynamics`` (VQToken: spherical k-means base + key map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor.errors import InvalidConfig
from compressor.kmeans import normalize_rows
from compressor.offline import token_dynamics
from compressor.pooling import pool_frames, pool_grid


@dataclass(frozen=True)
class Reduction:
    """``tokens [B, D]`` float32 for the LLM (``B <= budget``); ``key_map [T, H, W]`` ids into ``tokens``
    for methods that keep one (Token Dynamics), else None (fidelity then uses the most similar kept token)."""

    tokens: torch.Tensor
    key_map: np.ndarray | None = None


def _frame_grid(budget: int, grid: tuple[int, int], pool: int) -> tuple[int, int]:
    """Pooled grid per kept frame or segment: ``pool x pool`` tokens, fewer when the budget is smaller."""
    return pool_grid(min(pool * pool, budget), grid)


def _evenly(count: int, total: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (centre of each of ``count`` equal parts)."""
    return ((np.arange(count) + 0.5) * total / count).astype(np.int64)


def uniform(tokens: torch.Tensor, budget: int, pool: int = 2) -> Reduction:
    """Keep ``budget // (g*g)`` evenly spaced frames, each average-pooled to a ``g x g`` grid."""
    t, h, w, d = tokens.shape
    gh, gw = _frame_grid(budget, (h, w), pool)
    frames = _evenly(min(t, budget // (gh * gw)), t)
    return Reduction(pool_frames(tokens[torch.from_numpy(frames)], gh, gw).reshape(-1, d))


def pooling(tokens: torch.Tensor, budget: int, pool: int = 2) -> Reduction:
    """Split the clip into ``budget // (g*g)`` equal temporal segments; average each over time, then pool it
    spatially to ``g x g``."""
    t, h, w, d = tokens.shape
    gh, gw = _frame_grid(budget, (h, w), pool)
    segments = min(t, budget // (gh * gw))
    bounds = np.linspace(0, t, segments + 1).round().astype(np.int64)
    means = torch.stack([tokens[a:b].float().mean(dim=0) for a, b in zip(bounds[:-1], bounds[1:])])
    return Reduction(pool_frames(means, gh, gw).reshape(-1, d))  # [segments * gh * gw, D]


def dycoke(tokens: torch.Tensor, budget: int, pool: int = 2, prune: float = 0.7) -> Reduction:
    """DyCoke stage 1 (temporal token merging, in practice pruning) at a token budget.

    DyCoke works on pooled frames in windows of 4: the first frame of a window stays whole; in the later frames
    the fraction ``prune`` of tokens most similar (cosine) to the same grid position in the previous frame is
    dropped, so about ``(1 + 3 (1 - prune)) / 4`` of the tokens remain. To meet ``budget``, frames are sampled
    evenly and pooled to ``g x g`` so that the expected retention fills the budget; then the most redundant
    remaining tokens are dropped (or the least redundant dropped ones restored) to land on exactly ``budget``.
    """
    t, h, w, d = tokens.shape
    gh, gw = _frame_grid(budget, (h, w), pool)
    per_frame = gh * gw
    retention = (1 + 3 * (1 - prune)) / 4
    count = int(min(t, max(1, round(budget / (retention * per_frame)))))
    x = pool_frames(tokens[torch.from_numpy(_evenly(count, t))], gh, gw).reshape(count, per_frame, d)
    unit = normalize_rows(x.reshape(-1, d)).reshape(count, per_frame, d)
    redundancy = torch.full((count, per_frame), -2.0)          # first frame of every window: never redundant
    later = torch.tensor([i % 4 != 0 for i in range(count)])
    sims = (unit[1:] * unit[:-1]).sum(-1)                      # [count-1, per_frame] cos to the previous frame
    redundancy[1:][later[1:]] = sims[later[1:]]
    keep = torch.ones(count, per_frame, dtype=torch.bool)
    drop_per_frame = int(round(prune * per_frame))
    if drop_per_frame:
        top = redundancy.topk(drop_per_frame, dim=1).indices
        keep[later] = keep[later].scatter(1, top[later], False)
    # Land on the budget: drop kept tokens by descending redundancy, or restore dropped ones by ascending.
    flat_keep, flat_red = keep.flatten(), redundancy.flatten()
    kept = int(flat_keep.sum())
    if kept > budget:
        order = torch.argsort(torch.where(flat_keep, flat_red, torch.tensor(-3.0)), descending=True, stable=True)
        flat_keep[order[: kept - budget]] = False
    elif kept < budget:
        order = torch.argsort(torch.where(flat_keep, torch.tensor(3.0), flat_red), stable=True)
        flat_keep[order[: budget - kept]] = True
    return Reduction(x.reshape(-1, d)[flat_keep])


class BipartiteMerger:
    """ToMe bipartite soft matching over a growing token set, bounded by ``budget``.

    Tokens carry sizes; ``add`` appends new tokens and merges until at most ``budget`` remain: alternate
    tokens form sets A and B, every A token points at its most similar B token (cosine), and the ``r`` best
    edges are merged into their B token (size-weighted mean), as in ToMe, with ``r = min(excess, |A|)``.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.tokens: torch.Tensor | None = None  # [M, D] float32
        self.sizes: torch.Tensor | None = None   # [M] float32

    def add(self, new: torch.Tensor) -> None:
        """Append ``new [n, D]`` and merge back to the budget."""
        new = new.float()
        ones = torch.ones(new.shape[0])
        self.tokens = new if self.tokens is None else torch.cat([self.tokens, new])
        self.sizes = ones if self.sizes is None else torch.cat([self.sizes, ones])
        while self.tokens.shape[0] > self.budget:
            self._merge_round(self.tokens.shape[0] - self.budget)

    def _merge_round(self, excess: int) -> None:
        x, size = self.tokens, self.sizes
        a_idx, b_idx = torch.arange(0, x.shape[0], 2), torch.arange(1, x.shape[0], 2)
        sims = normalize_rows(x[a_idx]) @ normalize_rows(x[b_idx]).T       # [|A|, |B|]
        best, target = sims.max(dim=1)
        r = min(excess, a_idx.shape[0])
        merged = torch.argsort(best, descending=True, stable=True)[:r]    # A tokens that merge away
        weighted = x[b_idx] * size[b_idx, None]
        weighted.index_add_(0, target[merged], x[a_idx[merged]] * size[a_idx[merged], None])
        b_size = size[b_idx].clone().index_add_(0, target[merged], size[a_idx[merged]])
        x, size = x.clone(), size.clone()
        x[b_idx], size[b_idx] = weighted / b_size[:, None], b_size
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        keep[a_idx[merged]] = False
        self.tokens, self.sizes = x[keep], size[keep]


def tome(tokens: torch.Tensor, budget: int) -> Reduction:
    """ToMe bipartite merging of the whole clip, fed frame by frame (bounded cost per frame)."""
    t, h, w, d = tokens.shape
    merger = BipartiteMerger(budget)
    for frame in tokens.reshape(t, h * w, d):
        merger.add(frame)
    return Reduction(merger.tokens)


def offline_token_dynamics(tokens: torch.Tensor, budget: int, config: CompressorConfig) -> Reduction:
    """VQToken on the whole clip: K = budget (or adaptive in the configured range), tokens at input norm."""
    k_min, k_max = min(config.k_min, budget), min(config.k_max, budget) if config.adaptive else budget
    result = token_dynamics(tokens, k_max, seed=config.seed, tol=config.kmeans_tol, max_iter=config.kmeans_max_iter,
                            adaptive_rule=config.adaptive_rule if config.adaptive and k_min < k_max else None,
                            k_min=k_min, silhouette_sample=config.silhouette_sample, restarts=config.kmeans_restarts)
    return Reduction(result.llm_tokens().cpu(), result.key_map)


OFFLINE_METHODS = ("offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")


def reduce_clip(method: str, tokens: torch.Tensor, config: CompressorConfig) -> Reduction:
    """Reduce a whole clip ``[T, H, W, D]`` with ``method`` to ``config.base_budget`` tokens.

    Raises:
        InvalidConfig: unknown method (streaming Token Dynamics is not a whole-clip method).
    """
    budget = config.base_budget
    x = tokens.float().cpu()
    if method == "uniform":
        return uniform(x, budget, config.pool_grid)
    if method == "pooling":
        return pooling(x, budget, config.pool_grid)
    if method == "dycoke":
        return dycoke(x, budget, config.pool_grid, config.dycoke_prune)
    if method == "tome":
        return tome(x, budget)
    if method == "offline_token_dynamics":
        return offline_token_dynamics(x, budget, config)
    raise InvalidConfig(f"method: expected one of {OFFLINE_METHODS}, got {method!r}")
