"""Encoder: frame chunks of every stream -> visual tokens, batched across streams, routed per stream.

Wire: PULL (bound, one for all sources) receives FRAMES messages
    arrays {"frames": [T, S, S, 3] uint8, "timestamps": [T] f64, "arrivals": [T] f64}, meta {"timings": {...}}
and one PUSH per stream (connected to that stream's memory actor) sends TOKENS messages
    arrays {"tokens": [T, gh, gw, D] (model dtype on the wire), "timestamps", "arrivals"}, meta {"timings"}.
EOS messages are forwarded unchanged. A malformed chunk is counted and skipped.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actors.config import EncoderConfig, TransportConfig
from actors.workers.loop import POLL_MS, LoopThread, bind_host, bind_spec, open_sticky
from actors.workers.meta import BadMeta, with_transport
from vlm import ModelConfig
from stream.codec import Kind, Message, ProtocolError, message_to_chunk
from stream.frames import Chunk
from stream.tensors import to_wire_array
from stream.transport import Socket

log = logging.getLogger(__name__)

PENDING_PER_STREAM = 4  # token messages kept per stream while its memory actor is away (then oldest dropped)
MAX_CHUNK_FRAMES = 256  # frames in one chunk (sources send a few); more is a bad message, not a long stall


@dataclass
class StreamCounters:
    chunks: int = 0
    frames: int = 0
    dropped: int = 0


def check_chunk(msg: Message, size: int) -> Chunk:
    """The chunk of a FRAMES message whose frames are [1..MAX_CHUNK_FRAMES, size, size, 3] uint8;
    ProtocolError names what is wrong (message_to_chunk checks kind, arrays, dtypes and shapes)."""
    chunk = message_to_chunk(msg)
    if chunk.frames.shape[1:3] != (size, size) or not 0 < len(chunk.frames) <= MAX_CHUNK_FRAMES:
        raise ProtocolError(f"stream {msg.stream_id} seq {msg.seq}: expected frames [1..{MAX_CHUNK_FRAMES}, {size}, "
                            f"{size}, 3] uint8, got {list(chunk.frames.shape)}")
    return chunk


class EncoderWorker:
    """Owns the vision model and the sockets; one loop thread batches, encodes and routes."""

    def __init__(self, model: ModelConfig, encoder: EncoderConfig, transport: TransportConfig,
                 port_file: str | None = None, exit_on_crash: bool = False) -> None:
        """port_file: where the frames port is recorded, so that a restarted encoder binds it again."""
        # Imported here, not at module top: the controller imports this module only to create the actor,
        # and should not pay for loading transformers.
        from vlm import Encoder, load_vlm

        self.vlm = load_vlm(model)
        self._encoder = Encoder(self.vlm, model.encode_batch_frames)
        self.config = encoder
        self.transport = transport
        host = bind_host(transport.bind)
        self._frames_in = (open_sticky("pull", host, Path(port_file), transport.hwm, transport.keys) if port_file
                           else Socket.open(bind_spec("pull", host), hwm=transport.hwm, keys=transport.keys))
        self._routes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._counters: dict[str, StreamCounters] = collections.defaultdict(StreamCounters)
        self.bad_chunks = 0
        self.unrouted = 0  # chunks of streams the controller has not routed (removed, or not ours)
        self.batches = 0
        self.frames = 0  # frames encoded (all streams)
        self.queued = 0  # token messages waiting for a memory that is not taking them
        self.encode_s = 0.0
        self._loop = LoopThread("encoder", self._run, exit_on_crash)

    # --- control (any thread) -------------------------------------------------------------------------

    def info(self) -> dict:
        """Where sources send frames and what the model expects: endpoint, image_size, grid, hidden_size."""
        return {
            "frames_endpoint": self._frames_in.peer_spec(),
            "image_size": self.vlm.image_size,
            "grid": list(self.vlm.grid),
            "hidden_size": self.vlm.hidden_size,
            "model": self.vlm.name,
        }

    def set_routes(self, routes: dict[str, str]) -> None:
        """Replace the routing table: stream id -> address of that stream's memory (`push+connect:...`)."""
        with self._lock:
            self._routes = dict(routes)

    def stats(self) -> dict:
        with self._lock:
            per_stream = {sid: vars(c).copy() for sid, c in self._counters.items()}
        return {"batches": self.batches, "frames": self.frames, "batch_frames": self.config.batch_frames,
                "queued": self.queued, "bad_chunks": self.bad_chunks + self._frames_in.stats.bad,
                "unrouted": self.unrouted, "encode_s": self.encode_s,
                "streams": per_stream, "loop_error": self._loop.error}

    def close(self) -> None:
        self._loop.stop()

    # --- loop thread ----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        outs: dict[str, Socket] = {}  # endpoint -> PUSH socket
        pending: dict[str, collections.deque[Message]] = collections.defaultdict(
            lambda: collections.deque(maxlen=PENDING_PER_STREAM))
        try:
            while not stop.is_set():
                batch = self._collect()
                with self._lock:
                    routes = dict(self._routes)
                self._sync_sockets(outs, routes)
                for msg in self._encode(self._routed(batch, routes)):
                    queue = pending[msg.stream_id]
                    if len(queue) == queue.maxlen:
                        self._counters[msg.stream_id].dropped += 1
                    queue.append(msg)
                self._flush(pending, outs, routes)
                self.queued = sum(len(q) for q in pending.values())
        finally:
            self._frames_in.close()
            for sock in outs.values():
                sock.close()

    def _collect(self) -> list[Message]:
        """Messages for one batch: wait up to POLL_MS for the first, then up to max_wait_ms for more frames."""
        first = self._frames_in.recv(POLL_MS)
        if first is None:
            return []
        batch = [first]
        frames = _frame_count(first)
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while frames < self.config.batch_frames:
            left = int((deadline - time.monotonic()) * 1000)
            msg = self._frames_in.recv(max(left, 0)) if left > 0 else self._frames_in.recv(0)
            if msg is None:
                break
            batch.append(msg)
            frames += _frame_count(msg)
        return batch

    def _routed(self, batch: list[Message], routes: dict[str, str]) -> list[Message]:
        """The messages of streams that have a route. Others are counted, not encoded: nobody would take
        their tokens, and per-stream state for ids nobody routed would let any sender grow it forever."""
        kept = [msg for msg in batch if msg.stream_id in routes]
        self.unrouted += len(batch) - len(kept)
        return kept

    def _encode(self, batch: list[Message]) -> list[Message]:
        """TOKENS (and forwarded EOS) messages for a batch, in arrival order (a stream's EOS must not overtake
        its last chunk, or the memory sees a gap); bad chunks counted and skipped."""
        good: list[tuple[Message, np.ndarray, dict[str, float]]] = []
        order: list[Message | int] = []  # an EOS as itself, a good chunk as its index in `good`
        for msg in batch:
            if msg.kind is Kind.EOS:
                order.append(msg)
                continue
            try:
                frames = check_chunk(msg, self.vlm.image_size).frames
                good.append((msg, frames, with_transport(msg.meta, time.time())))  # meta is untrusted too
                order.append(len(good) - 1)
            except (ProtocolError, BadMeta) as exc:
                self.bad_chunks += 1
                log.warning("encoder: skipped bad chunk #%d: %s", self.bad_chunks, exc)
        tokens = self._tokens(good)
        return [item if isinstance(item, Message) else tokens[item] for item in order
                if isinstance(item, Message) or item < len(tokens)]

    def _tokens(self, good: list[tuple[Message, np.ndarray, dict[str, float]]]) -> list[Message]:
        """One TOKENS message per good chunk, in order; none when the model rejects the batch."""
        if not good:
            return []
        start = time.perf_counter()
        try:
            encoded = self._encoder.encode([(msg.stream_id, frames) for msg, frames, _ in good])  # [T_i, gh, gw, D]
        except ValueError as exc:  # the model's InputError: frames it cannot take; skip them, keep serving
            self.bad_chunks += len(good)
            log.warning("encoder: skipped a batch of %d chunks the model rejected: %s", len(good), exc)
            return []
        elapsed = time.perf_counter() - start
        self.encode_s += elapsed
        self.batches += 1
        total = sum(len(f) for _, f, _ in good)
        self.frames += total
        out = []
        for (msg, frames, timings), (_, part) in zip(good, encoded):
            timings["encode"] = elapsed * len(frames) / total  # this chunk's share of the batch
            counters = self._counters[msg.stream_id]
            counters.chunks += 1
            counters.frames += len(frames)
            out.append(Message(Kind.TOKENS, msg.stream_id, msg.seq,
                               {"timings": timings, "sent_at": time.time()},
                               {"tokens": to_wire_array(part), "timestamps": msg.arrays["timestamps"],
                                "arrivals": msg.arrays["arrivals"]}))
        return out

    def _sync_sockets(self, outs: dict[str, Socket], routes: dict[str, str]) -> None:
        """Open PUSH sockets for new route endpoints and close those no stream uses any more."""
        wanted = set(routes.values())
        for endpoint in list(outs):
            if endpoint not in wanted:
                outs.pop(endpoint).close()
        for endpoint in wanted - set(outs):
            outs[endpoint] = Socket.open(endpoint, hwm=self.transport.hwm, keys=self.transport.keys)

    def _flush(self, pending: dict[str, collections.deque[Message]], outs: dict[str, Socket],
               routes: dict[str, str]) -> None:
        """Send what each stream's memory can take now (never blocks: one slow stream must not stall all)."""
        for sid in list(pending):
            queue = pending[sid]
            if sid not in routes:
                self._counters[sid].dropped += len(queue)
                del pending[sid]  # the stream was removed: nobody will take its tokens
                continue
            sock = outs[routes[sid]]
            while queue and sock.send(queue[0], timeout_ms=0):
                queue.popleft()


def _frame_count(msg: Message) -> int:
    frames = msg.arrays.get("frames")
    return int(frames.shape[0]) if frames is not None and frames.ndim >= 1 else 0
