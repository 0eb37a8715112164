"""Controller: the encoder and LLM replica pools, the streams and their placement, re-wired once a second.

Every actor it starts is detached and named, and the table of what exists (actors/control/table.py) is kept in Ray's
GCS store, so when the controller's process dies Ray restarts it and the new one re-adopts every running
actor: no stream stops, and management is back once it has started. Wiring is declarative: a reconcile
thread observes every actor once per RECONCILE_S (where it runs, in which process) and sends the addresses it
should talk to (sources -> their encoder replica, each replica -> its streams' memories, memories -> every LLM
replica) to those whose wiring changed or whose process is new, and to all of them every FULL_WIRE_S. The
calls are idempotent, so an actor Ray restarted on a new port is re-wired within a second, whoever it was.

Placement: a stream goes to the least-loaded encoder replica by sampled frames/s (actors/control/placement.py), and
its source and memory are pinned to that replica's node (Ray node affinity), so frames stay off the network.
A replica silent for pools.LOST_AFTER_S loses its streams to the others; a stream whose replica changed is
moved to the new replica's node (memory closed, restored from its checkpoint there, its new source going on
after the memory's newest frame), and one whose actors died with their node is started again there the same
way. Adding a replica rebalances.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.control.alert_control import AlertControl
from actors.control.alerts import AlertBook
from actors.control.kv import GcsStore
from actors.control.autoscale import Autoscaler
from actors.control.hosts import HostPool
from actors.control.webhooks import WebhookSender
from actors.config import PipelineConfig, StreamSpec, stream_spec
from actors.control.lifecycle import CALL_TIMEOUT_S, StreamLifecycle, StreamStart
from actors.errors import ScaleRefused, StreamExists, StreamNotFound
from actors.workers.loop import LoopThread
from actors.control.placement import loads, pick
from actors.control.pools import START_TIMEOUT_S, ReplicaPool
from actors.control.scaling import PoolControl
from actors.workers.remote import Located
from actors.status import STARTING, MemoryTelemetry, ScaleEvent, SourceTelemetry, StreamStatus
from actors.control.table import Table, TableError, TableStore
from actors.control.wiring import StreamActors, Wiring, ask_all
from stream.config import redact_url

log = logging.getLogger(__name__)

CONTROLLER_NAME = "tokdyn-controller"
RECONCILE_S = 1.0  # how often the actors are observed and changed wiring is sent
MOVES_PER_ROUND = 16  # streams moved to their replica's node per reconcile round (started all at once)
EVENTS_KEPT = 200  # pool changes kept for telemetry
ADOPT_WAIT_S = 30.0  # how long a restarted controller waits for the replicas it adopts to answer


class Controller(PoolControl, StreamLifecycle, AlertControl):  # state declared in actors/control/state.py
    """Owns the pipeline's actors. Thread-safe: the Ray shell runs it with several concurrent calls.

    Two locks: `_lock` guards the stream dict (short critical sections, never held across a Ray call that
    waits), `_control` serialises the control plane's changes (reconcile rounds, scaling, moves).
    """

    def __init__(self, config: PipelineConfig, exit_on_crash: bool = False) -> None:
        self.config = config
        self.namespace = config.ray.namespace  # where its actors and table live (the CLI and API look there)
        self._lock = threading.Lock()
        self._control = threading.RLock()
        self._streams: dict[str, StreamActors | None] = {}  # None: being added
        self.wiring = Wiring(self._streams, self._lock)
        self._events: collections.deque[ScaleEvent] = collections.deque(maxlen=EVENTS_KEPT)
        self._event_totals: dict[tuple[str, str], int] = {}  # (role, action) -> events since this process began
        self._alive_encoders: frozenset[str] = frozenset()
        self.reconciles = 0
        self.encoders = ReplicaPool("encoder", self._new_encoder, "info", self.namespace)
        self.llms = ReplicaPool("llm", self._new_llm, "endpoint", self.namespace)
        self.hosts = HostPool(config.streams_per_host)
        self.autoscaler = Autoscaler(config.encoder.autoscale)
        self._store = TableStore(GcsStore(self.namespace))
        table = self._load_table()
        self.adopted = table is not None
        if table is not None:
            self.table = table
            self._adopt()
        else:
            self.table = Table()
            self.encoders.start([self.table.new_name("tokdyn-encoder") for _ in range(self._count("encoder"))],
                                START_TIMEOUT_S)
            self.llms.start([self.table.new_name("tokdyn-llm") for _ in range(self._count("llm"))], START_TIMEOUT_S)
            self._save()
            for spec in config.streams:
                self.add_stream(spec)
        self._loop = LoopThread("controller-reconcile", self._reconcile_forever, exit_on_crash)
        self.alerts = AlertBook(GcsStore(self.namespace))  # rules and events, durable (actors/control/alerts.py)
        self.webhooks = WebhookSender(self.alerts.delivered)
        self._alert_owners, self._alert_drains = {}, {}
        self._start_alerts()
        self._alert_loop = LoopThread("controller-alerts", self._alerts_forever, exit_on_crash)

    # --- the table ------------------------------------------------------------------------------------

    def _load_table(self) -> Table | None:
        try:
            return self._store.load()
        except TableError as exc:  # never crash-loop on it: start from the config, say so
            log.error("controller: %s; starting from the config instead", exc)
            return None

    def _save(self) -> None:
        with self._lock:
            self.table.encoders = sorted(self.encoders.members)
            self.table.llms = sorted(self.llms.members)
            self.table.streams = {sid: s.entry for sid, s in self._streams.items() if s is not None}
        self._store.save(self.table)

    def _adopt(self) -> None:
        """Take over the actors the table names (a restarted controller); start afresh any that are gone."""
        for pool, names, prefix in ((self.encoders, self.table.encoders, "tokdyn-encoder"),
                                    (self.llms, self.table.llms, "tokdyn-llm")):
            missing = [name for name in names if not pool.adopt(name)]
            if missing or not pool.members:
                log.warning("controller: %s replicas %s are gone, starting new ones", pool.role, missing)
                pool.start([self.table.new_name(prefix) for _ in range(max(len(missing), 1 - len(pool.members)))],
                           START_TIMEOUT_S)
        deadline = time.monotonic() + ADOPT_WAIT_S  # their addresses, before any stream is started on them
        while True:
            self.encoders.probe()
            self.llms.probe()
            pools = (self.encoders, self.llms)
            if all(m.info for p in pools for m in p.members.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a dead replica answers (with an error) at once: do not spin
        lost = []
        for sid, entry in self.table.streams.items():
            try:
                source, memory = self._find_actors(entry)
            except ValueError:
                log.warning("controller: stream %s lost its actors, starting them again", sid)
                alive = self.encoders.placements()
                replica = entry.encoder if entry.encoder in {r.name for r in alive} else \
                    pick(entry.spec.sample_rate_hz, None, alive, {r.name: 0.0 for r in alive})
                lost.append(StreamStart(entry.spec, replica, entry.added_at))
                continue
            self._streams[sid] = StreamActors(entry, source, memory)
        for sid, started in self._start_streams(lost).items():
            if isinstance(started, Exception):
                raise started  # the restarted controller fails; Ray starts it again, which tries again
            self._streams[sid] = started
            self.wiring.placing.pop(sid, None)
        self._save()
        log.info("controller: adopted %d encoder, %d LLM replicas and %d streams", len(self.encoders.members),
                 len(self.llms.members), len(self._streams))

    # --- streams --------------------------------------------------------------------------------------

    def add_stream(self, spec: StreamSpec | dict) -> StreamStatus:
        """Start a stream's memory and source actors on the least-loaded encoder replica's node, wire them in;
        returns its status. Raises ConfigError (a ValueError naming the key) for a bad spec, StreamExists for a
        duplicate id, ScaleRefused when no encoder replica is alive."""
        spec = stream_spec(spec)
        with self._lock:
            if spec.stream_id in self._streams:
                raise StreamExists(f"stream {spec.stream_id!r}: already exists; remove it first")
            self._streams[spec.stream_id] = None  # reserve the id
        try:
            with self._control:
                alive = self.encoders.placements()
                if not alive:
                    raise ScaleRefused("no encoder replica is alive to take a new stream: retry shortly")
                assigned, fps, _ = self._view()
                replica = pick(spec.sample_rate_hz, None, alive, loads(assigned, fps, alive))
            actors = self._start_streams([StreamStart(spec, replica, time.time())])[spec.stream_id]
            if isinstance(actors, Exception):
                raise actors
        except BaseException:
            with self._lock:
                del self._streams[spec.stream_id]
            raise
        with self._control:
            with self._lock:
                self._streams[spec.stream_id] = actors
                self.wiring.placing.pop(spec.stream_id, None)
            self._save()
            self._wire()
        log.info("stream %s added on %s (%s)", spec.stream_id, replica, redact_url(spec.url))
        return self._status(actors, SourceTelemetry(STARTING), MemoryTelemetry())

    def remove_stream(self, stream_id: str) -> int:
        """Stop a stream, delete its checkpoint and kill its actors (no restart); delete its alert rules and
        return how many there were."""
        with self._control:
            with self._lock:
                actors = self._streams.get(stream_id)
                if actors is None:
                    raise StreamNotFound(f"stream {stream_id!r}: expected one of {self._ids()}")
                del self._streams[stream_id]
                self.wiring.routes.pop(stream_id, None)
            self._save()
            self._wire()
        self._stop_streams({stream_id: actors}, delete_checkpoint=True)
        rules = self.alerts.remove_stream(stream_id)
        log.info("stream %s removed with %d alert rules", stream_id, rules)
        return rules

    def _ids(self) -> list[str]:
        return sorted(sid for sid, s in self._streams.items() if s is not None)

    def stream_ids(self) -> list[str]:
        with self._lock:
            return self._ids()

    def list_streams(self) -> list[StreamStatus]:
        """Every stream's status, in id order (a stream removed meanwhile is left out)."""
        out = []
        for sid in self.stream_ids():
            try:
                out.append(self.stream_status(sid))
            except StreamNotFound:
                continue
        return out

    def stream_status(self, stream_id: str) -> StreamStatus:
        """Telemetry of one stream; the fields of an actor that is restarting are None."""
        actors = self._actors(stream_id)
        source_ref, memory_ref = actors.source.status.remote(), actors.memory.status.remote()  # both at once
        return self._status(actors, self._try_get(source_ref), self._try_get(memory_ref))

    @staticmethod
    def _status(actors: StreamActors, source: SourceTelemetry | None, memory: MemoryTelemetry | None,
                ) -> StreamStatus:
        spec = actors.entry.spec
        return StreamStatus.join(spec.stream_id, redact_url(spec.url), spec.is_live, spec.compressor.method,
                                 spec.sample_rate_hz, source, memory, time.time() - actors.entry.added_at)

    def stream_handles(self, stream_id: str) -> dict:
        """The stream's actor handles {"source", "memory"} (tests and tools: pids, digests, kills); a hosted
        stream's are `HostedHandle`s (their pid is the host's)."""
        actors = self._actors(stream_id)
        return {"source": actors.source, "memory": actors.memory}

    def assignments(self) -> dict[str, str]:
        """Stream id -> name of the encoder replica that serves it."""
        with self._lock:
            return {sid: s.entry.encoder for sid, s in sorted(self._streams.items()) if s is not None}

    def _actors(self, stream_id: str) -> StreamActors:
        with self._lock:
            actors = self._streams.get(stream_id)
            if actors is None:
                raise StreamNotFound(f"stream {stream_id!r}: expected one of {self._ids()}")
            return actors

    # --- shared actors (tools, tests) -----------------------------------------------------------------

    def llm_handles(self) -> dict[str, Any]:
        """Alive LLM replicas by name (the client routes each question to the least busy)."""
        return {m.name: m.handle for m in self.llms.alive()}

    def encoder_handles(self) -> dict[str, Any]:
        """Every encoder replica's handle by name."""
        return {name: m.handle for name, m in self.encoders.members.items()}

    def ready(self) -> bool:
        return True

    def shutdown(self) -> None:
        """Stop every stream (keeping checkpoints) and replica, and forget the table."""
        self._loop.stop()
        self._alert_loop.stop()
        self.webhooks.stop()
        self.alerts.clear()
        with self._control:
            with self._lock:
                streams = [s for s in self._streams.values() if s is not None]
                self._streams.clear()
            for actors in streams:
                if not actors.entry.host:
                    self._kill(actors)
            self.hosts.kill_all()
            for pool in (self.encoders, self.llms):
                for name in list(pool.members):
                    pool.remove(name)
            self._store.delete()

    # --- reconcile ------------------------------------------------------------------------------------

    @staticmethod
    def _try_get(ref: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return ray.get(ref, timeout=timeout)
        except (RayError, GetTimeoutError) as exc:
            log.debug("control call failed: %s", exc)
            return None

    def _reconcile_forever(self, stop: threading.Event) -> None:
        while not stop.wait(RECONCILE_S):
            try:
                self.reconcile()
            except (RayError, GetTimeoutError) as exc:  # an actor too slow or gone mid-round (a move, a new
                # replica): the round's work is idempotent, the next one retries; the controller must not die
                log.warning("reconcile: round failed (%s: %s), retrying next round", type(exc).__name__, exc)

    def reconcile(self) -> None:
        """One round: probe the replicas, move streams off lost replicas, rebalance when replicas came back,
        re-assert every address (idempotent), co-locate moved streams, autoscale."""
        with self._control:  # every wiring send happens under it: the pending calls are not shared meanwhile
            if self.wiring.backlogged():
                return
            dead = _dead_nodes()
            self.encoders.probe(dead)
            self.llms.probe(dead)
            self.wiring.observe()
            alive = self.encoders.placements()
            names = frozenset(r.name for r in alive)
            if alive:
                self._reassign(alive, "replica lost")
                if names - self._alive_encoders and self._alive_encoders:  # one came back: share the load
                    self._rebalance()
            self._alive_encoders = names
            self._wire(full=None)
            self._colocate(dead)
            if self.config.encoder.autoscale.enabled:
                decision = self.autoscaler.decide(self.encoders.status({}), *self._lags())
                if decision is not None:
                    self._autoscale(*decision)
        self.reconciles += 1

    def _lags(self) -> tuple[list[float], int]:
        """For the autoscaler: the lag (s) of every stream whose memory answered and has one, and how many
        memories did not answer (restarting, moving: their load is unknown)."""
        with self._lock:
            memories = {sid: (s.memory.status,) for sid, s in self._streams.items() if s is not None}
        answers = ask_all(memories)
        heard = [got[0] for got in answers.values() if got is not None]
        return [m.lag_s for m in heard if m.lag_s is not None], len(memories) - len(heard)

    def _wire(self, full: bool | None = True) -> None:
        """Send the actors their peers' addresses (actors/control/wiring.py): all of them, or (None) what changed."""
        self.wiring.send(self.encoders.alive(), self.llms.alive(), full)

    def _colocate(self, dead_nodes: frozenset[str]) -> None:
        """Start again, on their replica's node, up to MOVES_PER_ROUND streams whose actors are gone or whose
        memory runs on another node than their replica (it changed): all stopped at once, then all started at
        once. Actors on a node Ray declared dead (`dead_nodes`) are gone: killed, not asked to close (that call
        would wait out its timeout). A stream whose start failed is left without actors, marked gone: the next
        round tries again. With `stream_resources` (placed by the user) only gone ones move."""
        pinned = bool(self.config.stream_resources)  # placed by the user: only streams whose actors are gone
        nodes = {m.name: m.node_id for m in self.encoders.alive()}
        with self._lock:
            strays = {sid: s for sid, s in sorted(self._streams.items()) if s is not None
                      and nodes.get(s.entry.encoder) is not None
                      and (s.gone or (not pinned and s.node_id is not None and nodes[s.entry.encoder] != s.node_id))}
        moving = dict(list(strays.items())[:MOVES_PER_ROUND])
        if not moving:
            return
        for old in moving.values():
            old.gone = old.gone or old.node_id in dead_nodes
        self._stop_streams(moving, delete_checkpoint=False)
        started = self._start_streams([StreamStart(old.entry.spec, old.entry.encoder, old.entry.added_at)
                                       for old in moving.values()])
        for sid, old in moving.items():
            new = started[sid]
            if isinstance(new, Exception):
                old.gone = True  # stopped above: start it anew next round
                continue
            with self._lock:  # (no removal can have happened: that takes the control lock too)
                self._streams[sid] = new
                self.wiring.placing.pop(sid, None)
            self._event("encoder", "move", old.entry.encoder, len(self.encoders.members),
                        f"{sid}: {'its node died' if old.gone else 'to its replica node'}")
        self._save()

def _dead_nodes() -> frozenset[str]:
    """Ids of the nodes Ray has declared dead (one GCS call)."""
    return frozenset(n["NodeID"] for n in ray.nodes() if not n["Alive"])


@ray.remote
class ControllerActor(Controller, Located):
    """Named "tokdyn-controller" in the config's namespace; CLI and API find it with ray.get_actor."""

    def __init__(self, config: PipelineConfig) -> None:
        Controller.__init__(self, config, exit_on_crash=True)
