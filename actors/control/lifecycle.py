"""The controller's stream-actor half: starting and stopping streams' source and memory actors, many at once.

A stream starts in three steps, each done for every stream of a batch at once (Ray starts the processes in
parallel, so moving sixteen streams takes about as long as moving one): its memory on its replica's node,
then its replica's routing table with the memory's address, then its source there, which asks the memory
where the stream stands and goes on from there. In that order, not one chunk of a file reaches a replica that
does not know where it goes. Stopping closes every source first, then every memory (each memory's checkpoint
is complete then), then kills them for good.

With `streams_per_host` >= 1 the same steps run on stream hosts (actors/control/hosts.py): the memory and
source are added to a host on the replica's node instead of started as actors, and stopping removes the
stream from its host (its neighbours untouched; a host left empty is killed). Everything after the start
talks to `HostedHandle`s, which the host answers as the actors did, so the rest of the controller is the same
for both.

`StreamLifecycle` is mixed into `actors.control.controller.Controller` and works on its state, declared in
`actors.control.state.ControllerState`: config, namespace, the encoder and LLM pools, the table's names and
the wiring (under `_lock`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.config import StreamSpec
from actors.control.pools import START_TIMEOUT_S, llm_endpoints
from actors.workers.host_remote import HOST_CONCURRENCY, HOST_ENV, HostedHandle, StreamHostActor
from actors.workers.remote import MemoryActor, SourceActor
from actors.control.table import StreamEntry
from actors.control.wiring import StreamActors
from actors.control.state import ControllerState

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0  # a control call on a healthy actor answers well within this


@dataclass(frozen=True)
class StreamStart:
    """A stream to start: its spec, the encoder replica that serves it, when it was first added (wall clock)."""

    spec: StreamSpec
    replica: str
    added_at: float


class StreamLifecycle(ControllerState):
    """Start and stop methods of the controller (see the module docstring for the state they use)."""

    def _start_streams(self, starts: list[StreamStart]) -> dict[str, StreamActors | Exception]:
        """Start every stream in `starts` (memories, routes, sources: each step for all at once), waiting up to
        START_TIMEOUT_S in all for the memories. Returns stream id -> its actors, or the exception its start
        failed with (what it had started is killed then: a half-started stream leaves no actor behind)."""
        out: dict[str, StreamActors | Exception] = {}
        pending = {}  # stream id -> (entry, memory handle, its endpoints() ref)
        for start in starts:
            entry, memory, ref = self._start_memory(start)
            pending[start.spec.stream_id] = (entry, memory, ref)
        deadline = time.monotonic() + START_TIMEOUT_S
        for sid, (entry, memory, ref) in pending.items():
            try:
                tokens = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))["tokens"]
            except (RayError, GetTimeoutError) as exc:
                out[sid] = self._abandon(entry, memory, exc)
                continue
            with self._lock:
                self.wiring.routes[sid] = tokens
                self.wiring.placing[sid] = entry.encoder
        for replica in sorted({entry.encoder for sid, (entry, _, _) in pending.items() if sid not in out}):
            try:  # the replica routes the new streams' tokens before their first chunk can arrive
                member = self.encoders.members[replica]
                with self._lock:
                    routes = self.wiring.routes_of(replica)
                ray.get(member.handle.set_routes.remote(routes), timeout=CALL_TIMEOUT_S)
            except (KeyError, RayError, GetTimeoutError) as exc:  # KeyError: the replica was removed meanwhile
                for sid, (entry, memory, _) in pending.items():
                    if entry.encoder == replica and sid not in out:
                        out[sid] = self._abandon(entry, memory, exc)
                continue
            for sid, (entry, memory, _) in pending.items():
                if entry.encoder == replica and sid not in out:
                    out[sid] = StreamActors(entry, self._start_source(entry, memory, member.info), memory)
        return out

    def _start_memory(self, start: StreamStart) -> tuple[StreamEntry, Any, Any]:
        """Start a stream's memory (an actor, or on a host of its replica's node): (its table entry, its
        handle, a ref to its endpoints)."""
        sid, publish_to = start.spec.stream_id, llm_endpoints(self.llms.alive())
        if not self.config.streams_per_host:
            entry = StreamEntry(start.spec, start.replica, start.added_at, self.table.new_name(f"tokdyn-source-{sid}"),
                                self.table.new_name(f"tokdyn-memory-{sid}"))
            memory = MemoryActor.options(name=entry.memory, **self._stream_options(start.replica)).remote(
                start.spec, self.config.checkpoint_dir, self.config.transport, publish_to)
            return entry, memory, memory.endpoints.remote()
        member = self.encoders.members.get(start.replica)
        node = None if self.config.stream_resources or member is None else member.node_id
        host = self.hosts.place(sid, node, lambda: self._new_host(start.replica))
        entry = StreamEntry(start.spec, start.replica, start.added_at, "", "", host.name)
        return entry, HostedHandle(host.handle, sid, "memory"), host.handle.add_memory.remote(start.spec, publish_to)

    def _new_host(self, replica: str) -> tuple[str, Any]:
        """A new stream host on `replica`'s node: (its name, its handle)."""
        name = self.table.new_name("tokdyn-host")
        options = {**self._stream_options(replica), "name": name, "max_concurrency": HOST_CONCURRENCY,
                   "runtime_env": {"env_vars": HOST_ENV}}
        return name, StreamHostActor.options(**options).remote(self.config.checkpoint_dir, self.config.transport)

    def _start_source(self, entry: StreamEntry, memory: Any, info: dict) -> Any:
        """Start a stream's source next to its memory, pushing to the encoder replica described by `info`; it
        goes on from where the memory stands. Returns its handle."""
        if entry.host:
            memory.host.add_source.remote(entry.spec, info["image_size"], info["frames_endpoint"])
            return HostedHandle(memory.host, entry.spec.stream_id, "source")
        return SourceActor.options(name=entry.source, **self._stream_options(entry.encoder)).remote(
            entry.spec, info["image_size"], self.config.transport, info["frames_endpoint"], memory)

    def _find_actors(self, entry: StreamEntry) -> tuple[Any, Any]:
        """(source, memory) handles of a running stream found by the names in its entry (a restarted
        controller); raises ValueError when an actor or its host is gone."""
        if not entry.host:
            return (ray.get_actor(entry.source, namespace=self.namespace),
                    ray.get_actor(entry.memory, namespace=self.namespace))
        host = ray.get_actor(entry.host, namespace=self.namespace)
        member = self.encoders.members.get(entry.encoder)
        self.hosts.adopt(entry.host, entry.spec.stream_id, member.node_id if member else None, host)
        return HostedHandle(host, entry.spec.stream_id, "source"), HostedHandle(host, entry.spec.stream_id, "memory")

    def _kill(self, actors: StreamActors, delete_checkpoint: bool = False) -> None:
        """Stop a stream's processes for good: kill its two actors, or take it off its host (killed when it
        holds no other stream). `delete_checkpoint`: the hosted memory's, as its close would."""
        if not actors.entry.host:
            for handle in (actors.source, actors.memory):
                ray.kill(handle, no_restart=True)
            return
        if not actors.gone:  # a host that restarted holds none of it: nothing to remove there
            actors.memory.host.remove.remote(actors.entry.spec.stream_id, delete_checkpoint)
        self.hosts.release(actors.entry.spec.stream_id, actors.entry.host)

    def _abandon(self, entry: StreamEntry, memory: Any, exc: Exception) -> Exception:
        """Kill a half-started stream's memory and forget its address; returns `exc` (its start's outcome)."""
        sid = entry.spec.stream_id
        log.warning("stream %s: start failed (%s: %s)", sid, type(exc).__name__, exc)
        if entry.host:
            memory.host.remove.remote(sid)
            self.hosts.release(sid, entry.host)
        else:
            ray.kill(memory, no_restart=True)
        with self._lock:
            self.wiring.routes.pop(sid, None)
            self.wiring.placing.pop(sid, None)
        return exc

    def _stream_options(self, replica: str) -> dict[str, Any]:
        """Ray options of a stream's actors: detached and named in the namespace, no CPU reserved, pinned to
        `replica`'s node (or to the user's `stream_resources`, which win over placement)."""
        options: dict[str, Any] = {"max_restarts": self.config.ray.max_restarts, "num_cpus": 0,
                                   "lifetime": "detached", "namespace": self.namespace}
        if self.config.stream_resources:
            options["resources"] = self.config.stream_resources
            return options
        # Hard affinity: Ray's soft affinity spills to another node whenever the target is busy starting
        # workers, which put sources off their node in tests. On a dead node a hard-pinned actor is
        # unschedulable, not restarted elsewhere; the controller then starts it anew on its new replica's node.
        member = self.encoders.members.get(replica)
        if member is not None and member.node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(member.node_id, soft=False)
        return options

    def _stop_streams(self, streams: dict[str, StreamActors], delete_checkpoint: bool) -> None:
        """Close every source, then every memory (its checkpoint is complete then), each step for all at once,
        then kill both actors of each for good (`_kill`). A close that fails or hangs is logged; the kill follows
        anyway."""
        for role in ("source", "memory"):
            kwargs = {"delete_checkpoint": delete_checkpoint} if role == "memory" else {}
            refs = {sid: getattr(s, role).close.remote(**kwargs) for sid, s in streams.items() if not s.gone}
            deadline = time.monotonic() + CALL_TIMEOUT_S
            for sid, ref in refs.items():
                try:
                    ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
                except (RayError, GetTimeoutError) as exc:
                    log.warning("stream %s: clean close of its %s failed (%s), killing", sid, role, exc)
        for actors in streams.values():
            self._kill(actors, delete_checkpoint)
