"""OpenAI's `stop`: end an answer before the first occurrence of any stop string, in streamed pieces.

Pieces arrive a few characters at a time, so a stop string may straddle two pieces. `StopMatcher` holds
back the tail of the text that could still be the start of a stop string and releases it once it cannot;
the text it releases never contains a stop string, and nothing after one is ever released.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_STOPS = 4  # OpenAI's limit
MAX_STOP_CHARS = 256


def check_stops(stop: Sequence[str] | None) -> tuple[str, ...]:
    """The stop strings as a tuple; ValueError naming the limits for anything else."""
    if stop is None:
        return ()
    stops = tuple(stop)
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops):
        raise ValueError(f"stop: expected up to {MAX_STOPS} non-empty strings of at most {MAX_STOP_CHARS} "
                         f"characters, got {stop!r:.120}")
    return stops


class StopMatcher:
    """Feed text pieces with `feed`; it returns what may be shown now. `stopped` turns True at a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = check_stops(stops)
        self.stopped = False
        self._held = ""  # text not released yet: a possible start of a stop string

    def feed(self, piece: str) -> str:
        """The part of `held + piece` that is safe to release now ("" once stopped)."""
        if self.stopped:
            return ""
        text = self._held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return text[:cut]
        keep = max((_overlap(text, s) for s in self.stops), default=0)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """At the end of the answer: the held tail (it never became a stop string)."""
        held, self._held = ("" if self.stopped else self._held), ""
        return held


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
