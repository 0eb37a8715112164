"""Who talks to whom: the stream table's addresses, observed each round and sent only where they changed.

`Wiring` reads the controller's stream table (the same dict, under the controller's lock) and keeps what
the data plane needs: each stream's memory tokens address (`routes`), the streams whose actors are still
starting (`placing`, so their replica already routes their first chunks), and what each actor was last
sent. A quiet round costs two Ray calls per stream (where its memory and source run, in which process); a
new process (Ray restarted the actor), a new address or a new assignment is sent at once, and everything is
re-sent every FULL_WIRE_S so a lost call cannot leave an actor unwired.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnschedulableError, GetTimeoutError, RayError

from actors.control.pools import Member, llm_endpoints
from actors.control.table import StreamEntry

log = logging.getLogger(__name__)

FULL_WIRE_S = 10.0  # how often every address is re-sent anyway
MAX_PENDING_CALLS = 256  # fire-and-forget wiring calls still unanswered before a round is skipped
ASK_WAIT_S = 1.0  # one round waits at most this long for the actors' answers


@dataclass
class StreamActors:
    """One stream's actors and what the controller last saw of them."""

    entry: StreamEntry  # spec, replica, actor names (what the table stores)
    source: Any  # ActorHandle
    memory: Any  # ActorHandle
    node_id: str | None = None  # where its memory runs (last seen)
    pids: tuple[int, int] | None = None  # (memory, source) processes last seen: a change = Ray restarted one
    gone: bool = False  # an actor died for good (its node is gone): start both again
    wired: tuple | None = None  # the wiring last sent to its actors


def ask_all(calls: dict[str, tuple], wait_s: float = ASK_WAIT_S) -> dict[str, tuple | None]:
    """Call every method in `calls` (key -> bound actor methods, no arguments) at once and wait up to `wait_s`.
    Returns the answers of the keys whose calls all answered; None for a key whose actor died for good
    (dead or unschedulable: its node is gone). Keys with a slow or restarting actor are left out."""
    refs = {key: [method.remote() for method in methods] for key, methods in calls.items()}
    flat = [ref for group in refs.values() for ref in group]
    ready = set(ray.wait(flat, num_returns=len(flat), timeout=wait_s)[0]) if flat else set()
    out: dict[str, tuple | None] = {}
    for key, group in refs.items():
        if not all(ref in ready for ref in group):
            continue
        try:
            out[key] = tuple(ray.get(group, timeout=0))
        except (ActorDiedError, ActorUnschedulableError):
            out[key] = None
        except (RayError, GetTimeoutError) as exc:
            log.debug("wiring: %s did not answer: %s", key, exc)
    return out


class Wiring:
    """Addresses of the data plane over the controller's stream table `streams` (guarded by `lock`)."""

    def __init__(self, streams: dict[str, StreamActors | None], lock: threading.Lock) -> None:
        self._streams = streams
        self._lock = lock
        self.routes: dict[str, str] = {}  # stream id -> its memory's tokens address
        self.placing: dict[str, str] = {}  # stream id -> replica, while its actors start (not in streams yet)
        self._pending: list[Any] = []  # wiring calls not answered yet (a hung actor must not pile them up)
        self._full_at = 0.0

    def routes_of(self, replica: str) -> dict[str, str]:
        """Stream id -> tokens address of the streams `replica` serves, those being placed included (caller
        holds the lock): a routing table without them would make the replica drop their first chunks."""
        served = {sid for sid, a in self._streams.items() if a is not None and a.entry.encoder == replica}
        served |= {sid for sid, name in self.placing.items() if name == replica}
        return {sid: self.routes[sid] for sid in served if sid in self.routes}

    def backlogged(self) -> bool:
        """Whether too many earlier calls are unanswered to send more this round. Callers serialise it with
        `send` (the controller's control lock): both change the list of pending calls."""
        if self._pending:
            _, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
        if len(self._pending) > MAX_PENDING_CALLS:
            log.warning("wiring: %d calls unanswered, skipping a round", len(self._pending))
            return True
        return False

    def observe(self) -> None:
        """Where every stream's memory and source run (node, process), asked at once; a memory's tokens
        address again when its process changed (a restarted memory may bind a new port); which streams'
        actors are gone for good (their node died: pinned there, Ray cannot restart them; or their stream host's
        process was restarted, empty: `hosted` False)."""
        with self._lock:
            streams = {sid: s for sid, s in self._streams.items() if s is not None}
        found = ask_all({sid: (s.memory.where, s.source.where) for sid, s in streams.items()})
        changed = {}
        for sid, got in found.items():
            if got is None or not all(w.get("hosted", True) for w in got):
                streams[sid].gone = True
                continue
            pids = (got[0]["pid"], got[1]["pid"])
            streams[sid].node_id = got[0]["node_id"]
            if pids[0] != (streams[sid].pids or (None,))[0] or sid not in self.routes:
                changed[sid] = pids
            else:
                streams[sid].pids = pids
        addresses = ask_all({sid: (streams[sid].memory.endpoints,) for sid in changed})
        with self._lock:
            for sid, got in addresses.items():
                if got is not None and self._streams.get(sid) is streams[sid]:  # not removed meanwhile
                    self.routes[sid] = got[0]["tokens"]
                    streams[sid].pids = changed[sid]

    def send(self, encoders: list[Member], llms: list[Member], full: bool | None = None) -> None:
        """Send actors their peers' addresses (fire and forget): everything when `full` (None: when
        FULL_WIRE_S has passed), else only where an address, an assignment or a process changed.
        `encoders`, `llms`: the alive replicas."""
        full = time.monotonic() - self._full_at >= FULL_WIRE_S if full is None else full
        if full:
            self._full_at = time.monotonic()
        with self._lock:
            streams = {sid: s for sid, s in self._streams.items() if s is not None}
            routes = {m.name: self.routes_of(m.name) for m in encoders}
        endpoints = llm_endpoints(llms)
        ids = sorted(streams)
        frames = {m.name: m.info["frames_endpoint"] for m in encoders if isinstance(m.info, dict)}
        calls = []
        for m in encoders:
            if _changed(m, (m.pid, routes[m.name]), full):
                calls.append(m.handle.set_routes.remote(routes[m.name]))
        for m in llms:
            if _changed(m, (m.pid, ids), full):
                calls.append(m.handle.set_streams.remote(ids))
        for s in streams.values():
            target = frames.get(s.entry.encoder)
            if _changed(s, (s.pids, tuple(endpoints), target), full):
                calls.append(s.memory.set_publish_targets.remote(endpoints))
                if target is not None:
                    calls.append(s.source.set_target.remote(target))
        self._pending += calls


def _changed(holder: Any, wiring: tuple, full: bool) -> bool:
    """Whether `holder` (a replica Member or StreamActors) must be sent `wiring` now; records it as sent."""
    if not full and holder.wired == wiring:
        return False
    holder.wired = wiring
    return True
