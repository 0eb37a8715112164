"""Motion features per cluster, from the key map, kept up to date incrementally.

Every statistic is a per-cluster sum (or min/max) so that a chunk adds to it in O(chunk) and a merge of two
clusters combines them in O(1). Features depend only on where and when a cluster's tokens sit, never on the
cluster's id, so relabelling the clusters only permutes the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.serial import pack_array, unpack_array

MOTION_FEATURES = (
    "coverage",      # mean fraction of the frame the cluster covers, over frames where it is present
    "presence",      # fraction of the frames seen in which it is present
    "share",         # fraction of all tokens assigned to it
    "row", "col",    # mean grid position, (index + 0.5) / size, in [0, 1]
    "row_std", "col_std",  # spatial spread
    "vel_row", "vel_col",  # mean displacement of its mean position per frame between appearances
    "speed",         # mean length of that displacement
    "first_seen", "last_seen",  # relative to the stream's media-time span, in [0, 1]
    "duration",      # last_seen - first_seen
    "extent_row", "extent_col",  # spatial spread inside one frame (a size/shape cue), averaged over frames
    "present_now",   # 1 if present in the latest frame, else 0
    "coverage_now",  # fraction of the latest frame it covers
    "row_now", "col_now",  # mean grid position in the latest frame it was present in, in [0, 1]
    "vel_row_now", "vel_col_now",  # recent velocity, grid units per media second (EMA, VELOCITY_HALF_LIFE_S)
    "first_seen_s", "last_seen_s",  # media seconds since the stream's first frame
    "age_s",         # media seconds since it was last seen
    "span_s",        # media seconds the stream covers (the same on every row: "now" for time questions)
)
#: How each feature is scaled: "fraction" (about 0..1), "rate" (grid units per frame or per second, about
#: -1..1) or "seconds" (media seconds, unbounded). Encoders of these features pick their frequencies by unit.
MOTION_UNITS = dict.fromkeys(MOTION_FEATURES, "fraction") | dict.fromkeys(
    ("vel_row", "vel_col", "speed", "vel_row_now", "vel_col_now"), "rate") | dict.fromkeys(
    ("first_seen_s", "last_seen_s", "age_s", "span_s"), "seconds")
#: Half-life of the recent-velocity average, in media seconds: short enough that an object that stops reads
#: as still within about a second, long enough to smooth one noisy frame.
VELOCITY_HALF_LIFE_S = 0.5
_SUMS = ("tokens", "frames", "row_sum", "col_sum", "row_sq", "col_sq", "vel_row", "vel_col", "speed", "steps",
         "row_ssd", "col_ssd")


class MotionStats:
    """Running motion statistics for ``slots`` clusters on an ``(H, W)`` grid.

    Note: ``frames`` (frames in which a cluster is present) of a merged cluster is the larger of the two,
    a lower bound of the true union, because which frames both were present in is not kept.
    """

    def __init__(self, slots: int, grid: tuple[int, int]) -> None:
        self.slots, self.grid = int(slots), (int(grid[0]), int(grid[1]))
        self.arrays: dict[str, np.ndarray] = {name: np.zeros(self.slots) for name in _SUMS}
        self.arrays.update(first_t=np.full(self.slots, np.inf), last_t=np.full(self.slots, -np.inf),
                           last_row=np.zeros(self.slots), last_col=np.zeros(self.slots),
                           last_frame=np.full(self.slots, -1.0), last_count=np.zeros(self.slots),
                           ema_row=np.zeros(self.slots), ema_col=np.zeros(self.slots))
        h, w = self.grid
        rows, cols = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        self._rows, self._cols = rows.ravel(), cols.ravel()  # [H*W]

    def reset(self, slots: int | np.ndarray) -> None:
        """Forget ``slots`` (one slot or an int array ``[m]`` of them): new clusters start there."""
        for name, array in self.arrays.items():
            array[slots] = {"first_t": np.inf, "last_t": -np.inf, "last_frame": -1.0}.get(name, 0.0)

    def update(self, slots: np.ndarray, timestamps: np.ndarray, first_frame: int) -> None:
        """Add a chunk: ``slots [T_c, H*W]`` int64 cluster of every token, ``timestamps [T_c]`` media seconds,
        ``first_frame`` the stream index of the chunk's first frame. Vectorised over frames and clusters."""
        t_c, s, a = slots.shape[0], self.slots, self.arrays
        flat = (slots + np.arange(t_c)[:, None] * s).ravel()               # [T_c*HW] frame-major bins
        rows, cols = np.tile(self._rows, t_c), np.tile(self._cols, t_c)
        count = np.bincount(flat, minlength=t_c * s).reshape(t_c, s)        # [T_c, S]
        rsum = np.bincount(flat, rows, minlength=t_c * s).reshape(t_c, s)
        csum = np.bincount(flat, cols, minlength=t_c * s).reshape(t_c, s)
        present = count > 0
        a["tokens"] += count.sum(0)
        a["frames"] += present.sum(0)
        a["row_sum"] += rsum.sum(0)
        a["col_sum"] += csum.sum(0)
        rsq = np.bincount(flat, rows * rows, minlength=t_c * s).reshape(t_c, s)
        csq = np.bincount(flat, cols * cols, minlength=t_c * s).reshape(t_c, s)
        a["row_sq"] += rsq.sum(0)
        a["col_sq"] += csq.sum(0)
        # Within-frame sums of squared deviations: the cluster's extent in each frame, free of its motion.
        safe = np.maximum(count, 1)
        a["row_ssd"] += np.maximum(rsq - rsum * rsum / safe, 0.0).sum(0)
        a["col_ssd"] += np.maximum(csq - csum * csum / safe, 0.0).sum(0)
        row_mean, col_mean = rsum / safe, csum / safe                      # [T_c, S] mean position per frame
        self._update_recent(present, row_mean, col_mean, timestamps)
        # Row 0 of the extended [T_c + 1, S] arrays is the state before the chunk; for every frame, find the
        # cluster's previous appearance (forward fill of the latest row where it was present).
        frame = first_frame + np.arange(t_c, dtype=np.float64)
        ext = np.empty((4, t_c + 1, s))                                    # present, row, col, frame
        ext[:, 0] = a["last_frame"] >= 0, a["last_row"], a["last_col"], a["last_frame"]
        ext[0, 1:], ext[1, 1:], ext[2, 1:], ext[3, 1:] = present, row_mean, col_mean, frame[:, None]
        latest = np.maximum.accumulate(np.where(ext[0] > 0, np.arange(t_c + 1)[:, None], -1), axis=0)
        prev = np.maximum(latest[:-1], 0)                                  # [T_c, S] row of the previous appearance
        cluster = np.arange(s)
        before = ext[1:, prev, cluster]                                    # [3, T_c, S] row, col, frame there
        moved = present & (latest[:-1] >= 0)
        gap = np.maximum(frame[:, None] - before[2], 1.0)
        d_row = np.where(moved, (ext[1, 1:] - before[0]) / gap, 0.0)
        d_col = np.where(moved, (ext[2, 1:] - before[1]) / gap, 0.0)
        a["vel_row"] += d_row.sum(0)
        a["vel_col"] += d_col.sum(0)
        a["speed"] += np.hypot(d_row, d_col).sum(0)
        a["steps"] += moved.sum(0)
        last = ext[1:, np.maximum(latest[-1], 0), cluster]                 # row 0 (old value) if never present
        a["last_row"], a["last_col"], a["last_frame"] = last[0].copy(), last[1].copy(), last[2].copy()
        seen = latest[-1] > 0                                              # present somewhere in this chunk
        a["last_count"] = np.where(seen, count[np.maximum(latest[-1] - 1, 0), cluster], a["last_count"])
        ts = timestamps[:, None]
        a["first_t"] = np.minimum(a["first_t"], np.where(present, ts, np.inf).min(0))
        a["last_t"] = np.maximum(a["last_t"], np.where(present, ts, -np.inf).max(0))

    def _update_recent(self, present: np.ndarray, row: np.ndarray, col: np.ndarray, timestamps: np.ndarray) -> None:
        """Recent velocity (EMA in grid units per media second) frame by frame: ``present [T_c, S]`` bool,
        ``row``/``col [T_c, S]`` mean positions, ``timestamps [T_c]``. Runs before ``last_*`` move on, so
        they still hold each cluster's previous appearance. A cluster present without moving decays to 0."""
        a = self.arrays
        prev_row, prev_col, prev_t = a["last_row"].copy(), a["last_col"].copy(), a["last_t"].copy()
        for f in range(present.shape[0]):
            here, t = present[f], float(timestamps[f])
            moved = here & np.isfinite(prev_t) & (t > prev_t)
            dt = np.where(moved, t - prev_t, 1.0)
            keep = np.where(moved, 0.5 ** (dt / VELOCITY_HALF_LIFE_S), 1.0)
            a["ema_row"] = np.where(moved, keep * a["ema_row"] + (1 - keep) * (row[f] - prev_row) / dt, a["ema_row"])
            a["ema_col"] = np.where(moved, keep * a["ema_col"] + (1 - keep) * (col[f] - prev_col) / dt, a["ema_col"])
            prev_row, prev_col = np.where(here, row[f], prev_row), np.where(here, col[f], prev_col)
            prev_t = np.where(here, t, prev_t)

    def merge(self, src: int, dst: int) -> None:
        """Cluster ``src`` joins ``dst``; ``src`` is reset."""
        a = self.arrays
        for name in _SUMS:
            if name != "frames":
                a[name][dst] += a[name][src]
        a["frames"][dst] = max(a["frames"][dst], a["frames"][src])  # see class note
        a["first_t"][dst] = min(a["first_t"][dst], a["first_t"][src])
        a["last_t"][dst] = max(a["last_t"][dst], a["last_t"][src])
        recent = ("last_row", "last_col", "ema_row", "ema_col")
        if a["last_frame"][src] == a["last_frame"][dst] >= 0:  # both in the same latest frame: weigh by tokens
            n_src, n_dst = a["last_count"][src], a["last_count"][dst]
            total = max(n_src + n_dst, 1.0)
            for name in recent:
                a[name][dst] = (a[name][src] * n_src + a[name][dst] * n_dst) / total
            a["last_count"][dst] = n_src + n_dst
        elif a["last_frame"][src] > a["last_frame"][dst]:
            for name in (*recent, "last_frame", "last_count"):
                a[name][dst] = a[name][src]
        self.reset(src)

    def features(self, order: np.ndarray, frames_seen: int, t_start: float, t_end: float) -> np.ndarray:
        """``[K, F]`` float32 features (columns ``MOTION_FEATURES``) of clusters ``order [K]``, in that order."""
        a = {name: array[order] for name, array in self.arrays.items()}
        n = np.maximum(a["tokens"], 1.0)
        steps = np.maximum(a["steps"], 1.0)
        row, col = a["row_sum"] / n, a["col_sum"] / n
        span = max(t_end - t_start, 1e-9)
        first = np.clip((a["first_t"] - t_start) / span, 0.0, 1.0)
        last = np.clip((a["last_t"] - t_start) / span, 0.0, 1.0)
        total = max(float(self.arrays["tokens"].sum()), 1.0)
        cells = self.grid[0] * self.grid[1]
        now = a["last_frame"] == frames_seen - 1                           # present in the latest frame
        first_s = np.where(np.isfinite(a["first_t"]), a["first_t"] - t_start, 0.0)
        last_s = np.where(np.isfinite(a["last_t"]), a["last_t"] - t_start, 0.0)
        columns = [
            a["tokens"] / (np.maximum(a["frames"], 1.0) * self.grid[0] * self.grid[1]),
            a["frames"] / max(frames_seen, 1),
            a["tokens"] / total,
            row, col,
            np.sqrt(np.maximum(a["row_sq"] / n - row * row, 0.0)),
            np.sqrt(np.maximum(a["col_sq"] / n - col * col, 0.0)),
            a["vel_row"] / steps, a["vel_col"] / steps, a["speed"] / steps,
            first, last, last - first,
            np.sqrt(a["row_ssd"] / n), np.sqrt(a["col_ssd"] / n),
            now.astype(np.float64), np.where(now, a["last_count"] / cells, 0.0),
            a["last_row"], a["last_col"], a["ema_row"], a["ema_col"],
            first_s, last_s, np.maximum(t_end - t_start - last_s, 0.0), np.full(len(order), t_end - t_start),
        ]
        return np.stack(columns, axis=1).astype(np.float32).reshape(len(order), len(MOTION_FEATURES))

    def to_state(self) -> dict[str, Any]:
        """msgpack-able dict."""
        return {"slots": self.slots, "grid": list(self.grid),
                "arrays": {name: pack_array(array) for name, array in self.arrays.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MotionStats:
        """Inverse of ``to_state``."""
        stats = cls(state["slots"], tuple(state["grid"]))
        stats.arrays = {name: unpack_array(packed).copy() for name, packed in state["arrays"].items()}
        return stats


def motion_features(key_map: np.ndarray, k: int, timestamps: np.ndarray | None = None) -> np.ndarray:
    """Motion features ``[K, F]`` of an offline key map ``[T, H, W]`` with ids in ``[0, k)``.

    ``timestamps [T]`` default to frame indices.
    """
    t, h, w = key_map.shape
    ts = np.arange(t, dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    stats = MotionStats(k, (h, w))
    stats.update(key_map.reshape(t, h * w).astype(np.int64), ts, 0)
    return stats.features(np.arange(k), t, float(ts.min()), float(ts.max()))
