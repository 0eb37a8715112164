"""LLM: keeps the newest snapshot of every stream (SUB) and answers questions from it, streamed.

Wire: one SUB socket, bound; every stream's memory actor connects a PUB to it and sends SNAPSHOT messages.
Each answer takes the stream's newest snapshot once, at the start, and draws only on it (one consistent
version while compression goes on), and reports the media-time span that snapshot covers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from actors.config import LLMConfig, TransportConfig
from actors.errors import PipelineUnavailable, StreamNotFound, StreamNotReady, WindowUnavailable
from actors.workers.alerting import AlertEvaluator
from actors.workers.loop import POLL_MS, LoopThread, bind_host, bind_spec
from actors.workers.meta import optional_seconds
from vlm import ModelConfig
from compressor.snapshot import Snapshot
from stream.codec import Kind, Message
from stream.transport import Socket

log = logging.getLogger(__name__)

MAX_UNTOLD_STREAMS = 1024  # snapshots kept before the controller has named the streams (bounded: untrusted)


class SnapshotStore:
    """Newest snapshot per stream, for the streams the controller says exist (thread-safe)."""

    def __init__(self, fits: Callable[[Snapshot], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._streams: set[str] | None = None  # None until the controller has said which streams exist
        self._snapshots: dict[str, tuple[Snapshot, dict[str, Any]]] = {}
        self._fits = fits  # raises ValueError for a snapshot the model cannot read
        self.bad_snapshots = 0
        self.unfit_snapshots = 0  # well-formed snapshots refused because they do not fit the model

    def set_streams(self, stream_ids: list[str]) -> None:
        with self._lock:
            self._streams = set(stream_ids)
            for sid in set(self._snapshots) - self._streams:
                del self._snapshots[sid]  # a removed stream's memory must not answer questions any more

    def put(self, msg: Message) -> None:
        """Keep `msg`'s snapshot if its stream is known; a message that is not a valid snapshot is counted."""
        try:
            if msg.kind is not Kind.SNAPSHOT:
                raise ValueError(f"expected a snapshot message, got {msg.kind.value}")
            dtypes = sorted({str(a.dtype) for a in msg.arrays.values()})
            if dtypes != ["float32"]:  # what memories send; anything else was not made by one
                self.unfit_snapshots += 1
                raise ValueError(f"snapshot: expected float32 arrays, got {dtypes}")
            snapshot = Snapshot.from_wire(msg.meta, msg.arrays)
            extra = {"lag_s": optional_seconds(msg.meta, "lag_s"), "received_at": time.time()}
        except (ValueError, TypeError, KeyError) as exc:
            self.bad_snapshots += 1
            log.warning("llm: skipped bad snapshot #%d for %s: %s", self.bad_snapshots, msg.stream_id, exc)
            return
        try:
            if self._fits is not None:
                self._fits(snapshot)
        except ValueError as exc:  # never kept: a question would otherwise fail inside the model (a 500)
            self.bad_snapshots += 1
            self.unfit_snapshots += 1
            log.warning("llm: skipped bad snapshot #%d for %s: %s", self.bad_snapshots, msg.stream_id, exc)
            return
        with self._lock:
            if (msg.stream_id in self._streams if self._streams is not None
                    else msg.stream_id in self._snapshots or len(self._snapshots) < MAX_UNTOLD_STREAMS):
                self._snapshots[msg.stream_id] = (snapshot, extra)

    def get(self, stream_id: str) -> Snapshot:
        """The newest snapshot; StreamNotFound / StreamNotReady say why there is none."""
        with self._lock:
            if self._streams is None:  # restarted, the controller's stream list not here yet (<= 1 s)
                raise PipelineUnavailable("the LLM is starting: it has not received the stream list yet, "
                                          "retry shortly")
            if stream_id not in self._streams:
                raise StreamNotFound(f"stream {stream_id!r}: expected one of {sorted(self._streams)}")
            held = self._snapshots.get(stream_id)
        if held is None:  # (after an LLM restart the memory may hold one: PipelineClient tells which)
            raise StreamNotReady(f"stream {stream_id!r}: no snapshot yet (the first chunk is still on its way)")
        return held[0]

    def info(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {sid: {"version": s.version, "t_start": s.t_start, "t_end": s.t_end,
                          "tokens_held": s.tokens_held, **extra} for sid, (s, extra) in self._snapshots.items()}


class LLMWorker:
    """Owns the language model, the snapshot store and the SUB socket; `ask` streams answer events."""

    def __init__(self, model: ModelConfig, llm: LLMConfig, transport: TransportConfig,
                 exit_on_crash: bool = False) -> None:
        # Imported here, not at module top: the controller imports this module only to create the actor,
        # and should not pay for loading transformers.
        from vlm import Answerer, load_vlm

        self.vlm = load_vlm(model)
        self.prompt_cap = prompt_cap(llm.max_prompt_tokens, self.vlm.context_tokens, model.max_new_tokens)
        self.answerer = Answerer(self.vlm, max_tokens_limit=model.max_new_tokens, max_prompt_tokens=self.prompt_cap)
        self.config = llm
        self.store = SnapshotStore(self._fits)
        self._sub = Socket.open(bind_spec("sub", bind_host(transport.bind)), hwm=max(transport.hwm, 64),
                                keys=transport.keys)
        self.answers = 0
        self.in_flight = 0  # answers being generated now (the pool's routing and telemetry)
        self._count_lock = threading.Lock()
        self._loop = LoopThread("llm-snapshots", self._run, exit_on_crash)
        # alert rules of the streams the controller made this replica the owner of (actors/workers/alerting.py)
        self.alerts = AlertEvaluator(self.vlm, self.store, exit_on_crash)

    def endpoint(self) -> str:
        """The address memory actors publish snapshots to (`pub+connect:...`)."""
        return self._sub.peer_spec()

    def set_streams(self, stream_ids: list[str]) -> None:
        self.store.set_streams(stream_ids)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """Per stream: version, span, tokens held and lag of the snapshot an answer would use now."""
        return self.store.info()

    def models(self) -> list[str]:
        return [self.vlm.name]

    def stats(self) -> dict[str, Any]:
        """Answers started and in flight, streams with a snapshot here, snapshot messages rejected (bad kind or content; undecodable ones included),
        the prompt cap in tokens, and the snapshot loop's error if it died."""
        return {"answers": self.answers, "answers_in_flight": self.in_flight,
                "streams": len(self.store.info()), "bad_snapshots": self.store.bad_snapshots + self._sub.stats.bad,
                "unfit_snapshots": self.store.unfit_snapshots, "refused_peers": self._sub.stats.refused,
                "max_prompt_tokens": self.prompt_cap, "loop_error": self._loop.error}

    def ask(self, stream_id: str, messages: Any, max_tokens: int = 64, temperature: float = 0.0,
            stop: list[str] | None = None, window: Snapshot | None = None) -> Iterator[dict[str, Any]]:
        """Answer from the stream's newest snapshot: {"type": "delta", "text"} events, then one "done" event
        with usage, span {t_start, t_end}, snapshot_version, finish_reason, model, ttft_s. `stop`: up to 4
        strings the answer ends before (OpenAI's `stop`). `window`: the memory of a time window the stream's
        memory worker built (`MemoryWorker.window`; its span says which frames it covered), answered from
        instead of the live snapshot.

        Raises StreamNotFound / StreamNotReady before the first event, PipelineUnavailable while a restarted
        LLM catches up, the model's InputError for bad messages and PromptTooLong over the prompt cap.
        """
        snapshot = self.store.get(stream_id)  # taken once: the whole answer draws on this version
        if window is not None:
            try:
                self._fits(window)
            except ValueError as exc:
                raise WindowUnavailable(f"stream {stream_id!r}: the window's memory does not fit the model: "
                                        f"{exc}") from None
            snapshot = window
        visual = self.vlm.memory_tokens(snapshot)  # [K + R, D], motion fused when the model can
        extra = {"span": {"t_start": snapshot.t_start, "t_end": snapshot.t_end},
                 "snapshot_version": snapshot.version, "stream_id": stream_id}
        self.answers += 1
        return self._counted(self.answerer.stream(visual, messages, max_tokens=max_tokens,
                                                  temperature=temperature, extra=extra, stop=stop))

    def _counted(self, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """`events`, counted in `in_flight` from the first event until finished, failed or abandoned."""
        with self._count_lock:
            self.in_flight += 1
        try:
            yield from events
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def _fits(self, snapshot: Snapshot) -> None:
        """Raise ValueError unless the model can read `snapshot`: width = the model's hidden size, motion
        features the model's (or none), 1..prompt cap - 1 visual tokens."""
        if snapshot.base.shape[1] != self.vlm.hidden_size:
            raise ValueError(f"snapshot: expected tokens {self.vlm.hidden_size} wide (the model's hidden size), "
                             f"got {snapshot.base.shape[1]}")
        dynamics = getattr(self.vlm, "dynamics", None)
        features = snapshot.motion.shape[1]
        if dynamics is not None and features not in (0, dynamics.motion_dim):
            raise ValueError(f"snapshot: expected 0 or {dynamics.motion_dim} motion features, got {features}")
        if not 0 < snapshot.tokens_held < self.prompt_cap:
            raise ValueError(f"snapshot: expected 1..{self.prompt_cap - 1} visual tokens (K + R, under the prompt "
                             f"cap), got {snapshot.tokens_held}")

    def set_alert_rules(self, rules: dict[str, list[dict[str, str]]]) -> None:
        """The streams whose alert rules this replica evaluates: {stream id: [{"id", "prompt"}]} (controller)."""
        self.alerts.set_rules(rules)

    def drain_alert_results(self) -> list[dict[str, Any]]:
        """Alert evaluation results since the last call, oldest first (the controller collects them)."""
        return self.alerts.drain()

    def alert_status(self) -> dict[str, Any]:
        """Alert evaluations, snapshots checked and skipped, streams and rules owned here."""
        return self.alerts.status()

    def close(self) -> None:
        self.alerts.close()
        self._loop.stop()

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                for msg in self._sub.recv_newest(POLL_MS).values():
                    self.store.put(msg)
        finally:
            self._sub.close()


def prompt_cap(configured: int | None, context_tokens: int, max_new_tokens: int) -> int:
    """Prompt tokens allowed: the configured cap, else what the model's context leaves after the answer."""
    return configured if configured is not None else max(1, context_tokens - max_new_tokens)
