"""Controller: starts the shared actors (encoder, LLM), adds and removes streams at run time, reports telemetry.

Wiring is declarative: a reconcile thread re-sends, once per RECONCILE_S, every actor the addresses it
should talk to (sources -> encoder, encoder -> each memory, memories -> LLM). All those calls are
idempotent, so an actor that Ray restarted on a new port is re-wired within a second, whoever it was.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.config import PipelineConfig, StreamSpec, stream_spec
from actors.errors import StreamExists, StreamNotFound
from actors.loop import LoopThread
from actors.remote import EncoderActor, LLMActor, MemoryActor, SourceActor
from actors.status import STARTING, MemoryTelemetry, SourceTelemetry, StreamStatus
from stream.config import redact_url

log = logging.getLogger(__name__)

CONTROLLER_NAME = "tokdyn-controller"
LLM_NAME = "tokdyn-llm"
RECONCILE_S = 1.0  # how often the wiring is re-asserted
MAX_PENDING_CALLS = 256  # fire-and-forget wiring calls still unanswered before a round is skipped
CALL_TIMEOUT_S = 10.0  # a control call on a healthy actor answers well within this
START_TIMEOUT_S = 300.0  # actor start-up (process + imports + model load) on a busy 2-core machine


@dataclass
class StreamActors:
    spec: StreamSpec
    source: Any  # ActorHandle
    memory: Any  # ActorHandle
    added_at: float


class Controller:
    """Owns the pipeline's actors. Thread-safe: the Ray shell runs it with several concurrent calls."""

    def __init__(self, config: PipelineConfig, exit_on_crash: bool = False) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._streams: dict[str, StreamActors] = {}
        self._route_table: dict[str, str] = {}  # stream id -> its memory's tokens address
        restarts = config.ray.max_restarts
        self.encoder = EncoderActor.options(
            max_restarts=restarts, num_cpus=config.encoder.num_cpus, num_gpus=config.encoder.num_gpus,
            resources=config.encoder.resources or None,
        ).remote(config.model, config.encoder, config.transport, str(config.checkpoint_path / "encoder.port"))
        self.llm = LLMActor.options(
            name=LLM_NAME, max_restarts=restarts, max_concurrency=config.llm.max_concurrent,
            num_cpus=config.llm.num_cpus, num_gpus=config.llm.num_gpus, resources=config.llm.resources or None,
        ).remote(config.model, config.llm, config.transport, str(config.checkpoint_path))
        self.encoder_info = ray.get(self.encoder.info.remote(), timeout=START_TIMEOUT_S)
        self.llm_endpoint = ray.get(self.llm.endpoint.remote(), timeout=START_TIMEOUT_S)
        self.reconciles = 0
        self._pending: list[Any] = []  # refs of wiring calls not answered yet (a hung actor must not pile up)
        for spec in config.streams:
            self.add_stream(spec)
        self._loop = LoopThread("controller-reconcile", self._reconcile_forever, exit_on_crash)

    # --- streams --------------------------------------------------------------------------------------

    def add_stream(self, spec: StreamSpec | dict) -> StreamStatus:
        """Start a stream's memory and source actors and wire them in; returns its status.

        Raises ConfigError (a ValueError naming the key) for a bad spec, StreamExists for a duplicate id.
        """
        spec = stream_spec(spec)
        with self._lock:
            if spec.stream_id in self._streams:
                raise StreamExists(f"stream {spec.stream_id!r}: already exists; remove it first")
            self._streams[spec.stream_id] = None  # type: ignore[assignment]  # reserve the id
        started: list[Any] = []
        try:
            options = {"max_restarts": self.config.ray.max_restarts, "num_cpus": 0,
                       "resources": self.config.stream_resources or None}
            memory = MemoryActor.options(**options).remote(
                spec, self.config.checkpoint_dir, self.config.transport, self.llm_endpoint)
            started.append(memory)
            tokens = ray.get(memory.endpoints.remote(), timeout=START_TIMEOUT_S)["tokens"]
            self._routes_with(spec.stream_id, tokens)
            source = SourceActor.options(**options).remote(
                spec, self.encoder_info["image_size"], self.config.transport, self.encoder_info["frames_endpoint"])
        except BaseException:
            for handle in started:  # a half-started stream must not leave actors behind
                ray.kill(handle, no_restart=True)
            with self._lock:
                del self._streams[spec.stream_id]
                self._route_table.pop(spec.stream_id, None)
            raise
        with self._lock:
            self._streams[spec.stream_id] = StreamActors(spec, source, memory, time.time())
        self.llm.set_streams.remote(self.stream_ids())
        log.info("stream %s added (%s)", spec.stream_id, redact_url(spec.url))
        return self._status(self._entry(spec.stream_id), SourceTelemetry(STARTING), MemoryTelemetry())

    def remove_stream(self, stream_id: str) -> None:
        """Stop a stream, delete its checkpoint and kill its actors (no restart)."""
        with self._lock:
            entry = self._streams.get(stream_id)
            if entry is None:
                raise StreamNotFound(f"stream {stream_id!r}: expected one of {sorted(self._streams)}")
            del self._streams[stream_id]
            self._route_table.pop(stream_id, None)
            routes = dict(self._route_table)
        self.llm.set_streams.remote(self.stream_ids())
        self.encoder.set_routes.remote(routes)
        for handle, call in ((entry.source, entry.source.close), (entry.memory, entry.memory.close)):
            try:
                ray.get(call.remote(**({"delete_checkpoint": True} if handle is entry.memory else {})),
                        timeout=CALL_TIMEOUT_S)
            except (RayError, GetTimeoutError) as exc:
                log.warning("stream %s: clean close failed (%s), killing", stream_id, exc)
            ray.kill(handle, no_restart=True)
        log.info("stream %s removed", stream_id)

    def stream_ids(self) -> list[str]:
        with self._lock:
            return sorted(sid for sid, entry in self._streams.items() if entry is not None)

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
        entry = self._entry(stream_id)
        source_ref, memory_ref = entry.source.status.remote(), entry.memory.status.remote()  # both at once
        source, memory = self._try_get(source_ref), self._try_get(memory_ref)
        return self._status(entry, source, memory)

    @staticmethod
    def _status(entry: StreamActors, source: SourceTelemetry | None, memory: MemoryTelemetry | None,
                ) -> StreamStatus:
        spec = entry.spec
        return StreamStatus.join(spec.stream_id, redact_url(spec.url), spec.is_live, spec.compressor.method,
                                 spec.sample_rate_hz, source, memory, time.time() - entry.added_at)

    def stream_handles(self, stream_id: str) -> dict:
        """The stream's actor handles {"source", "memory"} (tests and tools: pids, digests)."""
        entry = self._entry(stream_id)
        return {"source": entry.source, "memory": entry.memory}

    # --- shared actors --------------------------------------------------------------------------------

    def llm_handle(self) -> Any:
        return self.llm

    def encoder_handle(self) -> Any:
        return self.encoder

    def ready(self) -> bool:
        return True

    def shutdown(self) -> None:
        """Remove every stream (keeping checkpoints) and stop the shared actors."""
        self._loop.stop()
        with self._lock:
            entries = [e for e in self._streams.values() if e is not None]
            self._streams.clear()
        for entry in entries:
            for handle in (entry.source, entry.memory):
                ray.kill(handle, no_restart=True)
        for handle in (self.encoder, self.llm):
            ray.kill(handle, no_restart=True)

    # --- wiring ---------------------------------------------------------------------------------------

    def _entry(self, stream_id: str) -> StreamActors:
        with self._lock:
            entry = self._streams.get(stream_id)
            if entry is None:
                raise StreamNotFound(f"stream {stream_id!r}: expected one of {sorted(self._streams)}")
            return entry

    def _routes_with(self, stream_id: str, tokens_endpoint: str) -> None:
        with self._lock:
            self._route_table[stream_id] = tokens_endpoint
            routes = dict(self._route_table)
        ray.get(self.encoder.set_routes.remote(routes), timeout=CALL_TIMEOUT_S)

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
        """Re-assert every address once (idempotent). Actors that are restarting are skipped this round."""
        if self._pending:
            _, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            if len(self._pending) > MAX_PENDING_CALLS:
                log.warning("reconcile: %d wiring calls unanswered, skipping a round", len(self._pending))
                return
        with self._lock:
            entries = {sid: e for sid, e in self._streams.items() if e is not None}
        # Ask everyone at once, then collect: one restarting actor must not delay the others' wiring.
        info_ref, llm_ref = self.encoder.info.remote(), self.llm.endpoint.remote()
        endpoint_refs = {sid: e.memory.endpoints.remote() for sid, e in entries.items()}
        info, llm_endpoint = self._try_get(info_ref), self._try_get(llm_ref)
        endpoints = {sid: self._try_get(ref, timeout=1.0) for sid, ref in endpoint_refs.items()}
        with self._lock:
            for sid in list(self._route_table):
                if sid not in entries:
                    del self._route_table[sid]
            for sid, ep in endpoints.items():
                if ep is not None and self._streams.get(sid) is not None:  # not removed meanwhile
                    self._route_table[sid] = ep["tokens"]
            routes = dict(self._route_table)
        calls = []
        if info is not None:
            self.encoder_info = info
            calls.append(self.encoder.set_routes.remote(routes))
        if llm_endpoint is not None:
            self.llm_endpoint = llm_endpoint
            calls.append(self.llm.set_streams.remote(sorted(entries)))
        for entry in entries.values():
            if llm_endpoint is not None:
                calls.append(entry.memory.set_publish_target.remote(llm_endpoint))
            if info is not None:
                calls.append(entry.source.set_target.remote(info["frames_endpoint"]))
        self._pending += calls
        self.reconciles += 1


@ray.remote
class ControllerActor(Controller):
    """Named "tokdyn-controller" in the config's namespace; CLI and API find it with ray.get_actor."""

    def __init__(self, config: PipelineConfig) -> None:
        Controller.__init__(self, config, exit_on_crash=True)
