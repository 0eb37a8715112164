"""Stream host: many streams' source and memory workers in one process, each stream isolated from the others.

One camera used to cost two interpreters (a source actor and a memory actor: 82 + 199 MB private). A host
runs the same plain workers (`SourceWorker`, `MemoryWorker`) for many streams, each with its own loop thread,
sockets, checkpoint and sticky port, so one more stream costs its state, its threads and its sockets.

Isolation: a worker's loop here never exits the process (`exit_on_crash=False`, unlike a per-stream actor).
A bad chunk is counted by the worker that reads it, as before; a loop that crashes is noticed by the host's
supervisor within SUPERVISE_S and that one worker is built again: a memory restores its checkpoint and binds
its recorded port (so the encoder's queued chunks still reach it), a source asks the hosted memory where
the stream stands and goes on from there. A corrupt checkpoint is set aside by that memory alone
(`MemoryWorker._restore_or_new`). Neighbours are never paused, restarted or touched.

The controller places streams on hosts when `streams_per_host` >= 1 (actors/control/hosts.py); the host's Ray
shell is `actors.workers.host_remote.StreamHostActor`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from actors.config import StreamSpec, TransportConfig
from actors.workers.loop import LoopThread
from actors.workers.memory import MemoryWorker
from actors.workers.source import SourceWorker
from stream.timestamps import ResumePoint

log = logging.getLogger(__name__)

SUPERVISE_S = 0.5  # how often the host looks for a crashed worker loop
ROLES = ("source", "memory")


@dataclass
class Hosted:
    """One stream's workers in the host, how to build them again, and how often they were."""

    spec: StreamSpec
    memory: MemoryWorker | None = None
    source: SourceWorker | None = None
    source_args: dict[str, Any] = field(default_factory=dict)  # image_size, target
    publish_to: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=lambda: {"source": 0, "memory": 0})
    last_crash: str | None = None


class StreamHost:
    """Hosts many streams' workers; `call(stream_id, role, method, ...)` reaches one of them."""

    def __init__(self, checkpoint_dir: str, transport: TransportConfig, supervise_s: float = SUPERVISE_S) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.transport = transport
        self._lock = threading.Lock()
        self._streams: dict[str, Hosted] = {}
        self._supervise_s = supervise_s
        self._supervisor = LoopThread("stream-host-supervisor", self._supervise_forever, exit_on_crash=False)

    # --- streams ---------------------------------------------------------------------------------------

    def add_memory(self, spec: StreamSpec, publish_to: list[str] | None = None) -> dict:
        """Start `spec`'s memory here (restoring its checkpoint); returns its endpoints."""
        with self._lock:
            hosted = self._streams.setdefault(spec.stream_id, Hosted(spec))
            if hosted.memory is not None:
                raise ValueError(f"stream {spec.stream_id!r}: expected no memory hosted yet, it has one")
            hosted.publish_to = list(publish_to or [])
        hosted.memory = MemoryWorker(spec, self.checkpoint_dir, self.transport, hosted.publish_to)
        return hosted.memory.endpoints()

    def add_source(self, spec: StreamSpec, image_size: int, target: str | None = None,
                   resume: ResumePoint | None = None) -> None:
        """Start `spec`'s source here, pushing to `target`; it resumes where the hosted memory stands (or at
        `resume` when given)."""
        with self._lock:
            hosted = self._streams.setdefault(spec.stream_id, Hosted(spec))
            if hosted.source is not None:
                raise ValueError(f"stream {spec.stream_id!r}: expected no source hosted yet, it has one")
            hosted.source_args = {"image_size": image_size, "target": target}
        hosted.source = self._new_source(hosted, resume)

    def remove(self, stream_id: str, delete_checkpoint: bool = False) -> None:
        """Close the stream's source, then its memory (its checkpoint complete), and forget it."""
        with self._lock:
            hosted = self._streams.pop(stream_id, None)
        if hosted is None:
            raise KeyError(f"stream {stream_id!r}: expected a hosted stream, have {sorted(self._streams)}")
        if hosted.source is not None:
            hosted.source.close()
        if hosted.memory is not None:
            hosted.memory.close(delete_checkpoint=delete_checkpoint)

    def stream_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def worker(self, stream_id: str, role: str) -> SourceWorker | MemoryWorker:
        """The stream's `role` ("source" or "memory") worker; KeyError naming what is hosted otherwise."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
        with self._lock:
            hosted = self._streams.get(stream_id)
        found = getattr(hosted, role) if hosted is not None else None
        if found is None:
            raise KeyError(f"stream {stream_id!r}: expected a hosted {role}, have {sorted(self._streams)}")
        return found

    def call(self, stream_id: str, role: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of one stream's worker (status, endpoints, set_target, resume_point, ...); the Ray shell's
        one entry point, so a stream's calls never wait on another stream's."""
        if method.startswith("_"):
            raise ValueError(f"method: expected a public worker method, got {method!r}")
        out = getattr(self.worker(stream_id, role), method)(*args, **kwargs)
        with self._lock:  # what a worker built again after a crash must be given too
            hosted = self._streams.get(stream_id)
            if hosted is not None and method == "set_publish_targets":
                hosted.publish_to = list(args[0] if args else kwargs["endpoints"])
            elif hosted is not None and method == "set_target":
                hosted.source_args["target"] = args[0] if args else kwargs["endpoint"]
        return out

    def restarts(self) -> dict[str, dict[str, int]]:
        """Per stream, how often the host built its source and memory again after a crash."""
        with self._lock:
            return {sid: dict(h.restarts) for sid, h in self._streams.items()}

    def close(self) -> None:
        """Stop the supervisor and every stream (checkpoints kept)."""
        self._supervisor.stop()
        for sid in self.stream_ids():
            self.remove(sid)

    # --- supervision ------------------------------------------------------------------------------------

    def _new_source(self, hosted: Hosted, resume: ResumePoint | None = None) -> SourceWorker:
        if resume is None and hosted.memory is not None:
            resume = hosted.memory.resume_point()
        return SourceWorker(hosted.spec, hosted.source_args["image_size"], self.transport,
                            hosted.source_args["target"], resume)

    def _supervise_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self._supervise_s):
            self.supervise()

    def supervise(self) -> None:
        """Build again every worker whose loop crashed (memory first: a new source asks it where to resume).
        A worker that cannot be built is logged and tried again next round; no other stream is touched."""
        with self._lock:
            streams = list(self._streams.values())
        for hosted in streams:
            for role in ("memory", "source"):
                worker = getattr(hosted, role)
                if worker is None or worker._loop.alive or worker._loop.stop_event.is_set():
                    continue  # running, or stopped on purpose (closed, or a file that ended)
                if worker._loop.error is None:
                    continue  # the loop ended by itself (a file source at its end): nothing to restart
                hosted.last_crash = worker._loop.error
                log.error("host: stream %s: its %s crashed (%s); building it again", hosted.spec.stream_id, role,
                          worker._loop.error)
                try:
                    if role == "memory":
                        worker.close()
                        hosted.memory = MemoryWorker(hosted.spec, self.checkpoint_dir, self.transport,
                                                     hosted.publish_to)
                    else:
                        worker.close()
                        hosted.source = self._new_source(hosted)
                except Exception as exc:  # noqa: BLE001 - one stream's restart must not stop the supervisor
                    log.error("host: stream %s: restarting its %s failed (%s: %s); retrying",
                              hosted.spec.stream_id, role, type(exc).__name__, exc)
                    continue
                hosted.restarts[role] += 1
