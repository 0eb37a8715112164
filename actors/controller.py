"""Controller: the encoder and LLM replica pools, the streams and their placement, re-wired once a second.

Every actor it starts is detached and named, and the table of what exists (actors/table.py) is kept in Ray's
GCS store, so when the controller's process dies Ray restarts it and the new one re-adopts every running
actor: no stream stops, and management is back once it has started. Wiring is declarative: a reconcile
thread observes every actor once per RECONCILE_S (where it runs, in which process) and sends the addresses it
should talk to (sources -> their encoder replica, each replica -> its streams' memories, memories -> every LLM
replica) to those whose wiring changed or whose process is new, and to all of them every FULL_WIRE_S. The
calls are idempotent, so an actor Ray restarted on a new port is re-wired within a second, whoever it was.

Placement: a stream goes to the least-loaded encoder replica by sampled frames/s (actors/placement.py), and
its source and memory are pinned to that replica's node (Ray node affinity), so frames stay off the network.
A replica silent for pools.LOST_AFTER_S loses its streams to the others; a stream whose replica changed is
moved to the new replica's node (memory closed, restored from its checkpoint there), and one whose actors died
with their node is started again there the same way. Adding a replica rebalances.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnschedulableError, GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.autoscale import Autoscaler
from actors.config import MAX_REPLICAS, PipelineConfig, StreamSpec, stream_spec
from actors.errors import ScaleRefused, StreamExists, StreamNotFound
from actors.loop import LoopThread
from actors.placement import assign, loads, pick, rebalance
from actors.pools import ReplicaPool
from actors.remote import EncoderActor, LLMActor, Located, MemoryActor, SourceActor
from actors.status import ROLES, STARTING, MemoryTelemetry, ReplicaStatus, ScaleEvent, SourceTelemetry, StreamStatus
from actors.table import StreamEntry, Table, TableError, TableStore
from configs.schema import check
from stream.config import redact_url

log = logging.getLogger(__name__)

CONTROLLER_NAME = "tokdyn-controller"
RECONCILE_S = 1.0  # how often the actors are observed and changed wiring is sent
FULL_WIRE_S = 10.0  # how often every address is re-sent anyway (a lost call cannot leave an actor unwired)
MAX_PENDING_CALLS = 256  # fire-and-forget wiring calls still unanswered before a round is skipped
CALL_TIMEOUT_S = 10.0  # a control call on a healthy actor answers well within this
START_TIMEOUT_S = 300.0  # actor start-up (process + imports + model load) on a busy 2-core machine
MOVES_PER_ROUND = 2  # streams moved to their replica's node per reconcile round (each restarts two actors)
EVENTS_KEPT = 200  # pool changes kept for telemetry


@dataclass
class StreamActors:
    entry: StreamEntry  # spec, replica, actor names (what the table stores)
    source: Any  # ActorHandle
    memory: Any  # ActorHandle
    node_id: str | None = None  # where its memory runs (last seen)
    pids: tuple[int, int] | None = None  # (memory, source) processes last seen: a change = Ray restarted one
    gone: bool = False  # an actor died for good (its node is gone): start both again
    wired: tuple | None = None  # the wiring last sent to its actors (sent again only when it changes)


class Controller:
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
        self._routes: dict[str, str] = {}  # stream id -> its memory's tokens address
        self._placing: dict[str, str] = {}  # stream id -> replica, while its actors start (not in _streams yet)
        self._events: collections.deque[ScaleEvent] = collections.deque(maxlen=EVENTS_KEPT)
        self._pending: list[Any] = []  # refs of wiring calls not answered yet (a hung actor must not pile up)
        self._alive_encoders: frozenset[str] = frozenset()
        self._full_wire_at = 0.0  # monotonic time every address was last re-sent
        self.reconciles = 0
        self.encoders = ReplicaPool("encoder", self._new_encoder, "info", self.namespace)
        self.llms = ReplicaPool("llm", self._new_llm, "endpoint", self.namespace)
        self.autoscaler = Autoscaler(config.encoder.autoscale)
        self._store = TableStore(self.namespace)
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
        self.encoders.probe()
        self.llms.probe()
        for sid, entry in self.table.streams.items():
            try:
                source = ray.get_actor(entry.source, namespace=self.namespace)
                memory = ray.get_actor(entry.memory, namespace=self.namespace)
            except ValueError:
                log.warning("controller: stream %s lost its actors, starting them again", sid)
                alive = self.encoders.placements()
                replica = entry.encoder if entry.encoder in {r.name for r in alive} else \
                    pick(entry.spec.sample_rate_hz, None, alive, {r.name: 0.0 for r in alive})
                self._streams[sid] = self._start_stream(entry.spec, replica, entry.added_at)
                self._placing.pop(sid, None)
                continue
            self._streams[sid] = StreamActors(entry, source, memory)
        self._save()
        log.info("controller: adopted %d encoder, %d LLM replicas and %d streams", len(self.encoders.members),
                 len(self.llms.members), len(self._streams))

    # --- actors ---------------------------------------------------------------------------------------

    def _count(self, role: str) -> int:
        wanted = self.config.encoder.replicas if role == "encoder" else self.config.llm.replicas
        if wanted == "auto":
            return max(1, min(int(ray.cluster_resources().get("GPU", 0)), MAX_REPLICAS))
        return int(wanted)

    def _new_encoder(self, name: str) -> Any:
        c = self.config
        return EncoderActor.options(
            name=name, namespace=self.namespace, lifetime="detached", max_restarts=c.ray.max_restarts,
            num_cpus=c.encoder.num_cpus, num_gpus=c.encoder.num_gpus, resources=c.encoder.resources or None,
            scheduling_strategy="SPREAD",
        ).remote(c.model, c.encoder, c.transport, str(c.checkpoint_path / f"{name}.port"))

    def _new_llm(self, name: str) -> Any:
        c = self.config
        return LLMActor.options(
            name=name, namespace=self.namespace, lifetime="detached", max_restarts=c.ray.max_restarts,
            max_concurrency=c.llm.max_concurrent, num_cpus=c.llm.num_cpus, num_gpus=c.llm.num_gpus,
            resources=c.llm.resources or None, scheduling_strategy="SPREAD",
        ).remote(c.model, c.llm, c.transport, str(c.checkpoint_path))

    def _start_stream(self, spec: StreamSpec, replica: str, added_at: float) -> StreamActors:
        """Start a stream's memory on `replica`'s node, route the replica's tokens to it, then start its source
        there: in that order, so not one chunk of a file reaches a replica that does not know where it goes.
        Waits for the memory (up to START_TIMEOUT_S); kills what it started if anything fails."""
        options: dict[str, Any] = {"max_restarts": self.config.ray.max_restarts, "num_cpus": 0,
                                   "lifetime": "detached", "namespace": self.namespace}
        if self.config.stream_resources:  # the user pins streams to nodes: that wins over placement
            options["resources"] = self.config.stream_resources
        else:
            # Hard affinity: Ray's soft affinity spills to another node whenever the target is busy starting
            # workers, which put sources off their node in tests. On a dead node a hard-pinned actor is
            # unschedulable, not restarted elsewhere; the controller then starts it anew on its new replica's node.
            node = self.encoders.members[replica].node_id if replica in self.encoders.members else None
            if node is not None:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        sid = spec.stream_id
        entry = StreamEntry(spec, replica, added_at, self.table.new_name(f"tokdyn-source-{sid}"),
                            self.table.new_name(f"tokdyn-memory-{sid}"))
        memory = MemoryActor.options(name=entry.memory, **options).remote(
            spec, self.config.checkpoint_dir, self.config.transport, self._llm_endpoints())
        try:
            tokens = ray.get(memory.endpoints.remote(), timeout=START_TIMEOUT_S)["tokens"]
            with self._lock:
                self._routes[sid] = tokens
                self._placing[sid] = replica
                routes = self._routes_of(replica)
            member = self.encoders.members[replica]
            ray.get(member.handle.set_routes.remote(routes), timeout=CALL_TIMEOUT_S)
            source = SourceActor.options(name=entry.source, **options).remote(
                spec, member.info["image_size"], self.config.transport, member.info["frames_endpoint"])
        except BaseException:
            ray.kill(memory, no_restart=True)  # a half-started stream must not leave actors behind
            with self._lock:
                self._routes.pop(sid, None)
                self._placing.pop(sid, None)
            raise
        return StreamActors(entry, source, memory)

    def _routes_of(self, replica: str) -> dict[str, str]:
        """Stream id -> tokens address of the streams `replica` serves, those being placed included (caller
        holds `_lock`): a routing table without them would make the replica drop their first chunks."""
        served = {sid for sid, a in self._streams.items() if a is not None and a.entry.encoder == replica}
        served |= {sid for sid, name in self._placing.items() if name == replica}
        return {sid: self._routes[sid] for sid in served if sid in self._routes}

    def _llm_endpoints(self) -> list[str]:
        return sorted(m.info for m in self.llms.alive() if m.info)

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
                with self._lock:
                    assigned = {sid: s.entry.encoder for sid, s in self._streams.items() if s is not None}
                    fps = {sid: s.entry.spec.sample_rate_hz for sid, s in self._streams.items() if s is not None}
                replica = pick(spec.sample_rate_hz, None, alive, loads(assigned, fps, alive))
            actors = self._start_stream(spec, replica, time.time())
        except BaseException:
            with self._lock:
                del self._streams[spec.stream_id]
            raise
        with self._control:
            with self._lock:
                self._streams[spec.stream_id] = actors
                self._placing.pop(spec.stream_id, None)
            self._save()
            self._wire()
        log.info("stream %s added on %s (%s)", spec.stream_id, replica, redact_url(spec.url))
        return self._status(actors, SourceTelemetry(STARTING), MemoryTelemetry())

    def remove_stream(self, stream_id: str) -> None:
        """Stop a stream, delete its checkpoint and kill its actors (no restart)."""
        with self._control:
            with self._lock:
                actors = self._streams.get(stream_id)
                if actors is None:
                    raise StreamNotFound(f"stream {stream_id!r}: expected one of {self._ids()}")
                del self._streams[stream_id]
                self._routes.pop(stream_id, None)
            self._save()
            self._wire()
        self._stop_actors(stream_id, actors, delete_checkpoint=True)
        log.info("stream %s removed", stream_id)

    def _stop_actors(self, stream_id: str, actors: StreamActors, delete_checkpoint: bool) -> None:
        """Close the memory cleanly (its checkpoint is complete then), then kill both actors for good."""
        for handle, call in ((actors.source, actors.source.close), (actors.memory, actors.memory.close)):
            try:
                kwargs = {"delete_checkpoint": delete_checkpoint} if handle is actors.memory else {}
                ray.get(call.remote(**kwargs), timeout=CALL_TIMEOUT_S)
            except (RayError, GetTimeoutError) as exc:
                log.warning("stream %s: clean close failed (%s), killing", stream_id, exc)
            ray.kill(handle, no_restart=True)

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
        """The stream's actor handles {"source", "memory"} (tests and tools: pids, digests, kills)."""
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

    # --- replica pools --------------------------------------------------------------------------------

    def replicas(self) -> list[ReplicaStatus]:
        """Every encoder and LLM replica with its telemetry (role, then name order)."""
        with self._lock:
            per_encoder = collections.Counter(s.entry.encoder for s in self._streams.values() if s is not None)
        with self._control:
            llm_streams = {m.name: int(m.stats.get("streams", 0)) for m in self.llms.members.values()}
            return self.encoders.status(dict(per_encoder)) + self.llms.status(llm_streams)

    def scale_events(self) -> list[ScaleEvent]:
        """The pools' recent changes, oldest first."""
        return list(self._events)

    def scale(self, role: str, count: int) -> list[ReplicaStatus]:
        """Run `count` replicas of `role`: new ones are started (and take streams, for encoders), surplus ones
        hand their streams over and are removed. Raises ConfigError for a bad role or count, ScaleRefused when
        the cluster has no free resources for the new replicas."""
        check(role in ROLES, "role", f"one of {list(ROLES)}", role)
        check(isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_REPLICAS, "replicas",
              f"an integer 1..{MAX_REPLICAS}", count)
        with self._control:
            pool = self.encoders if role == "encoder" else self.llms
            if count > len(pool.members):
                self._grow(pool, count - len(pool.members), "requested")
            elif count < len(pool.members):
                self._shrink(pool, len(pool.members) - count, "requested")
        return self.replicas()

    def _grow(self, pool: ReplicaPool, n: int, reason: str) -> None:
        self._check_free(pool.role, n)
        names = [self.table.new_name(f"tokdyn-{pool.role}") for _ in range(n)]
        pool.start(names, START_TIMEOUT_S)
        for name in names:
            self._event(pool.role, "add", name, len(pool.members), reason)
        self._save()
        if pool is self.encoders:
            self._rebalance()
        self._wire()

    def _shrink(self, pool: ReplicaPool, n: int, reason: str) -> None:
        """Remove `n` replicas: lost ones first, then the least loaded; their streams move before they go."""
        with self._lock:
            served = collections.Counter(s.entry.encoder for s in self._streams.values() if s is not None)
        lost = set(pool.lost())
        victims = sorted(pool.members, key=lambda name: (name not in lost, served.get(name, 0), name))[:n]
        keep = [r for r in pool.placements() if r.name not in victims]
        if pool is self.encoders:
            if not keep:
                raise ScaleRefused("expected an alive encoder replica to keep serving the streams, got none: "
                                   "retry when one answers")
            self._reassign(keep, reason)
        for name in victims:
            pool.remove(name)
            self._event(pool.role, "remove", name, len(pool.members), reason)
        self._save()
        self._wire()

    def _check_free(self, role: str, n: int) -> None:
        c = self.config.encoder if role == "encoder" else self.config.llm
        need = {"CPU": c.num_cpus, "GPU": c.num_gpus, **c.resources}
        free = ray.available_resources()
        short = {k: v * n for k, v in need.items() if v > 0 and free.get(k, 0.0) + 1e-9 < v * n}
        if short:
            raise ScaleRefused(f"not enough free resources for {n} more {role} replica(s): they need "
                               f"{ {k: v * n for k, v in need.items() if v > 0} }, the cluster has "
                               f"{ {k: round(free.get(k, 0.0), 3) for k in short} } free")

    def _event(self, role: str, action: str, replica: str, replicas: int, reason: str) -> None:
        self._events.append(ScaleEvent(time.time(), role, action, replica, replicas, reason))
        log.info("%s replica %s: %s (%s); %d now", role, replica, action, reason, replicas)

    def _reassign(self, alive: list, reason: str) -> None:
        """Streams of replicas not in `alive` go to alive ones (placement.assign)."""
        with self._lock:
            current = {sid: s.entry.encoder for sid, s in self._streams.items() if s is not None}
            fps = {sid: s.entry.spec.sample_rate_hz for sid, s in self._streams.items() if s is not None}
            nodes = {sid: s.node_id for sid, s in self._streams.items() if s is not None}
        self._apply_assignments(assign(current, fps, nodes, alive), reason)

    def _rebalance(self) -> None:
        alive = self.encoders.placements()
        with self._lock:
            current = {sid: s.entry.encoder for sid, s in self._streams.items() if s is not None}
            fps = {sid: s.entry.spec.sample_rate_hz for sid, s in self._streams.items() if s is not None}
        self._apply_assignments(rebalance(assign(current, fps, {}, alive), fps, alive), "rebalance")

    def _apply_assignments(self, new: dict[str, str], reason: str) -> None:
        changed = False
        with self._lock:
            for sid, replica in new.items():
                actors = self._streams.get(sid)
                if actors is not None and actors.entry.encoder != replica:
                    self._events.append(ScaleEvent(time.time(), "encoder", "reassign", replica,
                                                   len(self.encoders.members), f"{sid}: {reason}"))
                    actors.entry.encoder = replica
                    changed = True
        if changed:
            self._save()

    # --- shared actors (tools, tests) -----------------------------------------------------------------

    def llm_handles(self) -> dict[str, Any]:
        """Alive LLM replicas by name (the client routes each question to the least busy)."""
        with self._control:
            return {m.name: m.handle for m in self.llms.alive()}

    def encoder_handles(self) -> dict[str, Any]:
        """Every encoder replica's handle by name."""
        with self._control:
            return {name: m.handle for name, m in self.encoders.members.items()}

    def ready(self) -> bool:
        return True

    def shutdown(self) -> None:
        """Stop every stream (keeping checkpoints) and replica, and forget the table."""
        self._loop.stop()
        with self._control:
            with self._lock:
                streams = [s for s in self._streams.values() if s is not None]
                self._streams.clear()
            for actors in streams:
                for handle in (actors.source, actors.memory):
                    ray.kill(handle, no_restart=True)
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
            self.reconcile()

    def reconcile(self) -> None:
        """One round: probe the replicas, move streams off lost replicas, rebalance when replicas came back,
        re-assert every address (idempotent), co-locate moved streams, autoscale."""
        if self._pending:
            _, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            if len(self._pending) > MAX_PENDING_CALLS:
                log.warning("reconcile: %d wiring calls unanswered, skipping a round", len(self._pending))
                return
        with self._control:
            self.encoders.probe()
            self.llms.probe()
            self._observe_streams()
            alive = self.encoders.placements()
            names = frozenset(r.name for r in alive)
            if alive:
                self._reassign(alive, "replica lost")
                if names - self._alive_encoders and self._alive_encoders:  # one came back: share the load
                    self._rebalance()
            self._alive_encoders = names
            full = time.monotonic() - self._full_wire_at >= FULL_WIRE_S
            self._wire(full)
            if full:
                self._full_wire_at = time.monotonic()
            self._colocate()
            if self.config.encoder.autoscale.enabled:
                decision = self.autoscaler.decide(self.encoders.status({}), self._lags())
                if decision is not None:
                    self._autoscale(*decision)
        self.reconciles += 1

    def _lags(self) -> list[float]:
        """Every stream's lag (s), for the autoscaler; streams that do not answer are left out."""
        with self._lock:
            refs = [s.memory.status.remote() for s in self._streams.values() if s is not None]
        telemetry = [self._try_get(ref, timeout=1.0) for ref in refs]
        return [t.lag_s for t in telemetry if t is not None and t.lag_s is not None]

    def _observe_streams(self) -> None:
        """Where every stream's memory and source run (node, process), asked at once; a memory's tokens
        address again when its process changed (a restarted memory may bind a new port); which streams'
        actors are gone for good (their node died: pinned there, Ray cannot restart them). Two calls per
        stream in a quiet round: the controller's cost grows with streams, so nothing more is asked."""
        with self._lock:
            streams = {sid: s for sid, s in self._streams.items() if s is not None}
        found = self._ask_all({sid: (s.memory.where, s.source.where) for sid, s in streams.items()})
        changed = {}
        for sid, got in found.items():
            if got is None:
                streams[sid].gone = True
                continue
            pids = (got[0]["pid"], got[1]["pid"])
            streams[sid].node_id = got[0]["node_id"]
            if pids[0] != (streams[sid].pids or (None,))[0] or sid not in self._routes:
                changed[sid] = pids
            else:
                streams[sid].pids = pids
        addresses = self._ask_all({sid: (streams[sid].memory.endpoints,) for sid in changed})
        with self._lock:
            for sid, got in addresses.items():
                if got is not None and self._streams.get(sid) is streams[sid]:  # not removed meanwhile
                    self._routes[sid] = got[0]["tokens"]
                    streams[sid].pids = changed[sid]

    def _ask_all(self, calls: dict[str, tuple]) -> dict[str, tuple | None]:
        """Call every method in `calls` (key -> methods of one stream) at once; waits up to 1 s. Returns the
        answers of the keys whose calls all answered (None: an actor died for good); slow ones are left out."""
        refs = {key: [method.remote() for method in methods] for key, methods in calls.items()}
        flat = [ref for group in refs.values() for ref in group]
        ready = set(ray.wait(flat, num_returns=len(flat), timeout=1.0)[0]) if flat else set()
        out: dict[str, tuple | None] = {}
        for key, group in refs.items():
            if not all(ref in ready for ref in group):
                continue  # restarting or slow: asked again next round
            try:
                out[key] = tuple(ray.get(group, timeout=0))
            except (ActorDiedError, ActorUnschedulableError):
                out[key] = None
            except (RayError, GetTimeoutError):
                continue
        return out

    def _wire(self, full: bool = True) -> None:
        """Send actors their peers' addresses (fire and forget; answers collected next round): all of them when
        `full`, else only where something changed (an address, an assignment, a restarted process)."""
        alive = self.encoders.alive()
        llms = self.llms.alive()
        with self._lock:
            streams = {sid: s for sid, s in self._streams.items() if s is not None}
            routes = {m.name: self._routes_of(m.name) for m in alive}
        llm_endpoints = self._llm_endpoints()
        calls = []
        for m in alive:
            if self._changed(m, (m.pid, routes[m.name]), full):
                calls.append(m.handle.set_routes.remote(routes[m.name]))
        for m in llms:
            if self._changed(m, (m.pid, sorted(streams)), full):
                calls.append(m.handle.set_streams.remote(sorted(streams)))
        for s in streams.values():
            replica = self.encoders.members.get(s.entry.encoder)
            frames = replica.info["frames_endpoint"] if replica is not None and isinstance(replica.info, dict) \
                else None
            wiring = (s.pids, tuple(llm_endpoints), frames)
            if not full and wiring == s.wired:
                continue
            s.wired = wiring
            calls.append(s.memory.set_publish_targets.remote(llm_endpoints))
            if frames is not None:
                calls.append(s.source.set_target.remote(frames))
        self._pending += calls

    @staticmethod
    def _changed(member: Any, wiring: tuple, full: bool) -> bool:
        """Whether a replica's wiring differs from what it was last sent (and record it)."""
        if not full and member.wired == wiring:
            return False
        member.wired = wiring
        return True

    def _colocate(self) -> None:
        """Start again, on their replica's node, up to MOVES_PER_ROUND streams whose actors are gone or whose
        memory runs on another node than their replica (it changed)."""
        if self.config.stream_resources:
            return  # pinned by the user
        nodes = {m.name: m.node_id for m in self.encoders.alive()}
        with self._lock:
            strays = [(sid, s) for sid, s in sorted(self._streams.items()) if s is not None
                      and nodes.get(s.entry.encoder) is not None
                      and (s.gone or (s.node_id is not None and nodes[s.entry.encoder] != s.node_id))]
        for sid, old in strays[:MOVES_PER_ROUND]:
            if old.gone:
                for handle in (old.source, old.memory):
                    ray.kill(handle, no_restart=True)
            else:
                self._stop_actors(sid, old, delete_checkpoint=False)
            new = self._start_stream(old.entry.spec, old.entry.encoder, old.entry.added_at)
            with self._lock:  # (no removal can have happened: that takes the control lock too)
                self._streams[sid] = new
                self._placing.pop(sid, None)
            self._events.append(ScaleEvent(time.time(), "encoder", "move", old.entry.encoder,
                                           len(self.encoders.members),
                                           f"{sid}: {'its node died' if old.gone else 'to its replica node'}"))
            self._save()

    def _autoscale(self, action: str, reason: str) -> None:
        try:
            if action == "add":
                self._grow(self.encoders, 1, f"autoscale: {reason}")
            else:
                self._shrink(self.encoders, 1, f"autoscale: {reason}")
        except ScaleRefused as exc:
            self._event("encoder", f"{action} refused", "-", len(self.encoders.members), f"autoscale: {exc}")
        self.autoscaler.acted()


@ray.remote
class ControllerActor(Controller, Located):
    """Named "tokdyn-controller" in the config's namespace; CLI and API find it with ray.get_actor."""

    def __init__(self, config: PipelineConfig) -> None:
        Controller.__init__(self, config, exit_on_crash=True)
