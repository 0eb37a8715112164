"""A pool of replicas of one role (encoder or LLM): start or adopt them by name, probe them, report them.

Replicas are detached, named Ray actors (they outlive a controller restart; the controller finds them again
by name) restarted by Ray when their process dies. The pool only observes: once per reconcile round it asks
every replica for its address and statistics at once, and a replica that has not answered for
`LOST_AFTER_S` (or whose calls have failed that long) is *lost*: dead, or restarting where there are no
resources for it (its GPU node is gone); the controller then moves its work elsewhere. A replica whose node
Ray has declared dead (a node drained or shut down, or one whose health checks failed) is lost at once,
without waiting out the silence. A replica that answers again is alive again. Questions stay outstanding
across rounds, so a slow replica on a busy machine is late, not lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.control.placement import Replica
from actors.status import ALIVE, UNAVAILABLE, ReplicaStatus

log = logging.getLogger(__name__)

LOST_AFTER_S = 8.0  # silence after which a replica's streams go elsewhere (a busy 2-core box stalls ~1-2 s)
START_TIMEOUT_S = 300.0  # actor start-up (process + imports + model load) on a busy 2-core machine
PROBE_TIMEOUT_S = 1.0  # one round waits at most this long for all replicas together


@dataclass
class Member:
    """One replica as last seen: its handle, address info (`probe` result), node and statistics."""

    name: str
    handle: Any
    info: Any = None  # encoder: info() dict; llm: endpoint() str; None until it first answers
    node_id: str | None = None
    pid: int | None = None  # a new pid = Ray restarted it: its wiring is sent again
    wired: tuple | None = None  # the wiring last sent to it (controller._wire)
    stats: dict[str, Any] = field(default_factory=dict)
    answered_at: float | None = None  # monotonic time of the last answer
    created_at: float = field(default_factory=time.monotonic)
    rate: tuple[float, int, int] | None = None  # (monotonic, frames, batches) of the previous round
    frames_per_s: float | None = None
    batch_fill: float | None = None
    pending: list[Any] | None = None  # probe calls not answered yet ...
    asked_at: float = 0.0  # ... sent at this monotonic time
    failing_since: float | None = None  # first failed probe since the last answer (dead or restarting)
    node_dead: bool = False  # Ray declared the node it last ran on dead (until it answers from another)

    def up(self, now: float) -> bool:
        """Answered its latest questions (or is not overdue on them), on a node that is not dead."""
        return (self.answered_at is not None and self.failing_since is None and not self.node_dead
                and not (self.pending is not None and now - self.asked_at >= LOST_AFTER_S))

    def lost(self, now: float) -> bool:
        """Dead, restarting, on a dead node or silent for LOST_AFTER_S: its work should go elsewhere."""
        if self.node_dead:
            return True
        if self.failing_since is not None:
            return now - self.failing_since >= LOST_AFTER_S
        if self.pending is not None:
            return now - self.asked_at >= LOST_AFTER_S
        return self.answered_at is None and now - self.created_at >= LOST_AFTER_S


def llm_endpoints(llms: list[Member]) -> list[str]:
    """The snapshot addresses (`pub+connect:...`) of LLM replicas that have given one, sorted."""
    return sorted(m.info for m in llms if m.info)


class ReplicaPool:
    """Replicas of one role. `create(name)` starts a new actor; `probe_method` is the cheap call whose answer
    is the replica's address info ("info" for encoders, "endpoint" for LLMs). Changes (start, adopt, remove,
    probe) come from the controller under its control lock; reads (`members`, `alive`, `status`, ...) take
    a snapshot of the membership and may come from any thread, so telemetry and question routing never wait
    behind a long reconcile round (a stream being moved)."""

    def __init__(self, role: str, create: Callable[[str], Any], probe_method: str, namespace: str) -> None:
        self.role = role
        self.create = create
        self.probe_method = probe_method
        self.namespace = namespace
        self._members: dict[str, Member] = {}
        self._lock = threading.Lock()  # membership only: status reads must not wait for a reconcile round

    # --- membership -----------------------------------------------------------------------------------

    def start(self, names: list[str], timeout_s: float) -> None:
        """Start replicas `names` together and wait until each answers (raises what went wrong)."""
        new = {name: Member(name, self.create(name)) for name in names}
        try:
            infos = ray.get([getattr(m.handle, self.probe_method).remote() for m in new.values()], timeout=timeout_s)
            wheres = ray.get([m.handle.where.remote() for m in new.values()], timeout=timeout_s)
        except BaseException:
            for m in new.values():
                ray.kill(m.handle, no_restart=True)
            raise
        now = time.monotonic()
        for m, info, where in zip(new.values(), infos, wheres):
            m.info, m.node_id, m.pid, m.answered_at = info, where["node_id"], where["pid"], now
        with self._lock:
            self._members.update(new)

    def adopt(self, name: str) -> bool:
        """Take over the running replica `name` (after a controller restart); False if it does not exist."""
        try:
            handle = ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return False
        with self._lock:
            self._members[name] = Member(name, handle)
        return True

    def remove(self, name: str) -> None:
        """Kill replica `name` for good."""
        with self._lock:
            member = self._members.pop(name)
        ray.kill(member.handle, no_restart=True)

    @property
    def members(self) -> dict[str, Member]:
        """Replica name -> Member, a snapshot of the membership (the Members themselves are live)."""
        with self._lock:
            return dict(self._members)

    # --- observation ----------------------------------------------------------------------------------

    def probe(self, dead_nodes: frozenset[str] = frozenset()) -> None:
        """One round: every replica's address, node and statistics. A replica's questions stay outstanding
        across rounds until it answers, so a slow replica on a busy machine is late, not silent; waits at most
        PROBE_TIMEOUT_S for this round's answers. `dead_nodes`: the ids of nodes Ray has declared dead."""
        members = self.members
        for m in members.values():
            m.node_dead = m.node_id in dead_nodes
            if m.pending is None:
                m.pending = [getattr(m.handle, self.probe_method).remote(), m.handle.stats.remote(),
                             m.handle.where.remote()]
                m.asked_at = time.monotonic()
        refs = [ref for m in members.values() for ref in m.pending]
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)[0]) if refs else set()
        now = time.monotonic()
        for m in members.values():
            if not all(ref in ready for ref in m.pending):
                continue
            try:
                info, stats, where = ray.get(m.pending, timeout=0)
            except (RayError, GetTimeoutError) as exc:  # dead or restarting: ask again next round
                log.debug("%s replica %s did not answer: %s", self.role, m.name, exc)
                m.failing_since = m.failing_since or now
                continue
            finally:
                m.pending = None
            m.info, m.stats, m.node_id, m.pid, m.answered_at = info, stats, where["node_id"], where["pid"], now
            m.failing_since = None
            m.node_dead = m.node_id in dead_nodes
            self._rates(m, now)

    @staticmethod
    def _rates(m: Member, now: float) -> None:
        frames, batches = int(m.stats.get("frames", 0)), int(m.stats.get("batches", 0))
        if m.rate is not None and now > m.rate[0] and frames >= m.rate[1]:
            m.frames_per_s = (frames - m.rate[1]) / (now - m.rate[0])
            new_batches = batches - m.rate[2]
            size = max(int(m.stats.get("batch_frames", 1)), 1)
            m.batch_fill = (frames - m.rate[1]) / new_batches / size if new_batches > 0 else m.batch_fill
        m.rate = (now, frames, batches)

    def alive(self) -> list[Member]:
        """Replicas answering now, name order (they get wired, and reported alive)."""
        now = time.monotonic()
        return [m for _, m in sorted(self.members.items()) if m.up(now)]

    def lost(self) -> list[str]:
        """Names of replicas dead, restarting or silent for LOST_AFTER_S."""
        now = time.monotonic()
        return sorted(name for name, m in self.members.items() if m.lost(now))

    def placements(self) -> list[Replica]:
        """The replicas that keep (and may take) streams: every one not lost whose node is known."""
        now = time.monotonic()
        return [Replica(m.name, m.node_id) for _, m in sorted(self.members.items())
                if not m.lost(now) and m.node_id is not None]

    def status(self, streams: dict[str, int]) -> list[ReplicaStatus]:
        """Each replica's telemetry; `streams`: replica name -> streams it serves."""
        alive = {m.name for m in self.alive()}
        out = []
        for name, m in sorted(self.members.items()):
            up = name in alive
            encoder = self.role == "encoder"
            out.append(ReplicaStatus(
                role=self.role, name=name, node_id=m.node_id if up else None, state=ALIVE if up else UNAVAILABLE,
                streams=streams.get(name, 0),
                frames_per_s=m.frames_per_s if up and encoder else None,
                batch_fill=m.batch_fill if up and encoder else None,
                queue_depth=int(m.stats.get("queued", 0)) if up and encoder else None,
                answers_in_flight=int(m.stats.get("answers_in_flight", 0)) if up and not encoder else None))
        return out
