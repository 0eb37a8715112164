"""An in-process Backend made of the pipeline's real parts, without Ray: synthetic video -> the tiny
LLaVA-OneVision encoder -> streaming Token Dynamics -> the Answerer. Tests feed chunks explicitly
(`feed`), so what a stream holds is known exactly and no thread runs behind the test's back. Its replica
pools are bookkeeping over that same work (which replica encoded which chunk, answers which question)."""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.config import MAX_REPLICAS, EncoderConfig, stream_spec
from actors.errors import ScaleRefused, StreamExists, StreamNotFound, StreamNotReady, WindowUnavailable
from actors.status import ALIVE, ROLES, MemoryTelemetry, ReplicaStatus, ScaleEvent, SourceTelemetry, StreamStatus
from configs.schema import ConfigError
from compressor.keymap_view import latest_key_map
from vlm.base import VisionLanguageModel
from vlm.serving import Answerer
from compressor.segments import SegmentStore, WindowOutOfRange
from compressor.streaming import StreamingTokenDynamics
from stream.synthetic import SyntheticVideo


@dataclass
class _Stream:
    spec: Any
    video: SyntheticVideo
    compressor: StreamingTokenDynamics
    segments: SegmentStore  # as the memory actor keeps them (questions about a window)
    frames_in: int = 0


@dataclass
class _Replica:
    """One in-process replica's counters: batches and frames it encoded (encoder) since `started`
    (time.monotonic; the controller reports them since its previous report), answers it is generating now (llm)."""

    role: str
    name: str
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    batches: int = 0
    answering: int = 0


def replica_name(role: str, index: int) -> str:
    """The replica's name: local-encoder, local-encoder-2, ... (the first of a role keeps the plain name)."""
    return f"local-{role}" if index == 0 else f"local-{role}-{index + 1}"


class LocalBackend:
    """Backend over real parts, in-process. `fail_next_ask` makes the next answer raise mid-way (after one
    delta) to test the API's behaviour when the pipeline breaks; `pace_s` spaces the events out like a slow
    model; `open_answers` counts answers started and not yet closed.

    Replica pools: one replica per role to start; this in-process "cluster" hosts at most `capacity` of a
    role (more is ScaleRefused, as a cluster without free resources answers). Stream i (in the order added)
    is encoded by encoder replica i mod n; every LLM replica holds every stream, and a question goes to the
    one with the fewest answers in flight. `scale` records one "add" or "remove" event per replica.
    """

    capacity = 4

    def __init__(self, model: VisionLanguageModel, max_prompt_tokens: int | None = None) -> None:
        self.model = model
        self.answerer = Answerer(model, max_tokens_limit=32, max_prompt_tokens=max_prompt_tokens)
        self.streams: dict[str, _Stream] = {}
        self.fail_next_ask: Exception | None = None
        self.pace_s = 0.0
        self.open_answers = 0
        self._folder = tempfile.TemporaryDirectory(prefix="tokdyn-local-backend-")  # segments, removed with self
        self.pools: dict[str, list[_Replica]] = {role: [_Replica(role, replica_name(role, 0))] for role in ROLES}
        self.events: list[ScaleEvent] = []
        self.event_totals: collections.Counter[tuple[str, str]] = collections.Counter()

    def feed(self, stream_id: str, chunks: int = 1, frames_per_chunk: int = 2) -> None:
        """Decode, encode and compress `chunks` chunks of the stream's synthetic video."""
        s = self.streams[stream_id]
        encoder = self._encoder_of(stream_id)
        for _ in range(chunks):
            frames, stamps = zip(*(s.video.frame(s.frames_in + i) for i in range(frames_per_chunk)))
            s.frames_in += frames_per_chunk
            tokens = self.model.encode_frames(np.stack(frames))  # [T, gh, gw, D]
            s.compressor.update(tokens.float(), np.asarray(stamps))
            s.segments.update(tokens.float(), np.asarray(stamps))
            encoder.frames += frames_per_chunk
            encoder.batches += 1  # one chunk, one forward pass

    def _get(self, stream_id: str) -> _Stream:
        if stream_id not in self.streams:
            raise StreamNotFound(f"expected one of {sorted(self.streams)}")
        return self.streams[stream_id]

    async def add_stream(self, spec: dict[str, Any]) -> StreamStatus:
        parsed = stream_spec(spec)
        if parsed.stream_id in self.streams:
            raise StreamExists(f"stream {parsed.stream_id!r} already exists")
        size = self.model.image_size  # frames at the encoder's resolution: no resize step needed
        video = SyntheticVideo(width=size, height=size, fps=10.0)
        segments = SegmentStore(f"{self._folder.name}/{parsed.stream_id}", parsed.compressor)
        self.streams[parsed.stream_id] = _Stream(parsed, video, StreamingTokenDynamics(parsed.compressor), segments)
        return await self.stream_status(parsed.stream_id)

    async def list_streams(self) -> list[StreamStatus]:
        return [await self.stream_status(k) for k in self.streams]

    async def stream_status(self, stream_id: str) -> StreamStatus:
        s = self._get(stream_id)
        c = s.compressor
        held = c.snapshot().tokens_held if c.frames_seen else 0
        source = SourceTelemetry("streaming", frames_in=s.frames_in, frames_sampled=c.frames_seen)
        memory = MemoryTelemetry(tokens_seen=c.tokens_seen, tokens_held=held, lag_s=0.0,
                                 compression_ratio=c.tokens_seen / held if held else None, t_start=c.t_start,
                                 t_end=c.t_end, snapshot_version=c.version)
        return StreamStatus.join(stream_id, s.spec.url, s.spec.is_live, s.spec.compressor.method,
                                 s.spec.sample_rate_hz, source, memory, elapsed_s=1.0)

    async def remove_stream(self, stream_id: str) -> None:
        self._get(stream_id)
        del self.streams[stream_id]

    async def ask(self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
                  stop: list[str] | None = None, window: tuple[float, float] | None = None
                  ) -> AsyncIterator[dict[str, Any]]:
        s = self._get(stream_id)
        c = s.compressor
        if c.frames_seen == 0:
            raise StreamNotReady("no chunk compressed yet")
        snap = c.snapshot()
        if window is not None:  # as the LLM actor does: a memory of the window from the segments
            try:
                snap = s.segments.window(window[0], window[1], snap.version).snapshot
            except WindowOutOfRange as exc:
                raise WindowUnavailable(f"stream {stream_id!r}: {exc}") from None
        visual = np.concatenate([snap.base, snap.recent])  # [K + R, D]
        extra = {"span": {"t_start": snap.t_start, "t_end": snap.t_end}, "snapshot_version": snap.version}
        events = self.answerer.stream(visual, messages, max_tokens, temperature, extra, stop)
        failure, self.fail_next_ask = self.fail_next_ask, None
        llm = min(self.pools["llm"], key=lambda r: r.answering)  # first by name among the least busy
        self.open_answers += 1
        llm.answering += 1
        try:
            while (event := await asyncio.to_thread(next, events, None)) is not None:
                yield event
                if failure is not None:
                    raise failure
                await asyncio.sleep(self.pace_s)
        finally:
            self.open_answers -= 1
            llm.answering -= 1

    async def latest_frame(self, stream_id: str, at: float | None = None) -> dict[str, Any] | None:
        s = self._get(stream_id)
        if s.frames_in == 0:
            return None
        newest = s.frames_in - 1  # frame i is at media time i / fps
        index = newest if at is None else min(max(round(at * s.video.fps), 0), newest)
        image, t = s.video.frame(index)
        return {"t": t, "image": image}

    async def key_map(self, stream_id: str) -> dict[str, Any] | None:
        c = self._get(stream_id).compressor
        view = latest_key_map(c, c.t_end)
        return None if view is None else view.to_dict()

    async def models(self) -> list[str]:
        return [self.model.name]

    async def ready(self) -> bool:
        return True

    def _encoder_of(self, stream_id: str) -> _Replica:
        pool = self.pools["encoder"]
        return pool[list(self.streams).index(stream_id) % len(pool)]

    def _status(self, replica: _Replica) -> ReplicaStatus:
        if replica.role == "llm":
            return ReplicaStatus("llm", replica.name, "local", ALIVE, streams=len(self.streams),
                                 answers_in_flight=replica.answering)
        served = sum(self._encoder_of(k) is replica for k in self.streams)
        elapsed_s = max(time.monotonic() - replica.started, 1e-9)
        fill = replica.frames / replica.batches / EncoderConfig().batch_frames if replica.batches else None
        return ReplicaStatus("encoder", replica.name, "local", ALIVE, streams=served,
                             frames_per_s=replica.frames / elapsed_s, batch_fill=fill, queue_depth=0)

    async def replicas(self) -> list[ReplicaStatus]:
        return [self._status(r) for role in ROLES for r in self.pools[role]]

    async def scale_events(self) -> list[ScaleEvent]:
        return list(self.events)

    async def scale_event_totals(self) -> dict[tuple[str, str], int]:
        return dict(self.event_totals)

    async def scale(self, role: str, count: int) -> list[ReplicaStatus]:
        if role not in ROLES:
            raise ConfigError(f"role: expected one of {list(ROLES)}, got {role!r}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPLICAS:
            raise ConfigError(f"replicas: expected an integer 1..{MAX_REPLICAS}, got {count!r}")
        if count > self.capacity:
            raise ScaleRefused(f"{role}: this in-process cluster hosts at most {self.capacity} replicas, "
                               f"asked for {count}")
        pool = self.pools[role]
        while len(pool) != count:
            if len(pool) < count:
                pool.append(_Replica(role, replica_name(role, len(pool))))
                action, name = "add", pool[-1].name
            else:
                action, name = "remove", pool.pop().name
            self.events.append(ScaleEvent(time.time(), role, action, name, len(pool), "requested"))
            self.event_totals[role, action] += 1
        return await self.replicas()
