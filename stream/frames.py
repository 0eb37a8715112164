"""Small frozen types that flow out of ``stream/``: frames, chunks and source status."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` if it is RGB video, uint8 ``[T, H, W, 3]``, else a ValueError naming what arrived: the one
    check every frame array gets on its way through stream/ (chunks, the wire, resizing)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        got = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {got}")
    return frames


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
        t = len(check_frames(self.frames))
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
    stale; reconnects: reconnections that got frames again after a disconnect; reconnect_attempts: every
    try after a disconnect or a failed open (so attempts - reconnects tries failed); last_error (+ its wall
    clock time last_error_at) stays after a recovery; state_since: wall clock time of the last state change;
    fps / width / height / codec: of the current stream, when known.
    decode_s: wall seconds spent inside the video decoder so far, every frame (kept or not), RGB conversion
    excluded; None for sources that draw frames instead of decoding them (synthetic).
    decoder_threads: FFmpeg decoding threads of the current stream (0: FFmpeg's choice), when known.
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
    reconnect_attempts: int = 0
    last_error_at: float | None = None
    state_since: float | None = None
    decoder_threads: int | None = None

    def to_dict(self) -> dict:
        """Plain dict (msgpack / JSON friendly), events as dicts."""
        out = {k: getattr(self, k) for k in ("url", "decoded", "sampled", "dropped", "reconnects", "last_error",
                                             "fps", "width", "height", "codec", "decode_s", "reconnect_attempts",
                                             "last_error_at", "state_since", "decoder_threads")}
        out["state"] = self.state.value
        out["events"] = [{"time": e.time, "state": e.state.value, "detail": e.detail} for e in self.events]
        return out
