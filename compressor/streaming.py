"""Streaming Token Dynamics: a token base of at most K clusters, updated per chunk at O(chunk) cost.

State (all preallocated for ``S = K_max + max_new_clusters`` slots on the first chunk):
    on the tokens' device: sums ``[S, D]`` float32 sum of the unit member tokens, centroids ``[S, D]`` their
    unit direction; on the CPU (numpy, small): counts ``[S]`` float64 (decayed) member weight, norm_sums ``[S]``
    float64 (decayed) sum of raw member norms (to hand the LLM tokens at the input scale), first ``[S]`` int64
    stream index of each cluster's first token (canonical order), active ``[S]`` bool; a ``KeyMapStore``
    (append-only, merge-safe) and ``MotionStats``. Restoring checks all of it (``_load``).

First chunk: the offline method (``fit_tokens``) with the same seed, so streaming over one chunk equals
offline Token Dynamics on it. Later chunks:
    0. recency: with ``half_life_s > 0`` the sums, counts and norm sums of every cluster are first multiplied
       by ``0.5 ** (dt / half_life_s)`` (``dt``: media seconds since the newest frame already seen; O(K * D)).
       Centroid directions do not change, but a cluster nobody has joined for a while weighs little: merging
       it away costs little fidelity, so new content always claims a cluster of its own (step 2's test), and a
       cluster that new tokens join follows them (its centroid is mostly the new members). A weight never
       drops below ``WEIGHT_FLOOR`` (so directions survive float32 underflow after days of silence). Every
       comparison between clusters of different ages (steps 2 and 4) uses *projected* weights: a cluster born
       ``a`` seconds ago weighs ``1 - exp(-a / tau)`` (``tau = half_life_s / ln 2``) of what it will weigh once
       its content has been around for long, so its sums are scaled by the inverse (``_projection``). Without
       this a cluster seeded from one chunk could never outweigh clusters holding minutes of (decayed) history,
       and new content would be forced into old clusters for good;
    1. assign every token to the nearest active centroid by cosine (one ``[N, D] x [D, K]`` matmul on the raw
       tokens, divided by their norms: the unit tokens are never materialised);
    2. tokens whose best cosine is below ``novelty_threshold`` seed up to ``max_new_clusters`` new clusters by
       greedy k-means++ continued from the current centroids; tokens closer to a new seed move to it. A new
       cluster is kept only if it wins more summed cosine than the cheapest merge would lose (at the budget,
       every new cluster forces a merge), so the state does not churn;
    3. add the chunk to sums/counts (``index_add_`` of the unit tokens on CPU, a one-hot matmul on GPU), write
       the key map and motion statistics;
    4. merge down to K_max, always the pair whose merge loses the least reconstruction fidelity:
       ``|s_a| + |s_b| - |s_a + s_b|`` (the drop in summed cosine of the members to their centroid; a
       Ward-like cost computed on the small ``[K, K]`` Gram matrix of the sums). Adaptive mode further merges
       pairs whose centroid cosine exceeds ``merge_similarity`` while K > K_min.
Nothing in an update touches earlier chunks, so its cost does not grow with the stream's length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from compressor import state_check as check
from compressor.config import CompressorConfig
from compressor.keymap import KeyMapStore
from compressor.kmeans import group_sums, kmeans_pp, normalize_rows
from compressor.motion import MOTION_FEATURES, MotionStats
from compressor.offline import fit_tokens, smallest_uint_dtype
from compressor.serial import pack_array
from compressor.stream_base import StreamCompressorBase
from compressor.window import merge_losses


# Smallest weight a cluster decays to (about 40 half-lives): its sums stay normal float32 numbers, so the
# centroid keeps its direction, while its merge cost is negligible next to any live cluster.
WEIGHT_FLOOR = 1e-12


def chunk_seed(seed: int, chunk: int) -> int:
    """Seed of the generator used for chunk number ``chunk``: restoring mid-stream needs no RNG state."""
    return (seed * 0x9E3779B1 + chunk * 0x85EBCA6B) % (2**63)


class StreamingTokenDynamics(StreamCompressorBase):
    """Streaming Token Dynamics for one stream (see the module docstring for the algorithm).

    Args:
        config: budget, adaptive range, thresholds, seed (method must be "token_dynamics").
        device: where the centroid state lives; default the device of the first chunk.
    """

    method = "token_dynamics"

    def __init__(self, config: CompressorConfig | None = None, device: str | torch.device | None = None) -> None:
        super().__init__(config)
        self.k_min, self.k_max = self.config.k_range
        self.slots = self.k_max + self.config.max_new_clusters
        self.device = torch.device(device) if device is not None else None
        self.chunks = 0
        self.new_clusters = 0  # clusters seeded after the first chunk (telemetry)
        self.merges = 0
        self._active_idx: torch.Tensor | None = None
        self._merge_loss: float | None = None
        self._now = 0.0      # newest media time of the chunk being added
        self._chunk_s = 1.0  # media seconds that chunk adds (ages are at least this)

    # ---- update ---------------------------------------------------------------------------------------
    def _update(self, x: torch.Tensor, norms: torch.Tensor, timestamps: np.ndarray) -> None:
        t, h, w, d = x.shape
        if self.device is None:
            self.device = x.device
        flat = x.reshape(t * h * w, d).to(self.device)  # [N, D]
        norms = norms.to(self.device)
        self._now = float(timestamps.max())
        if self.chunks == 0:
            self._allocate((h, w), d)
            slots = self._first_chunk(flat, norms)
        else:
            self._chunk_s = max(self._now - self.t_end, 1e-6)  # media time this chunk adds
            self._decay(self._chunk_s)
            slots = self._next_chunk(flat, norms)
        self.keymap.append(slots.reshape(t, h, w).astype(self.keymap.dtype))
        if self.config.keymap_frames:  # a camera that runs for days: older frames are in the segments
            self.keymap.forget_before(self.keymap.frames - self.config.keymap_frames)
        self.motion.update(slots.reshape(t, h * w), timestamps, self.frames_seen)
        self._merge_down()
        self.chunks += 1

    def _allocate(self, grid: tuple[int, int], d: int) -> None:
        s = self.slots
        self.sums = torch.zeros(s, d, dtype=torch.float32, device=self.device)
        self.centroids = torch.zeros(s, d, dtype=torch.float32, device=self.device)
        self.counts = np.zeros(s, dtype=np.float64)
        self.norm_sums = np.zeros(s, dtype=np.float64)
        self.first = np.zeros(s, dtype=np.int64)
        self.born = np.zeros(s, dtype=np.float64)
        self.active = np.zeros(s, dtype=bool)
        self.keymap = KeyMapStore(grid, s)
        self.motion = MotionStats(s, grid)

    def _first_chunk(self, flat: torch.Tensor, norms: torch.Tensor) -> np.ndarray:
        c = self.config
        # merge_cost: one fit at K_max, then _merge_down merges the similar clusters (as on every later chunk)
        rule = c.adaptive_rule if c.adaptive and self.k_min < self.k_max and c.adaptive_rule != "merge_cost" else None
        fit = fit_tokens(flat, norms, self.k_max, seed=c.seed, tol=c.kmeans_tol, max_iter=c.kmeans_max_iter,
                         adaptive_rule=rule, k_min=self.k_min, sample=c.silhouette_sample, restarts=c.kmeans_restarts)
        k = fit.centroids.shape[0]
        self.sums[:k], self.centroids[:k] = fit.sums, fit.centroids
        self.counts[:k], self.norm_sums[:k] = fit.counts.cpu().numpy(), fit.norm_sums.cpu().numpy()
        self.first[:k] = fit.first.cpu().numpy()
        self.born[:k] = self._now
        self.active[:k] = True
        self._active_idx = None
        for slot in range(k):
            self.keymap.new_label(slot)
        return fit.labels.cpu().numpy()

    def _decay(self, dt: float) -> None:
        """Weigh everything seen so far by ``0.5 ** (dt / half_life_s)`` (step 0 of the module docstring)."""
        if not self.config.half_life_s or dt <= 0:
            return
        factor = 0.5 ** (dt / self.config.half_life_s)
        kept = np.maximum(self.counts * factor, WEIGHT_FLOOR)
        ratio = np.where(self.active, kept / np.maximum(self.counts, WEIGHT_FLOOR), 1.0)  # [S]
        self.counts *= ratio
        self.norm_sums *= ratio
        self.sums.mul_(torch.from_numpy(ratio).to(self.sums)[:, None])
        self._merge_loss = None

    def _projection(self, slots: np.ndarray | None = None) -> np.ndarray:
        """Factor ``[k]`` from each cluster's decayed weight to its long-run weight (module docstring, step 0):
        ``1 / (1 - exp(-age / tau))``, age at least one chunk; ``slots`` None: a cluster born in this chunk.
        All ones without decay."""
        if not self.config.half_life_s:
            return np.ones(1 if slots is None else slots.shape[0])
        tau = self.config.half_life_s / math.log(2.0)
        age = np.full(1, self._chunk_s) if slots is None else np.maximum(self._now - self.born[slots], self._chunk_s)
        return 1.0 / -np.expm1(-age / tau)

    def _projected_gram(self) -> np.ndarray:
        """``[K, K]`` float64 Gram matrix of the active clusters' projected sums."""
        sums = self.sums.index_select(0, self._active())
        p = self._projection(np.flatnonzero(self.active))
        # float32 products (a float64 copy of the sums cost as much as the assignment matmul), float64 after
        return (sums @ sums.T).cpu().numpy().astype(np.float64) * p[:, None] * p[None, :]

    def _active(self) -> torch.Tensor:
        """Active slot indices ``[K]`` on the state's device (cached until the set changes)."""
        if self._active_idx is None:
            self._active_idx = torch.from_numpy(np.flatnonzero(self.active)).to(self.device)
        return self._active_idx

    def _next_chunk(self, flat: torch.Tensor, norms: torch.Tensor) -> np.ndarray:
        c = self.config
        act = self._active()                                                 # [K]
        inv = 1.0 / norms.clamp_min(1e-12)                                    # [N]
        xf = flat if flat.dtype == torch.float32 else flat.float()
        # Row gathers by index_select: the same rows as x[idx], about 5x faster on CPU (500 rows of D=896).
        raw, arg = (xf @ self.centroids.index_select(0, act).T).max(dim=1)  # [N]: argmax of cosine = of raw
        best = raw * inv                                                      # best cosine
        slots = act[arg]
        novel = torch.nonzero(best < c.novelty_threshold).flatten()
        self._merge_loss = None
        if c.max_new_clusters and novel.numel():
            novel_best = best[novel]                                          # [M]
            if self._may_gain(novel_best):
                slots = self._seed_new(xf, inv, novel_best, slots, novel)
        group_sums(xf, slots, self.slots, inv, into=self.sums)
        # All S rows in place (free slots' rows are never read): no gather/scatter, no allocation.
        torch.nn.functional.normalize(self.sums, dim=1, eps=1e-12, out=self.centroids)
        slots_np = slots.cpu().numpy()
        self.counts += np.bincount(slots_np, minlength=self.slots)
        self.norm_sums += np.bincount(slots_np, weights=norms.cpu().numpy(), minlength=self.slots)
        return slots_np

    def _may_gain(self, novel_best: torch.Tensor) -> bool:
        """Cheap test before seeding: even perfect new centroids could win at most ``sum(1 - best)`` of summed
        cosine; with no room below K_max that must beat the cheapest merge, or seeding cannot pay off."""
        if int(self.active.sum()) < self.k_max:
            return True
        return float((1.0 - novel_best).sum()) * float(self._projection()[0]) > self._cheapest_merge_loss()

    def _seed_new(self, xf: torch.Tensor, inv: torch.Tensor, novel_best: torch.Tensor, slots: torch.Tensor,
                  novel: torch.Tensor) -> torch.Tensor:
        """Seed new clusters among the ``novel [M]`` token indices (best cosine ``novel_best [M]``) by k-means++
        continued from the current centroids (their D^2 is already known from the assignment); novel tokens
        closer to a new seed move to it. Returns the chunk's slots ``[N]``."""
        free = np.flatnonzero(~self.active)[: self.config.max_new_clusters]
        everything = novel.numel() == xf.shape[0]
        xs = xf if everything else xf.index_select(0, novel)                    # [M, D] raw novel tokens
        scale = inv if everything else inv.index_select(0, novel)
        generator = torch.Generator().manual_seed(chunk_seed(self.config.seed, self.chunks))
        seeds = kmeans_pp(xs, len(free), generator, scale=scale, d2=novel_best.mul(-2.0).add_(2.0).clamp_min_(0.0))
        if seeds.shape[0] == 0:
            return slots
        best_new, arg_new = (xs @ seeds.T).mul_(scale[:, None]).max(dim=1)         # [M]
        # Summed cosine each seed wins, added up on the CPU in a fixed order ([M] values; GPU atomics would
        # make the acceptance test, hence the whole state, depend on scheduling).
        won = (best_new - novel_best).clamp_min_(0.0).double().cpu().numpy()
        gain = np.bincount(arg_new.cpu().numpy(), weights=won, minlength=seeds.shape[0])
        accepted = self._worth_adding(gain)
        if not accepted.any():
            return slots
        taken = free[: int(accepted.sum())]                                     # [m] slots of the accepted seeds
        seed_slot = np.full(seeds.shape[0], -1, dtype=np.int64)                 # [m'] slot of each seed, -1: rejected
        seed_slot[accepted] = taken
        target = torch.from_numpy(seed_slot).to(self.device)[arg_new]
        slots = slots.clone()
        slots[novel] = torch.where((best_new > novel_best) & (target >= 0), target, slots[novel])
        hits = slots.cpu().numpy()[None, :] == taken[:, None]                  # [m, N]
        won_any = hits.any(axis=1)                                               # a seed that won no token stays free
        born = taken[won_any]                                                    # [b] ascending
        if born.size:
            self.active[born] = True
            self.sums[torch.from_numpy(born).to(self.device)] = 0.0
            self.counts[born], self.norm_sums[born] = 0.0, 0.0
            self.first[born] = self.tokens_seen + hits[won_any].argmax(axis=1)  # its first token in the chunk
            self.born[born] = self._now
            for slot in born:
                self.keymap.new_label(int(slot))
            self.motion.reset(born)
            self.new_clusters += int(born.size)
        self._active_idx = None
        return slots

    def _worth_adding(self, gain: np.ndarray) -> np.ndarray:
        """Which candidate clusters to add, given the summed cosine ``gain [m]`` each wins in this chunk.

        While there is room below K_max a candidate only has to win something; beyond that, adding it forces a
        merge, so it must win more than the cheapest merge loses (otherwise it would be seeded and merged back
        at once: churn that costs time and no fidelity). Greedy, best candidates first.
        """
        room = self.k_max - int(self.active.sum())
        order = np.argsort(-gain, kind="stable")
        accepted = np.zeros(gain.shape[0], dtype=bool)
        accepted[order[: max(room, 0)]] = True
        accepted &= gain > 0
        if room < gain.shape[0]:
            projected = gain[order[max(room, 0):]] * float(self._projection()[0])
            accepted[order[max(room, 0):]] = projected > self._cheapest_merge_loss()
        return accepted

    def _cheapest_merge_loss(self) -> float:
        """Summed cosine lost by the cheapest merge of two active clusters (cached per chunk)."""
        if self._merge_loss is None:
            loss = merge_losses(self._projected_gram())  # [K, K]
            self._merge_loss = float(loss.min()) if loss.size > 1 else float("inf")
        return self._merge_loss

    def _merge_down(self) -> None:
        """Merge clusters until K <= K_max (cheapest fidelity loss first), then, adaptive only, merge pairs
        more similar than ``merge_similarity`` while K > K_min. The ``[K, K]`` Gram matrix of the sums is built
        once and updated per merge in O(K) (``s_a + s_b`` has Gram row ``G_a + G_b``); the loop runs in numpy
        because the matrices are tiny."""
        act = np.flatnonzero(self.active)
        if act.size <= self.k_min or (act.size <= self.k_max and not self.config.adaptive):
            return
        gram = self._projected_gram()                                          # [K, K] float64
        alive = np.ones(act.size, dtype=bool)
        survivors = []
        k = act.size                                                           # clusters still alive
        while k > self.k_min:
            if k > self.k_max:  # minus the summed cosine (fidelity) lost by merging i and j
                score = -merge_losses(gram)
            elif self.config.adaptive:  # centroid cosine
                size = np.sqrt(np.maximum(np.diag(gram), 0.0))                 # |s_i|
                score = gram / np.maximum(size[:, None] * size[None, :], 1e-12)
                np.fill_diagonal(score, -np.inf)  # (merge_losses already has inf there)
            else:
                break
            dead = ~alive
            score[dead] = -np.inf
            score[:, dead] = -np.inf
            i, j = divmod(int(np.argmax(score)), act.size)
            if k <= self.k_max and score[i, j] <= self.config.merge_similarity:
                break
            dst = self._merge(int(act[i]), int(act[j]))
            survivors.append(dst)
            keep, drop = (i, j) if dst == act[i] else (j, i)
            gram[keep] += gram[drop]
            gram[:, keep] += gram[:, drop]
            alive[drop] = False
            k -= 1
        if survivors:  # one batched renormalisation of the merged rows instead of one per merge
            rows = torch.from_numpy(np.unique(survivors)).to(self.device)
            self.centroids[rows] = normalize_rows(self.sums.index_select(0, rows))

    def _merge(self, a: int, b: int) -> int:
        """Merge slots ``a`` and ``b``; the one that appeared first survives (canonical order is stable) and
        is returned."""
        dst, src = (a, b) if self.first[a] <= self.first[b] else (b, a)
        self.sums[dst] += self.sums[src]  # its centroid is renormalised by the caller (_merge_down), once
        self.counts[dst] += self.counts[src]
        self.norm_sums[dst] += self.norm_sums[src]
        self.first[dst] = min(self.first[dst], self.first[src])
        self.born[dst] = min(self.born[dst], self.born[src])
        self.active[src] = False
        self._active_idx = None
        self.keymap.merge(src, dst)
        self.motion.merge(src, dst)
        self.merges += 1
        return dst

    # ---- readers --------------------------------------------------------------------------------------
    def canonical_slots(self) -> np.ndarray:
        """Active slots ordered by first appearance: ``[K]`` int64."""
        act = np.flatnonzero(self.active)
        return act[np.argsort(self.first[act], kind="stable")]

    def key_map(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Key map of frames ``[start, stop)`` as ``[T, H, W]`` ids into the snapshot's base (canonical);
        ``start`` None: the oldest frame still held (``keymap.offset``, see ``keymap_frames``)."""
        order = self.canonical_slots()
        rank = np.zeros(self.slots, dtype=np.int64)
        rank[order] = np.arange(order.shape[0])
        return rank[self.keymap.resolve(start, stop)].astype(smallest_uint_dtype(max(order.shape[0], 1)))

    def reconstruct(self, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Token hash function over the stream so far: ``[T, H, W, D]`` at the input scale."""
        base = torch.from_numpy(self.snapshot().base.copy())  # the snapshot array is read-only
        return base[torch.from_numpy(self.key_map(start, stop).astype(np.int64))]

    def state_nbytes(self) -> int:
        """Bytes of the live state (centroid buffers, key map, motion statistics)."""
        if not self.chunks:
            return 0
        small = sum(getattr(self, name).nbytes for name in self._ARRAYS)
        return 2 * self.sums.numel() * 4 + small + self.keymap.nbytes() + \
            sum(a.nbytes for a in self.motion.arrays.values())

    def _base_and_motion(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.chunks:
            return np.zeros((0, self.dim or 0), np.float32), np.zeros((0, len(MOTION_FEATURES)), np.float32)
        order = self.canonical_slots()
        scale = (self.norm_sums[order] / np.maximum(self.counts[order], WEIGHT_FLOOR)).astype(np.float32)
        base = self.centroids[torch.from_numpy(order).to(self.device)].cpu().numpy() * scale[:, None]
        motion = self.motion.features(order, self.frames_seen, self.t_start, self.t_end)
        return base, motion

    # ---- serialisation --------------------------------------------------------------------------------
    _ARRAYS = ("counts", "norm_sums", "first", "born", "active")

    def _state(self) -> dict[str, Any]:
        arrays = {name: pack_array(getattr(self, name)) for name in self._ARRAYS}
        arrays.update(sums=pack_array(self.sums.cpu().numpy()), centroids=pack_array(self.centroids.cpu().numpy()))
        return {"chunks": self.chunks, "new_clusters": self.new_clusters, "merges": self.merges, "arrays": arrays,
                "keymap": self.keymap.to_state(), "motion": self.motion.to_state()}

    def _load(self, state: dict[str, Any], device: str | torch.device | None) -> None:
        """Restore ``_state()`` output, checking every array and id against the config and each other (the
        common part, ``grid``/``dim``/counters, is already loaded and checked)."""
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        check.keys(state, "state", {"chunks", "new_clusters", "merges", "arrays", "keymap", "motion"})
        self.chunks = check.integer(state["chunks"], "chunks", 1, self.frames_seen)
        self.new_clusters = check.integer(state["new_clusters"], "new_clusters")
        self.merges = check.integer(state["merges"], "merges")
        s, d = self.slots, self.dim
        packed = check.keys(state["arrays"], "arrays", {*self._ARRAYS, "sums", "centroids"})
        self.counts = check.array(packed["counts"], "counts", np.float64, (s,), finite=True)
        self.norm_sums = check.array(packed["norm_sums"], "norm_sums", np.float64, (s,), finite=True)
        self.first = check.array(packed["first"], "first", np.int64, (s,))
        self.born = check.array(packed["born"], "born", np.float64, (s,), finite=True)
        self.active = check.array(packed["active"], "active", np.bool_, (s,))
        sums = check.array(packed["sums"], "sums", np.float32, (s, d), finite=True)
        centroids = check.array(packed["centroids"], "centroids", np.float32, (s, d), finite=True)
        check.clusters(self.counts, self.norm_sums, self.first, self.active, sums, centroids, self.k_max,
                       self.tokens_seen)
        self.sums = torch.from_numpy(sums).to(self.device)
        self.centroids = torch.from_numpy(centroids).to(self.device)
        self._active_idx = None
        self.keymap = KeyMapStore.from_state(state["keymap"], (self.grid, s, self.frames_seen), self.active)
        motion = check.keys(state["motion"], "motion", {"slots", "grid", "arrays"})
        check.expect(motion["slots"] == s and motion["grid"] == list(self.grid), "motion", f"slots {s}, grid "
                     f"{list(self.grid)}", (motion["slots"], motion["grid"]))
        self.motion = MotionStats.from_state(motion)
        # The reference layout comes from MotionStats itself, so arrays it gains later are covered too.
        check.same_layout(self.motion.arrays, MotionStats(s, self.grid).arrays, "motion")
