"""Which LLM replica answers a question: the one with the fewest answers in flight from this client.

Every replica holds every stream's newest snapshot, so any can answer; the router counts the answers this
process has open on each (the API server is one process: that is all of its questions) and sends the next
one to the least busy, round-robin among ties. A replica whose call failed as unavailable is skipped for
SUSPECT_S (its questions in flight got a 503; the next ones go elsewhere) unless no other is left. The list
of replicas comes from the controller and is refreshed every REFRESH_S, so added and removed replicas are
picked up within seconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

REFRESH_S = 2.0
SUSPECT_S = 5.0


class LLMRouter:
    """Thread-safe; `fetch()` returns {replica name: actor handle} of the alive replicas (a controller call)."""

    def __init__(self, fetch: Callable[[], dict[str, Any]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._replicas: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._in_flight: dict[str, int] = {}
        self._failed_at: dict[str, float] = {}
        self._turn = itertools.count()

    def update(self, replicas: dict[str, Any], now: float | None = None) -> None:
        with self._lock:
            self._replicas = dict(replicas)
            self._fetched_at = time.monotonic() if now is None else now

    def stale(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self._fetched_at > REFRESH_S

    def pick(self, now: float | None = None) -> tuple[str, Any]:
        """(name, handle) of the replica for the next question; LookupError when there is none. Refresh the
        list first (`stale`, `update`): this never calls out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._replicas:
                raise LookupError("no LLM replica is alive")
            healthy = [n for n in self._replicas if now - self._failed_at.get(n, float("-inf")) > SUSPECT_S]
            names = sorted(healthy or self._replicas)
            turn = next(self._turn)
            least = min(self._in_flight.get(n, 0) for n in names)
            ties = [n for n in names if self._in_flight.get(n, 0) == least]
            name = ties[turn % len(ties)]
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            return name, self._replicas[name]

    def done(self, name: str, unavailable: bool = False, now: float | None = None) -> None:
        """An answer on `name` ended; `unavailable`: because the replica could not be reached."""
        with self._lock:
            self._in_flight[name] = max(self._in_flight.get(name, 0) - 1, 0)
            if unavailable:
                self._failed_at[name] = time.monotonic() if now is None else now

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return {n: self._in_flight.get(n, 0) for n in self._replicas}
