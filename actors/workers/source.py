"""Source: one stream's decode -> sample -> chunk loop (stream.sampling.chunks) pushing FRAMES messages.

Wire: PUSH (connected to the encoder's frames endpoint) sends
    arrays {"frames": [T, S, S, 3] uint8, "timestamps": [T] f64 media s, "arrivals": [T] f64 wall clock}
    meta {"sent_at": wall clock, "timings": {"source_wait": s blocked waiting for the chunk (decode + pacing),
                                             "decode": s inside the decoder since the previous chunk}}
and an EOS when a finite file ends. A file waits for the encoder (nothing lost); a live source gives up on a
chunk after `transport.send_timeout_ms` and counts it as dropped (freshest wins).

A source started on a stream whose memory already holds frames (`resume`, the memory's `resume_point()`) goes
on after them: media time and sequence numbers continue, a file from where the memory is (stream/sources.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque

from actors.config import StreamSpec, TransportConfig
from actors.workers.loop import POLL_MS, LoopThread
from actors.status import FAILED, STARTING, SourceTelemetry
import scenes.video  # noqa: F401  registers the scene:// camera with stream.sources (stream/ imports no scenes)
from stream.codec import Message, chunk_to_message, eos
from stream.frames import Chunk
from stream.sampling import chunks
from stream.sources import SourceError, open_source
from stream.timestamps import ResumePoint
from stream.transport import Socket

log = logging.getLogger(__name__)

# Sampled chunks kept by reference for the console's frame view (`frame`): enough to find the frame the
# memory's newest key map belongs to, which trails the source by the encoder's latency. No copy is made.
RECENT_CHUNKS = 4
END_LINGER_MS = 10_000  # how long the queued end of a finished file may take to reach the encoder


class SourceWorker:
    """Runs one stream's chunk loop in a thread and pushes the chunks to the encoder."""

    def __init__(self, spec: StreamSpec, image_size: int, transport: TransportConfig, target: str | None = None,
                 resume: ResumePoint | None = None, exit_on_crash: bool = False) -> None:
        self.spec = spec
        self.resume = resume
        self.image_size = image_size
        self.transport = transport
        self._lock = threading.Lock()
        self._target = target
        self._running = threading.Event()
        self._running.set()
        self._source = None
        self._sock: Socket | None = None  # owned by the loop thread
        self._sock_target: str | None = None
        self._state = STARTING
        self._error: str | None = None
        self._error_at: float | None = None
        self.chunks_sent = 0
        self.send_drops = 0  # frames of live chunks the encoder did not take in time
        self._recent: deque[Chunk] = deque(maxlen=RECENT_CHUNKS)
        self._loop = LoopThread(f"source-{spec.stream_id}", self._run, exit_on_crash)

    # --- control (any thread) -------------------------------------------------------------------------

    def set_target(self, endpoint: str) -> None:
        """Where to push frames: the encoder's `push+connect:...` address (switched between chunks)."""
        with self._lock:
            self._target = endpoint

    def pause(self) -> None:
        """Hold the next chunk back until `resume()` (a live source keeps decoding and drops what ages)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def status(self) -> SourceTelemetry:
        """Counters of the source (decoded, sampled, dropped, reconnects), its state and last error."""
        source = self._source
        if source is None or self._state == FAILED:  # not opened yet, or failed to open
            return SourceTelemetry(self._state, dropped=self.send_drops, chunks_sent=self.chunks_sent,
                                   last_error=self._error, last_error_at=self._error_at)
        s = source.status()
        return SourceTelemetry(s.state.value, frames_in=s.decoded, frames_sampled=s.sampled,
                               dropped=s.dropped + self.send_drops, reconnects=s.reconnects,
                               reconnect_attempts=s.reconnect_attempts, chunks_sent=self.chunks_sent,
                               last_error=self._error or s.last_error,
                               last_error_at=self._error_at if self._error else s.last_error_at,
                               state_since=s.state_since)

    def frame(self, at: float | None = None) -> dict | None:
        """A recently sampled frame, as the encoder gets it: the newest, or the one nearest media time `at`
        (seconds) among the last RECENT_CHUNKS chunks. {"t": media s, "image": [S, S, 3] uint8}, or None
        before the first chunk."""
        # (media s, frame) of every kept frame, oldest first: a few dozen at most, views not copies
        kept = [(float(t), chunk.frames[i]) for chunk in list(self._recent) for i, t in enumerate(chunk.timestamps)]
        if not kept:
            return None
        t, image = kept[-1] if at is None else min(kept, key=lambda item: abs(item[0] - at))
        return {"t": t, "image": image}

    def close(self) -> None:
        self._running.set()
        source = self._source
        if source is not None:
            source.close()  # unblocks a read waiting on the network
        self._loop.stop()

    # --- loop thread ----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        spec = self.spec
        config = dataclasses.replace(spec.source, realtime=spec.is_live, loop=spec.loop)
        try:
            self._source = open_source(spec.url, config, resume=self.resume)
            waited = time.perf_counter()
            decoded_s = 0.0  # the source's decoder seconds when the previous chunk went out
            # the EOS follows the last chunk's seq, so a receiver sees a lost last chunk as a gap
            next_seq = self.resume.seq if self.resume is not None else 0
            for chunk in chunks(self._source, spec.sample_rate_hz, spec.frames_per_chunk, self.image_size,
                                spec.stream_id):
                blocked = time.perf_counter() - waited
                self._recent.append(chunk)
                while not self._running.wait(POLL_MS / 1000):
                    if stop.is_set():
                        return
                timings = {"source_wait": blocked}
                decode_s = self._source.status().decode_s
                if decode_s is not None:  # None: synthetic frames are drawn, not decoded
                    timings["decode"], decoded_s = decode_s - decoded_s, decode_s
                msg = chunk_to_message(chunk, {"sent_at": time.time(), "timings": timings})
                next_seq = chunk.seq + 1
                if self._deliver(msg, stop):
                    self.chunks_sent += 1
                if stop.is_set():
                    return
                waited = time.perf_counter()
            self._deliver(eos(spec.stream_id, next_seq, "end of file"), stop)  # right after the last chunk
        except SourceError as exc:
            # A wrong URL or a dead file is the user's problem, not the actor's: report it, don't restart.
            self._state, self._error, self._error_at = FAILED, str(exc), time.time()
            log.warning("source %s failed: %s", spec.stream_id, exc)
        finally:
            if self._sock is not None:
                # A file that ended still has its last chunks and the EOS queued: let ZeroMQ deliver them
                # (linger 0 would discard them). A stopped stream waits for nothing.
                self._sock.close(linger_ms=0 if stop.is_set() else END_LINGER_MS)
            if self._source is not None:
                self._source.close()

    def _current_socket(self, stop: threading.Event) -> Socket | None:
        """The PUSH socket for the current target, reopened when the target moved; waits for a first one."""
        while True:
            with self._lock:
                target = self._target
            if target is not None:
                break
            if stop.wait(POLL_MS / 1000):
                return None
        if target != self._sock_target:
            if self._sock is not None:
                self._sock.close()
            self._sock = Socket.open(target, hwm=self.transport.hwm, keys=self.transport.keys)
            self._sock_target = target
        return self._sock

    def _deliver(self, msg: Message, stop: threading.Event) -> bool:
        """Live: one bounded try (drop counted). File: retry (following target moves, e.g. an encoder
        restart) until the encoder takes it or we are stopped: nothing lost."""
        while not stop.is_set():
            sock = self._current_socket(stop)
            if sock is None:
                return False
            if self.spec.is_live:
                if sock.send(msg, timeout_ms=self.transport.send_timeout_ms):
                    return True
                self.send_drops += len(msg.arrays.get("frames", ()))  # frames, like the source's own drops
                return False
            if sock.send(msg, timeout_ms=POLL_MS):
                return True
        return False
