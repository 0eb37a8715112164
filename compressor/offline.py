"""Offline Token Dynamics (VQToken): cluster every token of a clip into a token base plus a key map.

``token_dynamics(tokens [T, H, W, D], k)`` runs spherical k-means over all L2-normalised tokens, returns the
base ``[K, D]`` and the key map ``[T, H, W]`` (smallest unsigned dtype that fits K), and ``hash_rebuild``
is the token hash function ``X̂[t, h, w] = B[M[t, h, w]]``. Clusters are numbered in canonical order: by
the first (t, h, w) position where they appear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compressor.errors import InvalidConfig
from compressor.kmeans import DEFAULT_RESTARTS, KMeansResult, adaptive_kmeans, spherical_kmeans
from compressor.validation import check_chunk, check_finite, token_norms


def smallest_uint_dtype(n_values: int) -> np.dtype:
    """Smallest unsigned integer dtype holding ids ``0 .. n_values - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_values - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@dataclass(frozen=True)
class Fit:
    """A clustering of ``N`` tokens in canonical order (cluster 0 appears first in the token order).

    centroids ``[K, D]`` unit; labels ``[N]`` int64; sums ``[K, D]`` float32 sum of unit members;
    counts ``[K]`` int64; norm_sums ``[K]`` float64 sum of raw member norms; first ``[K]`` int64 index of the
    first member; inertia: mean ``1 - cos`` to the assigned centroid.
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    sums: torch.Tensor
    counts: torch.Tensor
    norm_sums: torch.Tensor
    first: torch.Tensor
    inertia: float


def fit_tokens(flat: torch.Tensor, norms: torch.Tensor, k: int, *, seed: int, tol: float, max_iter: int,
               adaptive_rule: str | None = None, k_min: int = 1, sample: int = 2000,
               restarts: int = DEFAULT_RESTARTS) -> Fit:
    """Cluster ``flat [N, D]`` (raw tokens, any float dtype) whose float32 norms are ``norms [N]``.

    Fixed K when ``adaptive_rule`` is None, else K in ``[k_min, k]`` chosen by the rule.
    """
    xn = flat.float() / norms[:, None].clamp_min(1e-12)
    if adaptive_rule is None:
        res: KMeansResult = spherical_kmeans(xn, k, seed, tol, max_iter, restarts)
    else:
        res = adaptive_kmeans(xn, k_min, k, adaptive_rule, seed, tol, max_iter, sample, restarts)
    n, kk = xn.shape[0], res.centroids.shape[0]
    positions = torch.arange(n, device=xn.device)
    first = torch.full((kk,), n, dtype=torch.long, device=xn.device)
    first = first.scatter_reduce(0, res.labels, positions, reduce="amin")
    order = torch.argsort(first, stable=True)  # new cluster i is old cluster order[i]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(kk, device=xn.device)
    labels = rank[res.labels]
    # Summed on the CPU in a fixed order: GPU atomics would make the result depend on scheduling.
    norm_sums = torch.from_numpy(np.bincount(labels.cpu().numpy(), weights=norms.double().cpu().numpy(),
                                             minlength=kk)).to(xn.device)
    return Fit(res.centroids[order], labels, res.sums[order], res.counts[order], norm_sums, first[order],
               res.inertia)


@dataclass(frozen=True)
class TokenDynamicsResult:
    """Offline Token Dynamics of one clip.

    base: ``[K, D]`` float32 mean of the normalised members (the paper's codebook; norms <= 1).
    centroids: ``[K, D]`` unit directions of the base.
    key_map: ``[T, H, W]`` smallest unsigned dtype, cluster id of every token (canonical order).
    counts: ``[K]`` members per cluster; norms: ``[K]`` mean raw norm of the members.
    inertia: mean ``1 - cos`` of every token to its centroid.
    """

    base: torch.Tensor
    centroids: torch.Tensor
    key_map: np.ndarray
    counts: torch.Tensor
    norms: torch.Tensor
    inertia: float

    @property
    def k(self) -> int:
        """Number of base tokens."""
        return int(self.base.shape[0])

    def llm_tokens(self) -> torch.Tensor:
        """``[K, D]`` unit centroids rescaled to their members' mean raw norm (the projector's scale)."""
        return self.centroids * self.norms[:, None].to(self.centroids.dtype)

    def reconstruct(self) -> torch.Tensor:
        """The token hash function: ``[T, H, W, D]`` rebuilt from the base and the key map."""
        return hash_rebuild(self.base, self.key_map)


def hash_rebuild(base: torch.Tensor, key_map: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``X̂[t, h, w] = base[key_map[t, h, w]]``: ``[K, D]`` and ``[T, H, W]`` -> ``[T, H, W, D]``."""
    index = torch.as_tensor(np.asarray(key_map).astype(np.int64)) if isinstance(key_map, np.ndarray) \
        else key_map.long()
    return base[index.to(base.device)]


def token_dynamics(tokens: np.ndarray | torch.Tensor, k: int = 32, *, seed: int = 0, tol: float = 1e-4,
                   max_iter: int = 100, adaptive_rule: str | None = None, k_min: int = 12,
                   silhouette_sample: int = 2000, restarts: int = DEFAULT_RESTARTS) -> TokenDynamicsResult:
    """Offline Token Dynamics of a whole clip.

    Args:
        tokens: ``[T, H, W, D]`` float tokens (CPU or GPU; float16/bfloat16 accumulate in float32).
        k: fixed K, or the upper end of the adaptive range.
        adaptive_rule: None for fixed K; "elbow" or "silhouette" to choose K in ``[k_min, k]``.
    Raises:
        InvalidTokens: bad rank, empty, NaN/Inf. InvalidConfig: k < 1 or k_min > k.
    """
    if k < 1:
        raise InvalidConfig(f"k: expected >= 1, got {k}")
    if adaptive_rule is not None and not 1 <= k_min <= k:
        raise InvalidConfig(f"k_min/k: expected 1 <= k_min <= k, got k_min={k_min}, k={k}")
    x = check_chunk(tokens)
    t, h, w, d = x.shape
    flat = x.reshape(t * h * w, d)  # [N, D]
    norms = token_norms(flat)
    check_finite(norms)
    fit = fit_tokens(flat, norms, k, seed=seed, tol=tol, max_iter=max_iter, adaptive_rule=adaptive_rule,
                     k_min=k_min, sample=silhouette_sample, restarts=restarts)
    kk = fit.centroids.shape[0]
    key_map = fit.labels.cpu().numpy().astype(smallest_uint_dtype(kk)).reshape(t, h, w)
    counts = fit.counts
    base = fit.sums / counts[:, None].to(fit.sums.dtype)
    norms_mean = (fit.norm_sums / counts.double()).float()
    return TokenDynamicsResult(base, fit.centroids, key_map, counts, norms_mean, fit.inertia)
