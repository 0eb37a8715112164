"""Shared shell of every streaming compressor: validation, counters, recent window, snapshots, bytes.

Subclasses implement ``_update`` (called only after the chunk passed every check, so a rejected chunk never
changes the state), ``_base_and_motion`` (the content tokens for a snapshot) and ``_state`` / ``_load``.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor import state_check as check
from compressor.errors import CompressorError, InvalidConfig, InvalidState
from compressor.pooling import pool_to_count
from compressor.serial import dumps, loads, pack_array
from compressor.snapshot import Snapshot
from compressor.validation import check_chunk, check_finite, check_timestamps, token_norms


@runtime_checkable
class StreamCompressor(Protocol):
    """What the pipeline sees of any method (``StreamCompressorBase`` implements it)."""

    frames_seen: int
    tokens_seen: int

    def update(self, tokens: np.ndarray | torch.Tensor, timestamps: np.ndarray) -> None: ...
    def snapshot(self) -> Snapshot: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device | None = None,
                   config: CompressorConfig | None = None) -> StreamCompressor: ...


class StreamCompressorBase:
    """Validation, counters, media-time span, recent window, snapshot caching and the msgpack envelope."""

    method = "abstract"

    def __init__(self, config: CompressorConfig | None = None) -> None:
        self.config = config or CompressorConfig(method=self.method)
        if self.config.method != self.method:
            raise InvalidConfig(f"method: expected {self.method!r} for {type(self).__name__}, got {self.config.method!r}")
        self.frames_seen = 0
        self.tokens_seen = 0
        self.version = 0
        self.t_start = 0.0
        self.t_end = 0.0
        self.grid: tuple[int, int] | None = None
        self.dim: int | None = None
        self._recent = np.zeros((0, 0), dtype=np.float32)
        self._snapshot: Snapshot | None = None
        # Readers on other threads (snapshot, to_bytes) never see a half-applied update.
        self._lock = threading.Lock()

    def update(self, tokens: np.ndarray | torch.Tensor, timestamps: np.ndarray) -> None:
        """Add one chunk of tokens ``[T_c, H, W, D]`` with media timestamps ``[T_c]`` (seconds).

        Raises:
            InvalidTokens: wrong rank, empty, grid/D unlike earlier chunks, NaN/Inf, bad timestamps (negative,
                decreasing, or earlier than the newest already seen: see ``check_timestamps``). The state is
                unchanged when this is raised. float64 is converted, gradients are detached, any memory
                layout gives the same state bits.
        """
        with self._lock:
            self._checked_update(tokens, timestamps)

    def _checked_update(self, tokens: np.ndarray | torch.Tensor, timestamps: np.ndarray) -> None:
        x = check_chunk(tokens, self.grid, self.dim)
        ts = check_timestamps(timestamps, x.shape[0], self.t_end if self.frames_seen else None)
        t, h, w, d = x.shape
        norms = token_norms(x.reshape(t * h * w, d))  # [N] float32
        check_finite(norms)
        self._update(x, norms, ts)
        if self.frames_seen == 0:
            self.grid, self.dim, self.t_start, self.t_end = (h, w), d, float(ts.min()), float(ts.max())
        self.t_start, self.t_end = min(self.t_start, float(ts.min())), max(self.t_end, float(ts.max()))
        if self.config.recent_window:
            self._recent = pool_to_count(x[-1], self.config.recent_window).cpu().numpy()
        self.frames_seen += t
        self.tokens_seen += t * h * w
        self.version += 1
        self._snapshot = None

    def snapshot(self) -> Snapshot:
        """Immutable view of the current state (cached per version)."""
        with self._lock:
            return self._cached_snapshot()

    def _cached_snapshot(self) -> Snapshot:
        if self._snapshot is None:
            base, motion = self._base_and_motion()
            recent = self._recent if self._recent.size else np.zeros((0, base.shape[1]), dtype=np.float32)
            t_start, t_end = self._span()
            self._snapshot = Snapshot(self.version, self.method, base, motion, recent, t_start, t_end,
                                      self.frames_seen, self.tokens_seen)
        return self._snapshot

    def to_bytes(self) -> bytes:
        """The whole state as msgpack bytes (schema-versioned); ``from_bytes`` restores it exactly."""
        with self._lock:
            return self._to_bytes()

    def _to_bytes(self) -> bytes:
        common = {"config": self.config.to_dict(), "frames_seen": self.frames_seen, "tokens_seen": self.tokens_seen,
                  "version": self.version, "t_start": self.t_start, "t_end": self.t_end,
                  "grid": list(self.grid) if self.grid else None, "dim": self.dim, "recent": pack_array(self._recent)}
        return dumps(self.method, {"common": common, "method_state": self._state() if self.frames_seen else None})

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device | None = None,
                   config: CompressorConfig | None = None) -> StreamCompressorBase:
        """Restore a state written by ``to_bytes`` of the same method (optionally onto ``device``).

        Args:
            config: the configuration the caller wants now, or None to take the stored one. A checkpoint made
                with another budget, K range, recent window or slot count (``max_new_clusters``) is refused,
                never re-fitted: its arrays were sized for those. Every other field (thresholds, half-life,
                segments, retention) is taken from ``config``: they tune later updates and change nothing
                stored.
        Raises:
            InvalidState: the only error: damaged bytes, another method or schema version, a config mismatch as
                above, or any key, dtype, shape, id range or count that does not fit the rest of the state.
        """
        _, payload = loads(data, cls.method)
        try:
            check.keys(payload, "payload", {"common", "method_state"})
            obj = cls._restore_common(payload["common"], config)
            if payload["method_state"] is not None:
                obj._load(payload["method_state"], device)
        except InvalidState:
            raise
        except (CompressorError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # A check above missed something: still the one error type, naming what broke.
            raise InvalidState(f"state: expected a consistent {cls.method} state, got {type(exc).__name__}: "
                               f"{exc}") from exc
        return obj

    @classmethod
    def _restore_common(cls, common: Any, wanted: CompressorConfig | None) -> StreamCompressorBase:
        """A fresh compressor holding the checked common part (config, counters, span, grid, recent window)."""
        check.keys(common, "common", {"config", "frames_seen", "tokens_seen", "version", "t_start", "t_end",
                                      "grid", "dim", "recent"})
        check.expect(isinstance(common["config"], dict), "common.config", "a map", common["config"])
        try:
            stored = CompressorConfig.from_dict(common["config"])
        except (InvalidConfig, TypeError) as exc:
            raise InvalidState(f"common.config: expected a valid compressor config, got {exc}") from exc
        if wanted is not None:
            shape = ("method", "budget", "adaptive", "k_min", "k_max", "recent_window", "max_new_clusters")
            changed = {name: (getattr(stored, name), getattr(wanted, name)) for name in shape
                       if getattr(stored, name) != getattr(wanted, name)}
            check.expect(not changed, "config", "the checkpoint's budget, K range, recent window and slots "
                         "(refused, not re-fitted: start the stream afresh to change them)",
                         {name: f"{old} -> {new}" for name, (old, new) in changed.items()})
        obj = cls(wanted or stored)
        frames = check.integer(common["frames_seen"], "frames_seen")
        obj.frames_seen, obj.version = frames, check.integer(common["version"], "version", frames and 1)
        obj.t_start, obj.t_end = check.real(common["t_start"], "t_start"), check.real(common["t_end"], "t_end")
        check.expect(0 <= obj.t_start <= obj.t_end, "t_start/t_end", "0 <= t_start <= t_end",
                     (obj.t_start, obj.t_end))
        if frames:
            grid = common["grid"]
            check.expect(isinstance(grid, list) and len(grid) == 2, "grid", "[H, W]", grid)
            obj.grid = (check.integer(grid[0], "grid H", 1, 4096), check.integer(grid[1], "grid W", 1, 4096))
            obj.dim = check.integer(common["dim"], "dim", 1, 2**20)
        else:
            check.expect(common["grid"] is None and common["dim"] is None, "grid/dim", "null before any frame",
                         (common["grid"], common["dim"]))
        per_frame = obj.grid[0] * obj.grid[1] if obj.grid else 0
        obj.tokens_seen = check.integer(common["tokens_seen"], "tokens_seen", frames * per_frame, frames * per_frame)
        rows = obj.config.recent_window if frames and obj.config.recent_window else 0
        obj._recent = check.array(common["recent"], "recent", np.float32, (rows, obj.dim if rows else 0),
                                  finite=True)
        return obj

    # ---- for subclasses -----------------------------------------------------------------------------
    def _update(self, x: torch.Tensor, norms: torch.Tensor, timestamps: np.ndarray) -> None:
        raise NotImplementedError

    def _base_and_motion(self) -> tuple[np.ndarray, np.ndarray]:
        """``base [K, D]`` float32 and ``motion [K, F]`` float32 for the snapshot."""
        raise NotImplementedError

    def _span(self) -> tuple[float, float]:
        """Media-time span the snapshot covers (the whole stream unless a subclass keeps less)."""
        return self.t_start, self.t_end

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, state: dict[str, Any], device: str | torch.device | None) -> None:
        raise NotImplementedError
