"""The baselines behind the streaming interface, with bounded state.

``WindowedReducer`` (uniform, pooling, dycoke, offline_token_dynamics) keeps the most recent
``window_frames`` frames of tokens in a preallocated ring buffer and reduces that window at snapshot time: its
snapshot covers only the window, not the whole stream (that is the price of a bounded state for a
whole-clip method). ``StreamingToMe`` streams natively: ToMe's bipartite merging absorbs every new frame into
at most ``budget`` tokens, so it covers the whole stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from compressor.baselines import BipartiteMerger, reduce_clip
from compressor.config import CompressorConfig
from compressor.motion import MOTION_FEATURES, motion_features
from compressor import state_check as check
from compressor.serial import pack_array
from compressor.stream_base import StreamCompressorBase


class WindowedReducer(StreamCompressorBase):
    """A whole-clip method applied to a bounded window of the latest ``config.window_frames`` frames."""

    method = "windowed"

    def _update(self, x: torch.Tensor, norms: torch.Tensor, timestamps: np.ndarray) -> None:
        t, h, w, d = x.shape
        cap = self.config.window_frames
        if self.frames_seen == 0:
            self._buffer = np.zeros((cap, h, w, d), dtype=np.float32)  # ring buffer [W, H, W, D]
            self._times = np.zeros(cap, dtype=np.float64)
        chunk = x.float().cpu().numpy()[-cap:]
        slots = (self.frames_seen + max(t - cap, 0) + np.arange(chunk.shape[0])) % cap
        self._buffer[slots] = chunk
        self._times[slots] = timestamps[-cap:]

    def window(self) -> tuple[torch.Tensor, np.ndarray]:
        """Frames held, oldest first: ``[T_w, H, W, D]`` float32 and their timestamps ``[T_w]``."""
        cap = self.config.window_frames
        held = min(self.frames_seen, cap)
        order = (self.frames_seen - held + np.arange(held)) % cap
        return torch.from_numpy(self._buffer[order]), self._times[order]

    def _span(self) -> tuple[float, float]:
        if not self.frames_seen:
            return self.t_start, self.t_end
        times = self.window()[1]
        return float(times.min()), float(times.max())

    def _base_and_motion(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.frames_seen:
            features = len(MOTION_FEATURES) if self.method == "offline_token_dynamics" else 0
            return np.zeros((0, self.dim or 0), np.float32), np.zeros((0, features), np.float32)
        tokens, times = self.window()
        reduction = reduce_clip(self.method, tokens, self.config)
        base = reduction.tokens.numpy()
        if reduction.key_map is None:
            return base, np.zeros((base.shape[0], 0), np.float32)
        return base, motion_features(reduction.key_map, base.shape[0], times)

    def _state(self) -> dict[str, Any]:
        return {"buffer": pack_array(self._buffer), "times": pack_array(self._times)}

    def _load(self, state: dict[str, Any], device: str | torch.device | None) -> None:
        check.keys(state, "state", {"buffer", "times"})
        cap = self.config.window_frames
        self._buffer = check.array(state["buffer"], "buffer", np.float32, (cap, *self.grid, self.dim), finite=True)
        self._times = check.array(state["times"], "times", np.float64, (cap,), finite=True)


class WindowedUniform(WindowedReducer):
    """Uniform frame sampling + spatial pooling over the recent window."""

    method = "uniform"


class WindowedPooling(WindowedReducer):
    """Spatio-temporal average pooling over the recent window."""

    method = "pooling"


class WindowedDyCoke(WindowedReducer):
    """DyCoke stage 1 over the recent window."""

    method = "dycoke"


class WindowedOfflineTokenDynamics(WindowedReducer):
    """Offline VQToken (whole-window spherical k-means) over the recent window, with motion features."""

    method = "offline_token_dynamics"


class StreamingToMe(StreamCompressorBase):
    """ToMe bipartite soft matching, fed frame by frame; at most ``base_budget`` tokens at any time."""

    method = "tome"

    def __init__(self, config: CompressorConfig | None = None) -> None:
        super().__init__(config)
        self._merger = BipartiteMerger(self.config.base_budget)

    def _update(self, x: torch.Tensor, norms: torch.Tensor, timestamps: np.ndarray) -> None:
        t, h, w, d = x.shape
        for frame in x.float().cpu().reshape(t, h * w, d):
            self._merger.add(frame)

    def _base_and_motion(self) -> tuple[np.ndarray, np.ndarray]:
        if self._merger.tokens is None:
            return np.zeros((0, self.dim or 0), np.float32), np.zeros((0, 0), np.float32)
        base = self._merger.tokens.numpy().copy()
        return base, np.zeros((base.shape[0], 0), np.float32)

    def _state(self) -> dict[str, Any]:
        return {"tokens": pack_array(self._merger.tokens.numpy()), "sizes": pack_array(self._merger.sizes.numpy())}

    def _load(self, state: dict[str, Any], device: str | torch.device | None) -> None:
        check.keys(state, "state", {"tokens", "sizes"})
        tokens = check.array(state["tokens"], "tokens", np.float32, (-1, self.dim), finite=True)
        check.expect(1 <= tokens.shape[0] <= self.config.base_budget, "tokens", f"1..{self.config.base_budget} "
                     "rows", tokens.shape[0])
        sizes = check.array(state["sizes"], "sizes", np.float32, (tokens.shape[0],), finite=True)
        check.expect(bool(np.all(sizes > 0)), "sizes", "positive token sizes", sizes.tolist())
        self._merger.tokens, self._merger.sizes = torch.from_numpy(tokens), torch.from_numpy(sizes)
