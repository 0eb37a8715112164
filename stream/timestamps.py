"""Repairs raw presentation timestamps into a strictly increasing media clock per stream.

Cameras and files misbehave: frames without a PTS, PTS that go backwards (a camera reboot, a reconnect,
a looped file) and, on live streams, forward jumps far beyond the wall-clock time that passed. Each case
keeps the stream's clock running from where it was instead of letting sampling see time go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FPS = 30.0
MIN_STEP_S = 1e-6  # smallest step between two corrected timestamps (they must strictly increase)


@dataclass(frozen=True)
class ResumePoint:
    """Where a stream's memory stands, for a source (re)started on it to go on from there instead of from 0.

    t: the newest media time (s) the memory holds; a restarted source's frames must come after it (media time
        never goes backwards in a stream: the memory refuses chunks that do).
    arrival: wall-clock time that frame arrived (a live stream's clock then counts the outage too), or None
        when unknown (a memory restored without a matching `.resume` file next to its checkpoint).
    seq: the chunk sequence number the memory expects next (0 when unknown: any number is new to it then).
    """

    t: float
    arrival: float | None = None
    seq: int = 0


class TimestampCorrector:
    """``correct(raw_pts, arrival) -> pts`` keeping raw timestamps where they behave.

    fps: nominal frame rate (the step used across a discontinuity in a file, or for a missing PTS).
    live: a live stream measures steps across discontinuities by arrival (wall-clock) time instead, and also
        treats a forward jump larger than the elapsed wall time plus ``max_jump_s`` as a discontinuity.
    """

    def __init__(self, fps: float | None = None, live: bool = False, max_jump_s: float = 5.0) -> None:
        self.step = 1.0 / (fps if fps and fps > 0 else DEFAULT_FPS)
        self.live = live
        self.max_jump_s = max_jump_s
        self.offset = 0.0
        self.discontinuities = 0
        self.missing = 0
        self._last: float | None = None
        self._last_arrival = 0.0

    def continue_after(self, t: float, arrival: float) -> None:
        """Go on from media time ``t`` (a resumed stream): the next raw PTS that is not later than ``t`` (or,
        live, jumps ahead) is a discontinuity, stepped from ``t`` by the fps step or, live, by the wall time
        since ``arrival``."""
        self._last, self._last_arrival = t, arrival

    def _fallback_step(self, arrival: float) -> float:
        return max(arrival - self._last_arrival, MIN_STEP_S) if self.live else self.step

    def correct(self, raw: float | None, arrival: float) -> float:
        """Corrected media time (seconds) for a frame with raw PTS ``raw`` (None if absent) that arrived at
        wall-clock ``arrival``."""
        if self._last is None:
            out = 0.0 if raw is None else raw
            self.missing += raw is None
        elif raw is None:
            self.missing += 1
            out = self._last + self._fallback_step(arrival)
        else:
            out = raw + self.offset
            delta = out - self._last
            jumped = self.live and delta > (arrival - self._last_arrival) + self.max_jump_s
            if delta <= 0 or jumped:
                self.discontinuities += 1
                out = self._last + self._fallback_step(arrival)
                self.offset = out - raw
        self._last, self._last_arrival = out, arrival
        return out
