"""Small frozen types that flow out of ``stream/``: frames, chunks and source status."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    image: [H, W, 3] uint8 RGB. pts: media time in seconds (from the PTS, corrected to be strictly
    increasing per stream). arrival: wall clock (``time.time()``) when decoded. index: decode index.
    """

    image: np.ndarray
    pts: float
    arrival: float
    index: int


@dataclass(frozen=True)
class Chunk:
    """T sampled frames of one stream: frames [T, H, W, 3] uint8, timestamps [T] / arrivals [T] float64."""

    stream_id: str
    seq: int
    frames: np.ndarray
    timestamps: np.ndarray
    arrivals: np.ndarray

    def __post_init__(self) -> None:
        t = self.frames.shape[0] if self.frames.ndim == 4 else -1
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[3] != 3:
            raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        if self.timestamps.shape != (t,) or self.arrivals.shape != (t,):
            raise ValueError(f"timestamps/arrivals: expected [{t}], got {self.timestamps.shape}, "
                             f"{self.arrivals.shape}")


class SourceState(str, enum.Enum):
    """Life cycle of a source. ``ALLOWED`` lists the states each state may move to."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # finished normally (end of file, or closed by the user)
    FAILED = "failed"  # gave up with an error (see last_error)


ALLOWED: dict[SourceState, frozenset[SourceState]] = {
    SourceState.CONNECTING: frozenset({SourceState.STREAMING, SourceState.RECONNECTING, SourceState.ENDED,
                                       SourceState.FAILED}),
    SourceState.STREAMING: frozenset({SourceState.RECONNECTING, SourceState.ENDED, SourceState.FAILED}),
    SourceState.RECONNECTING: frozenset({SourceState.CONNECTING, SourceState.ENDED, SourceState.FAILED}),
    SourceState.ENDED: frozenset(),
    SourceState.FAILED: frozenset(),
}


@dataclass(frozen=True)
class StatusEvent:
    """A state change: ``time`` is wall clock, ``detail`` is redacted text (error or reason)."""

    time: float
    state: SourceState
    detail: str = ""


@dataclass(frozen=True)
class SourceStatus:
    """Point-in-time view of a source; every URL and error text in it is redacted.

    decoded: frames decoded; sampled: frames the source's sampler kept (all of them without a sampler);
    dropped: sampled frames discarded because the consumer lagged (drop_oldest policy) or they went
    stale; reconnects: disconnects
    followed by a reconnect attempt; fps / width / height / codec: of the current stream, when known.
    decode_s: wall seconds spent inside the video decoder so far, every frame (kept or not), RGB conversion
    excluded; None for sources that draw frames instead of decoding them (synthetic).
    """

    url: str
    state: SourceState
    decoded: int
    sampled: int
    dropped: int
    reconnects: int
    last_error: str | None
    fps: float | None
    width: int | None
    height: int | None
    codec: str | None
    events: tuple[StatusEvent, ...]
    decode_s: float | None = None

    def to_dict(self) -> dict:
        """Plain dict (msgpack / JSON friendly), events as dicts."""
        out = {k: getattr(self, k) for k in ("url", "decoded", "sampled", "dropped", "reconnects", "last_error",
                                             "fps", "width", "height", "codec", "decode_s")}
        out["state"] = self.state.value
        out["events"] = [{"time": e.time, "state": e.state.value, "detail": e.detail} for e in self.events]
        return out
