"""Offline Token Dynamics: spherical k-means, key map, hash function, adaptive K, dtypes and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.errors import InvalidConfig, InvalidTokens
from compressor.kmeans import adaptive_kmeans, cosine_silhouette, elbow_k, normalize_rows, spherical_kmeans
from compressor.offline import hash_rebuild, smallest_uint_dtype, token_dynamics
from tests.compressor.helpers import clustered_tokens


def test_smallest_uint_dtype() -> None:
    assert smallest_uint_dtype(1) == np.uint8
    assert smallest_uint_dtype(256) == np.uint8
    assert smallest_uint_dtype(257) == np.uint16
    assert smallest_uint_dtype(70_000) == np.uint32


def test_base_key_map_and_hash_function() -> None:
    # given a clip with 6 well separated directions
    tokens = clustered_tokens(8, centres=6, noise=0.05)
    # when it is reduced to K=6
    result = token_dynamics(tokens, 6, seed=1)
    # then every cluster is used, ids fit uint8 and the rebuilt clip has the input's shape and is close
    assert result.k == 6 and result.key_map.dtype == np.uint8 and result.key_map.shape == (8, 4, 4)
    rebuilt = result.reconstruct()
    assert rebuilt.shape == tokens.shape
    cos = torch.nn.functional.cosine_similarity(rebuilt.reshape(-1, 16), tokens.reshape(-1, 16), dim=1)
    assert float(cos.mean()) > 0.95
    assert torch.equal(hash_rebuild(result.base, result.key_map), rebuilt)
    assert float(torch.linalg.vector_norm(result.base, dim=1).max()) <= 1.0 + 1e-5  # mean of unit members


def test_canonical_order_is_first_appearance() -> None:
    result = token_dynamics(clustered_tokens(4), 5)
    flat = result.key_map.reshape(-1)
    first = [int(np.flatnonzero(flat == k)[0]) for k in range(result.k)]
    assert first == sorted(first) and flat[0] == 0


def test_llm_tokens_at_member_norm() -> None:
    tokens = clustered_tokens(4, noise=0.01)
    result = token_dynamics(tokens, 6)
    norms = torch.linalg.vector_norm(result.llm_tokens(), dim=1)
    assert torch.allclose(norms, result.norms, atol=1e-4)
    assert 3.0 <= float(norms.mean()) <= 4.0


def test_same_seed_same_result_and_seeds_matter() -> None:
    tokens = clustered_tokens(6, centres=12, noise=0.3)
    a, b = token_dynamics(tokens, 8, seed=3), token_dynamics(tokens, 8, seed=3)
    assert np.array_equal(a.key_map, b.key_map) and torch.equal(a.base, b.base)


def test_low_precision_inputs_accumulate_in_float32() -> None:
    tokens = clustered_tokens(4, noise=0.05)
    reference = token_dynamics(tokens, 6)
    for dtype in (torch.float16, torch.bfloat16):
        result = token_dynamics(tokens.to(dtype), 6)
        assert result.base.dtype == torch.float32
        assert (result.key_map == reference.key_map).mean() > 0.95


def test_duplicate_tokens_give_fewer_clusters() -> None:
    tokens = torch.ones(2, 2, 2, 4)
    result = token_dynamics(tokens, 5)
    assert result.k == 1 and np.all(result.key_map == 0)


def test_kmeans_converges_and_respects_iteration_cap() -> None:
    xn = normalize_rows(clustered_tokens(6, noise=0.2).reshape(-1, 16))
    capped = spherical_kmeans(xn, 6, seed=0, tol=0.0, max_iter=2)
    assert capped.iterations == 2
    converged = spherical_kmeans(xn, 6, seed=0, tol=1e-4, max_iter=200)
    assert converged.iterations < 200 and int(converged.counts.sum()) == xn.shape[0]


def test_adaptive_rules_find_the_true_number_of_clusters() -> None:
    xn = normalize_rows(clustered_tokens(8, grid=(6, 6), centres=5, noise=0.02).reshape(-1, 16))
    for rule in ("elbow", "silhouette"):
        result = adaptive_kmeans(xn, 2, 10, rule, seed=0)
        assert result.centroids.shape[0] == 5, rule


def test_elbow_picks_the_bend() -> None:
    assert elbow_k([1, 2, 3, 4, 5], [1.0, 0.2, 0.15, 0.1, 0.05]) == 2
    assert elbow_k([4, 5], [0.5, 0.4]) == 5


def test_silhouette_of_perfect_clusters_is_near_one() -> None:
    xn = torch.tensor([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0], [0.001, 1.0]])
    assert cosine_silhouette(normalize_rows(xn), torch.tensor([0, 0, 1, 1]), 2) > 0.99


def test_offline_adaptive_result_within_range() -> None:
    result = token_dynamics(clustered_tokens(4, centres=5, noise=0.02), 12, adaptive_rule="elbow", k_min=3)
    assert 3 <= result.k <= 12


@pytest.mark.parametrize("bad", [torch.zeros(3, 4, 4), torch.zeros(0, 4, 4, 8)])
def test_offline_rejects_bad_tokens(bad: torch.Tensor) -> None:
    with pytest.raises(InvalidTokens, match="expected"):
        token_dynamics(bad, 4)


def test_offline_rejects_bad_k() -> None:
    with pytest.raises(InvalidConfig, match="expected"):
        token_dynamics(clustered_tokens(2), 0)
    with pytest.raises(InvalidConfig, match="k_min"):
        token_dynamics(clustered_tokens(2), 4, adaptive_rule="elbow", k_min=5)


@pytest.mark.gpu
def test_gpu_matches_cpu() -> None:
    tokens = clustered_tokens(4, noise=0.05)
    cpu, gpu = token_dynamics(tokens, 6), token_dynamics(tokens.cuda(), 6)
    assert gpu.base.is_cuda and (cpu.key_map == gpu.key_map).mean() > 0.99
