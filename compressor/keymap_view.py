"""What a viewer needs to draw one frame's key map: which base token sits at each grid cell, and when each
base token was first and last seen. Read from a streaming Token Dynamics state (the baselines keep no key map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.streaming import StreamingTokenDynamics


@dataclass(frozen=True)
class KeyMapView:
    """The key map of the newest frame of a stream's memory.

    version: snapshot version it belongs to. t: media time (s) of that frame.
    ids: ``[H, W]`` int64 base-token id per grid cell (canonical order, the snapshot's base rows).
    first_seen, last_seen: ``[K]`` float64 media seconds each base token was first / last seen.
    t_start, t_end: media span the memory covers (seconds).
    """

    version: int
    t: float
    ids: np.ndarray
    first_seen: np.ndarray
    last_seen: np.ndarray
    t_start: float
    t_end: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ids as nested lists, one {"id", "first_seen", "last_seen"} per base token."""
        tokens = [{"id": i, "first_seen": float(f), "last_seen": float(last)}
                  for i, (f, last) in enumerate(zip(self.first_seen.tolist(), self.last_seen.tolist()))]
        return {"version": self.version, "t": self.t, "grid": list(self.ids.shape), "ids": self.ids.tolist(),
                "tokens": tokens, "t_start": self.t_start, "t_end": self.t_end}


def latest_key_map(compressor: Any, t: float) -> KeyMapView | None:
    """The key map view of ``compressor``'s newest frame (media time ``t``), or None when the method keeps no
    key map or has seen no frame yet. The caller holds whatever lock guards ``compressor`` against updates."""
    if not isinstance(compressor, StreamingTokenDynamics) or not compressor.frames_seen:
        return None
    n = compressor.frames_seen
    ids = compressor.key_map(n - 1, n)[0].astype(np.int64)  # [H, W]
    order = compressor.canonical_slots()                     # [K] slot of each base token
    times = compressor.motion.arrays
    return KeyMapView(compressor.version, float(t), ids, times["first_t"][order].astype(np.float64),
                      times["last_t"][order].astype(np.float64), float(compressor.t_start), float(compressor.t_end))
