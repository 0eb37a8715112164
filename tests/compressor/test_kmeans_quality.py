"""k-means initialisation quality: the median seed is within 1.02x of scikit-learn's KMeans(n_init=10)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from compressor.kmeans import normalize_rows, spherical_kmeans
from stream.samples import SampleUnavailable, sample_path
from testkit.token_sources import pixel_patch_tokens

sklearn_cluster = pytest.importorskip("sklearn.cluster")


def vtest_tokens(frames: int = 8, every: int = 10) -> torch.Tensor:
    """``[frames * 196, 768]`` unit pixel-patch tokens of real video (vtest.avi, one frame per second)."""
    try:
        path = sample_path("vtest")
    except SampleUnavailable as exc:
        pytest.skip(f"vtest.avi unavailable: {exc}")
    images = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                images.append(frame.to_ndarray(format="rgb24"))
            if len(images) == frames:
                break
    return normalize_rows(pixel_patch_tokens(np.stack(images)).reshape(-1, 768))


def spherical_distortion(xn: torch.Tensor, centres: torch.Tensor) -> float:
    """Summed ``2 - 2 cos`` of every unit token to its nearest (normalised) centre."""
    return float((2.0 - 2.0 * (xn @ normalize_rows(centres.float()).T).max(dim=1).values).sum())


@pytest.mark.slow  # 36 s on 2 cores: ten seeds of ours and scikit-learn on a real clip (make test runs it)
def test_median_seed_within_1_02_of_scikit_learn() -> None:
    # given real tokens and scikit-learn's best of 10 k-means runs on them
    xn = vtest_tokens()
    reference = sklearn_cluster.KMeans(32, n_init=10, random_state=0).fit(xn.numpy())
    best = spherical_distortion(xn, torch.from_numpy(reference.cluster_centers_))
    # when our k-means runs with 9 different seeds
    ratios = [spherical_distortion(xn, spherical_kmeans(xn, 32, seed).centroids) / best for seed in range(9)]
    # then the median seed is within 1.02x (and one run alone is measurably worse: the restarts matter)
    assert float(np.median(ratios)) <= 1.02, ratios
    single = [spherical_distortion(xn, spherical_kmeans(xn, 32, seed, restarts=1).centroids) / best
              for seed in range(9)]
    assert float(np.median(single)) > float(np.median(ratios))
