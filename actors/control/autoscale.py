"""Encoder replicas scaled by load: one decision at a time, from what the pool and the streams report.

More: a stream's lag (decode -> memory) stays above `max_lag_s` for `window_s` while the pool is below
`max_replicas` (the controller then checks the cluster has the resources, or records a refused decision).
Fewer: no stream lags, every stream's memory answers (one restarting or moving says nothing of its load), and
the pool's frames/s stays at or below `idle_fraction` of its busiest since the last change for `window_s`
while above `min_replicas`. After any decision nothing happens for `cooldown_s`: a new replica
needs time to load its model and take streams before the lag it was added for can fall.
"""

from __future__ import annotations

import time

from actors.config import AutoscaleConfig
from actors.status import ALIVE, ReplicaStatus


class Autoscaler:
    """Plain state machine; `decide` is called once per reconcile round, `acted` after a decision was carried
    out (or refused)."""

    def __init__(self, config: AutoscaleConfig) -> None:
        self.config = config
        self._last_action = time.monotonic()
        self._peak_fps = 0.0
        self._lagging_since: float | None = None
        self._idle_since: float | None = None

    def decide(self, replicas: list[ReplicaStatus], lags_s: list[float], unheard: int = 0,
               now: float | None = None) -> tuple[str, str] | None:
        """("add" | "remove", why) or None. `replicas`: the encoder pool; `lags_s`: the lag of every stream
        whose memory answered; `unheard`: streams whose memory did not (restarting, moving)."""
        c = self.config
        if not c.enabled:
            return None
        now = time.monotonic() if now is None else now
        fps = sum(r.frames_per_s or 0.0 for r in replicas if r.state == ALIVE)
        self._peak_fps = max(self._peak_fps, fps)
        worst = max(lags_s, default=0.0)
        slow = worst > c.max_lag_s
        lagging = slow and len(replicas) < c.max_replicas
        idle = not slow and not unheard and len(replicas) > c.min_replicas and fps <= c.idle_fraction * self._peak_fps
        self._lagging_since = (self._lagging_since or now) if lagging else None
        self._idle_since = (self._idle_since or now) if idle else None
        if now - self._last_action < c.cooldown_s:
            return None
        if lagging and now - self._lagging_since >= c.window_s:
            return "add", f"lag {worst:.1f} s above {c.max_lag_s:g} s for {c.window_s:g} s"
        if idle and now - self._idle_since >= c.window_s:
            return "remove", (f"{fps:.1f} frames/s, at most {c.idle_fraction:g} of the busiest "
                              f"{self._peak_fps:.1f}, for {c.window_s:g} s")
        return None

    def acted(self, now: float | None = None) -> None:
        """A decision was carried out or refused: start the cooldown, measure the new pool afresh."""
        self._last_action = time.monotonic() if now is None else now
        self._peak_fps = 0.0
        self._lagging_since = self._idle_since = None
