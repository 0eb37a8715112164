"""A K-token memory for one window of media time, built from the stream's segments (``segments.py``).

Every segment is a small Token Dynamics state of its own span (at most K clusters, key map, timestamps).
A window takes the segments it overlaps, keeps each one's clusters that hold a frame inside the window, and
folds them together in time order: the running set plus the next segment's clusters are merged back to K,
always the pair whose merge loses the least summed cosine (the streaming compressor's merge cost, on sums of
unit tokens). The window's key map is the segments' key maps (frames inside the window) relabelled through
those merges, and motion features are computed from it. The cost grows with the window's length (its
frames' key map entries, its number of segments), never with the stream's.

Approximation, stated: a segment cluster enters with its whole sum, members outside the window included, so
a window that cuts a segment in two sees that segment's clusters as they were over the whole segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressor.motion import MotionStats
from compressor.snapshot import Snapshot

MOTION_BLOCK_FRAMES = 1024  # motion statistics are accumulated this many frames at a time (bounded memory)


def merge_losses(gram: np.ndarray) -> np.ndarray:
    """Summed cosine lost by merging each pair of clusters, ``|s_i| + |s_j| - |s_i + s_j|``, from the Gram
    matrix ``[n, n]`` of their sums of unit tokens; ``[n, n]`` float64, ``inf`` on the diagonal."""
    sq = np.maximum(np.diag(gram), 0.0)
    size = np.sqrt(sq)
    loss = size[:, None] + size[None, :] - np.sqrt(np.maximum(sq[:, None] + sq[None, :] + 2 * gram, 0.0))
    np.fill_diagonal(loss, np.inf)
    return loss


def merge_to(sums: np.ndarray, k: int) -> np.ndarray:
    """Greedy cheapest-loss merging of ``sums [n, D]`` (float64 sums of unit tokens) down to at most ``k``
    clusters; returns ``group [n]`` int64, the surviving row each row ended in (a survivor maps to itself)."""
    n = sums.shape[0]
    group = np.arange(n)
    if n <= k:
        return group
    gram = sums @ sums.T
    alive = np.ones(n, dtype=bool)
    for _ in range(n - k):
        loss = merge_losses(gram)
        loss[~alive] = np.inf
        loss[:, ~alive] = np.inf
        i, j = divmod(int(np.argmin(loss)), n)
        i, j = min(i, j), max(i, j)  # the earlier row survives (rows come in time order)
        gram[i] += gram[j]
        gram[:, i] += gram[:, j]
        alive[j] = False
        group[group == j] = i
    return group


@dataclass(frozen=True)
class SegmentPart:
    """What a window needs of one segment: its clusters and its key map.

    sums ``[k, D]`` float64 sums of unit member tokens, counts ``[k]`` float64 members, norm_sums ``[k]``
    float64 summed raw norms (the snapshot's canonical order); key_map ``[T, H, W]`` ids in ``[0, k)``;
    timestamps ``[T]`` media seconds of its frames.
    """

    sums: np.ndarray
    counts: np.ndarray
    norm_sums: np.ndarray
    key_map: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class WindowMemory:
    """A window's memory: ``snapshot`` (K tokens, motion, span = the frames it covers), ``key_map [T, H, W]``
    ids into ``snapshot.base`` and ``timestamps [T]`` of those frames, ``segments`` it drew on."""

    snapshot: Snapshot
    key_map: np.ndarray
    timestamps: np.ndarray
    segments: int


def build_window(parts: list[SegmentPart], t_start: float, t_end: float, k: int, version: int = 0) -> WindowMemory:
    """The K-token memory of frames with ``t_start <= t <= t_end`` in ``parts`` (in time order).

    Raises:
        ValueError: no frame of any part lies in the window (the caller knows why: retention, or not yet).
    """
    sums, counts, norm_sums, maps, times = [], [], [], [], []
    group = np.zeros(0, dtype=np.int64)  # running cluster -> surviving running cluster
    offset = 0
    for part in parts:
        inside = (part.timestamps >= t_start) & (part.timestamps <= t_end)
        if not inside.any():
            continue
        local = part.key_map[inside].astype(np.int64)                           # [T_i, H, W]
        used = np.unique(local)
        relabel = np.full(part.sums.shape[0], -1, dtype=np.int64)
        relabel[used] = offset + np.arange(used.size)
        sums.append(part.sums[used])
        counts.append(part.counts[used])
        norm_sums.append(part.norm_sums[used])
        maps.append(relabel[local])
        times.append(part.timestamps[inside])
        offset += used.size
        # fold: merge the running survivors plus this segment's clusters back to k
        group = np.concatenate([group, np.arange(offset - used.size, offset)])
        survivors = np.flatnonzero(group == np.arange(offset))
        merged = merge_to(_group_sums(sums, group)[survivors], k)               # index into survivors
        group = survivors[merged][np.searchsorted(survivors, group)]
    if not maps:
        raise ValueError(f"window [{t_start}, {t_end}]: expected frames inside it, got none")
    all_sums, all_counts, all_norms = _group_sums(sums, group), np.concatenate(counts), np.concatenate(norm_sums)
    survivors = np.flatnonzero(group == np.arange(offset))
    key_map = group[np.concatenate(maps)]                                       # [T, H, W] survivor rows
    timestamps = np.concatenate(times)
    # canonical order: by first appearance in the window's key map
    t, h, w = key_map.shape
    first = np.full(offset, key_map.size, dtype=np.int64)
    np.minimum.at(first, key_map.ravel(), np.arange(key_map.size))
    order = survivors[np.argsort(first[survivors], kind="stable")]
    rank = np.full(offset, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    key_map = rank[key_map]
    weight = np.bincount(group, weights=all_counts, minlength=offset)[order]
    norm = np.bincount(group, weights=all_norms, minlength=offset)[order]
    direction = all_sums[order] / np.maximum(np.linalg.norm(all_sums[order], axis=1, keepdims=True), 1e-12)
    base = (direction * (norm / np.maximum(weight, 1e-12))[:, None]).astype(np.float32)
    motion = _motion(key_map, timestamps, order.size)
    snapshot = Snapshot(version, "token_dynamics", base, motion, np.zeros((0, base.shape[1]), np.float32),
                        float(timestamps.min()), float(timestamps.max()), t, t * h * w)
    return WindowMemory(snapshot, key_map.astype(np.uint16 if order.size > 255 else np.uint8), timestamps,
                        len(maps))


def _group_sums(sums: list[np.ndarray], group: np.ndarray) -> np.ndarray:
    """``[n, D]``: row r holds the sum of every row that ``group`` sends to r (zero for merged-away rows)."""
    rows = np.concatenate(sums)
    out = np.zeros_like(rows)
    np.add.at(out, group, rows)
    return out


def _motion(key_map: np.ndarray, timestamps: np.ndarray, k: int) -> np.ndarray:
    """``[k, F]`` motion features of the window's key map ``[T, H, W]`` (``MotionStats``, block by block)."""
    t, h, w = key_map.shape
    stats = MotionStats(k, (h, w))
    for start in range(0, t, MOTION_BLOCK_FRAMES):
        part = key_map[start:start + MOTION_BLOCK_FRAMES]
        times = timestamps[start:start + MOTION_BLOCK_FRAMES]
        stats.update(part.reshape(part.shape[0], h * w).astype(np.int64), times, start)
    return stats.features(np.arange(k), t, float(timestamps.min()), float(timestamps.max()))
