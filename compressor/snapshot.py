"""Immutable, versioned view of a stream's compressed state, handed to readers (the LLM actor)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.errors import InvalidState


def _frozen(array: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Snapshot:
    """What a reader sees at one version. Arrays are read-only copies, so updates never change a snapshot.

    version: increments per update. method: registry name of the compressor.
    base: ``[K, D]`` float32 content tokens, canonical order (first appearance), at the input tokens' norm.
    motion: ``[K, F]`` float32 relabel-invariant motion features (``F = 0`` for baselines).
    recent: ``[R, D]`` float32 pooled tokens of the latest frame (``R`` may be 0).
    t_start, t_end: media-time span covered (seconds). frames_seen, tokens_seen: input counters.
    """

    version: int
    method: str
    base: np.ndarray
    motion: np.ndarray
    recent: np.ndarray
    t_start: float
    t_end: float
    frames_seen: int
    tokens_seen: int

    def __post_init__(self) -> None:
        base, motion, recent = _frozen(self.base), _frozen(self.motion), _frozen(self.recent)
        if base.ndim != 2 or recent.ndim != 2 or motion.ndim != 2:
            raise InvalidState(f"snapshot: expected base [K, D], motion [K, F], recent [R, D], got shapes "
                               f"{base.shape}, {motion.shape}, {recent.shape}")
        if motion.shape[0] != base.shape[0] or (recent.shape[0] and recent.shape[1] != base.shape[1]):
            raise InvalidState(f"snapshot: expected motion rows = K = {base.shape[0]} and recent D = {base.shape[1]}, "
                               f"got {motion.shape[0]} and {recent.shape[1]}")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "motion", motion)
        object.__setattr__(self, "recent", recent)

    @property
    def tokens_held(self) -> int:
        """Visual tokens this snapshot hands to the LLM: K + R."""
        return int(self.base.shape[0] + self.recent.shape[0])

    def to_wire(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: msgpack-able scalars and the three arrays, for ``stream.codec.Message``."""
        meta = {"version": self.version, "method": self.method, "t_start": self.t_start, "t_end": self.t_end,
                "frames_seen": self.frames_seen, "tokens_seen": self.tokens_seen}
        return meta, {"base": self.base, "motion": self.motion, "recent": self.recent}

    @classmethod
    def from_wire(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Snapshot:
        """Inverse of ``to_wire``, for a message that arrived from the network: nothing in it is trusted.

        Raises:
            InvalidState: a key is missing, a scalar has the wrong type or range (version, counters: ints
                >= 0; span: finite seconds), or an array is not finite numbers of the documented shapes.
        """
        missing = [k for k in _WIRE_SCALARS if k not in meta] + [k for k in _WIRE_ARRAYS if k not in arrays]
        if missing:
            raise InvalidState(f"snapshot: expected keys {missing} in the wire message, got none")
        for name in ("version", "frames_seen", "tokens_seen"):
            value = meta[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise InvalidState(f"snapshot: expected {name} an int in [0, 2**63), got {value!r:.40}")
        for name in ("t_start", "t_end"):
            value = meta[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidState(f"snapshot: expected {name} finite seconds, got {value!r:.40}")
        if not isinstance(meta["method"], str):
            raise InvalidState(f"snapshot: expected method a str, got {type(meta['method']).__name__}")
        for name in _WIRE_ARRAYS:
            array = arrays[name]
            if array.dtype.kind not in "iuf" or not np.isfinite(array).all():
                raise InvalidState(f"snapshot: expected {name} of finite numbers, got dtype {array.dtype} "
                                   "(or NaN/Inf values)")
        return cls(version=meta["version"], method=meta["method"], base=arrays["base"], motion=arrays["motion"],
                   recent=arrays["recent"], t_start=float(meta["t_start"]), t_end=float(meta["t_end"]),
                   frames_seen=meta["frames_seen"], tokens_seen=meta["tokens_seen"])


_WIRE_SCALARS = ("version", "method", "t_start", "t_end", "frames_seen", "tokens_seen")
_WIRE_ARRAYS = ("base", "motion", "recent")
