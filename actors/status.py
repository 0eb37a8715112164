"""Stream status, typed end to end: the source and memory actors each report their part, the controller
joins them into one `StreamStatus`, and the front-ends (API JSON and metrics, CLI, demo) read its fields.

Every URL and error text in here is already redacted. A part is None while its actor restarts, and then
its fields are None in the status (the JSON shape never changes).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

# A stream's state as clients see it: the source's life cycle (stream.frames.SourceState values), plus
# "starting" (actors not up yet) and "restarting" (an actor is being restarted by Ray).
STARTING, RESTARTING, FAILED = "starting", "restarting", "failed"
STREAMING, STALLED = "streaming", "stalled"  # stalled: the source streams, its memory refuses every chunk


@dataclass(frozen=True)
class SourceTelemetry:
    """What a stream's source actor reports: counters since that actor started.

    state: starting | connecting | streaming | reconnecting | ended | failed (the stream's status adds
    stalled: streaming, but its memory refuses every chunk). frames_in: frames decoded;
    frames_sampled: frames the sampler kept; dropped: sampled frames given up because the pipeline was
    behind (live only: in the source's buffer, or whole chunks the encoder did not take in time);
    reconnects: reconnections that got frames again; reconnect_attempts: every try after a disconnect or a
    failed open; chunks_sent: chunks the encoder took; last_error: redacted text of the last source error,
    kept after a recovery, with its wall-clock time last_error_at; state_since: wall-clock time the current
    state began.
    """

    state: str
    frames_in: int = 0
    frames_sampled: int = 0
    dropped: int = 0
    reconnects: int = 0
    chunks_sent: int = 0
    last_error: str | None = None
    reconnect_attempts: int = 0
    last_error_at: float | None = None
    state_since: float | None = None


@dataclass(frozen=True)
class MemoryTelemetry:
    """What a stream's memory actor reports.

    tokens_seen / tokens_held: visual tokens fed to the compressor / held in its newest snapshot;
    compression_ratio: seen / held (None before the first chunk); t_start, t_end: media seconds the newest
    snapshot spans; snapshot_version; chunks: chunks compressed; bad_messages: messages rejected (bad
    shape, dtype, kind); sequence_gaps: chunks that never arrived (holes in the sequence numbers); lag_s:
    wall-clock seconds from decoding the newest frame to holding it; restored: resumed from a checkpoint;
    stage_s: mean seconds per chunk by pipeline stage; stage_totals: {stage: [total seconds, chunks]};
    stalled: why every chunk has been refused for a while (None: chunks are being applied); refused_peers:
    peers whose handshake the tokens socket refused (no or wrong CURVE keys).
    """

    tokens_seen: int = 0
    tokens_held: int = 0
    compression_ratio: float | None = None
    t_start: float | None = None
    t_end: float | None = None
    snapshot_version: int | None = None
    chunks: int = 0
    bad_messages: int = 0
    sequence_gaps: int = 0
    lag_s: float | None = None
    restored: bool = False
    stage_s: dict[str, float] = field(default_factory=dict)
    stage_totals: dict[str, list[float]] = field(default_factory=dict)
    stalled: str | None = None
    refused_peers: int = 0


@dataclass(frozen=True)
class StreamStatus:
    """One stream as every front-end sees it (`to_dict()` is the API's JSON object, keys always present)."""

    stream_id: str
    url: str
    state: str
    live: bool
    method: str
    sample_rate_hz: float
    frames_in: int | None = None
    frames_sampled: int | None = None
    measured_sample_hz: float | None = None
    chunks_sent: int | None = None
    dropped: int | None = None
    reconnects: int | None = None
    reconnect_attempts: int | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    state_age_s: float | None = None
    lag_s: float | None = None
    tokens_held: int | None = None
    tokens_seen: int | None = None
    compression_ratio: float | None = None
    t_start: float | None = None
    t_end: float | None = None
    snapshot_version: int | None = None
    chunks_compressed: int | None = None
    bad_messages: int | None = None
    sequence_gaps: int | None = None
    restored: bool | None = None
    stage_s: dict[str, float] | None = None
    stage_totals: dict[str, list[float]] | None = None
    state_reason: str | None = None  # why the stream is in its state (stalled: the memory's refusal)
    refused_peers: int | None = None

    @classmethod
    def join(cls, stream_id: str, url: str, live: bool, method: str, sample_rate_hz: float,
             source: SourceTelemetry | None, memory: MemoryTelemetry | None, elapsed_s: float) -> StreamStatus:
        """The status from its two parts (None = that actor is restarting); `elapsed_s` since the stream was
        added gives the measured sample rate. `url` must already be redacted."""
        state = RESTARTING if source is None or memory is None else source.state
        out: dict[str, Any] = {}
        if source is not None:
            out.update(frames_in=source.frames_in, frames_sampled=source.frames_sampled,
                       measured_sample_hz=source.frames_sampled / max(elapsed_s, 1e-9),
                       chunks_sent=source.chunks_sent, dropped=source.dropped, reconnects=source.reconnects,
                       reconnect_attempts=source.reconnect_attempts, last_error=source.last_error,
                       last_error_at=source.last_error_at,
                       state_age_s=None if source.state_since is None else max(0.0, time.time() - source.state_since))
        if memory is not None:
            out.update(lag_s=memory.lag_s, tokens_held=memory.tokens_held, tokens_seen=memory.tokens_seen,
                       compression_ratio=memory.compression_ratio, t_start=memory.t_start, t_end=memory.t_end,
                       snapshot_version=memory.snapshot_version, chunks_compressed=memory.chunks,
                       bad_messages=memory.bad_messages, sequence_gaps=memory.sequence_gaps,
                       restored=memory.restored, stage_s=memory.stage_s, stage_totals=memory.stage_totals,
                       refused_peers=memory.refused_peers)
            if memory.stalled is not None and state == STREAMING:  # the source runs, the memory takes nothing
                state, out["state_reason"] = STALLED, memory.stalled
        return cls(stream_id=stream_id, url=url, state=state, live=live, method=method,
                   sample_rate_hz=sample_rate_hz, **out)

    @property
    def failed(self) -> bool:
        """The source gave up for good (see last_error); the memory still answers about what it holds."""
        return self.state == FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, one key per field."""
        return dataclasses.asdict(self)


# A replica's state: answering its control calls, or not (dead, restarting, or its node gone).
ALIVE, UNAVAILABLE = "alive", "unavailable"
ROLES = ("encoder", "llm")


@dataclass(frozen=True)
class ReplicaStatus:
    """One encoder or LLM replica as the controller sees it (`to_dict()`: the API's JSON object).

    role: "encoder" | "llm"; name: its Ray actor name; node_id: the Ray node it runs on (None while
    unavailable); state: alive | unavailable; streams: streams assigned to it (encoder) or whose newest
    snapshot it holds (llm); frames_per_s: frames encoded per second since the previous report (encoder);
    batch_fill: mean frames per batch / encoder.batch_frames since the previous report (encoder); queue_depth:
    token messages waiting for a memory that is not taking them (encoder); answers_in_flight: answers being
    generated now (llm; questions beyond llm.max_concurrent wait in Ray's queue, which the replica cannot see). Fields that do not apply to the role are None.
    """

    role: str
    name: str
    node_id: str | None
    state: str
    streams: int = 0
    frames_per_s: float | None = None
    batch_fill: float | None = None
    queue_depth: int | None = None
    answers_in_flight: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ScaleEvent:
    """One change of a replica pool: at (wall clock), role, action, the replica concerned, replicas of that
    role after it, and why. Actions: "add" / "remove" (a replica; "add refused" / "remove refused" when
    autoscale could not), "reassign" (a stream to another replica: the replica named; why names the stream),
    "move" (a stream's source and memory started again on its replica's node). Why: requested, autoscale: ...,
    replica lost, rebalance, its node died."""

    at: float
    role: str
    action: str
    replica: str
    replicas: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
