"""Thin Ray shells over the plain workers: the same classes, run as actors that die loudly when a loop breaks.

Resources are set per actor by the controller with `.options(...)` (num_gpus from the config, 0 CPUs for the
per-stream actors so many streams fit on a small node); restarts come from `max_restarts`.

A source actor is given its stream's memory actor and asks it where the stream stands each time it starts,
Ray's restarts included (they re-run the constructor with the same arguments): a restarted source goes on
from the memory's newest frame instead of from 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.config import EncoderConfig, LLMConfig, StreamSpec, TransportConfig
from actors.workers.encoder import EncoderWorker
from actors.workers.llm import LLMWorker
from actors.workers.memory import MemoryWorker
from actors.workers.source import SourceWorker
from compressor.snapshot import Snapshot
from stream.timestamps import ResumePoint
from vlm import ModelConfig

log = logging.getLogger(__name__)

RESUME_WAIT_S = 60.0  # a starting source waits this long for its memory (which may be restarting too)


class Located:
    """Where an actor runs: its node, host address and process (tests, telemetry, `kill -9` drills)."""

    def where(self) -> dict[str, Any]:
        return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class SourceActor(SourceWorker, Located):
    def __init__(self, spec: StreamSpec, image_size: int, transport: TransportConfig,
                 target: str | None = None, memory: Any = None) -> None:
        SourceWorker.__init__(self, spec, image_size, transport, target, _resume_point(spec, memory),
                              exit_on_crash=True)


def _resume_point(spec: StreamSpec, memory: Any) -> ResumePoint | None:
    """The stream's memory's resume point (None: no memory given, or it holds nothing yet). A memory that
    does not answer in RESUME_WAIT_S leaves the source to start from the beginning, said in the log."""
    if memory is None:
        return None
    try:
        return ray.get(memory.resume_point.remote(), timeout=RESUME_WAIT_S)
    except (RayError, GetTimeoutError) as exc:
        log.warning("source %s: its memory did not say where the stream stands (%s); starting from the "
                    "beginning, so chunks older than the memory's are refused until they pass it",
                    spec.stream_id, type(exc).__name__)
        return None


@ray.remote
class EncoderActor(EncoderWorker, Located):
    def __init__(self, model: ModelConfig, encoder: EncoderConfig, transport: TransportConfig,
                 port_file: str | None = None) -> None:
        EncoderWorker.__init__(self, model, encoder, transport, port_file, exit_on_crash=True)


@ray.remote
class MemoryActor(MemoryWorker, Located):
    def __init__(self, spec: StreamSpec, checkpoint_dir: str, transport: TransportConfig,
                 publish_to: list[str] | None = None) -> None:
        MemoryWorker.__init__(self, spec, checkpoint_dir, transport, publish_to, exit_on_crash=True)


@ray.remote
class LLMActor(LLMWorker, Located):
    def __init__(self, model: ModelConfig, llm: LLMConfig, transport: TransportConfig) -> None:
        LLMWorker.__init__(self, model, llm, transport, exit_on_crash=True)

    @ray.method(num_returns="streaming")
    def ask(self, stream_id: str, messages: Any, max_tokens: int = 64, temperature: float = 0.0,
            stop: list[str] | None = None, window: Snapshot | None = None) -> Iterator[dict[str, Any]]:
        """Streaming generator: one object per event (see LLMWorker.ask). `window` may be passed as the
        ObjectRef of the stream memory's `window` call: Ray resolves it (across nodes) before this runs."""
        yield from LLMWorker.ask(self, stream_id, messages, max_tokens, temperature, stop, window)
