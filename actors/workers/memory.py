"""Memory: one stream's streaming compressor state, checkpointed every chunk, published as snapshots.

Wire: PULL (bound; the encoder connects) receives TOKENS messages
    arrays {"tokens": [T, gh, gw, D], "timestamps": [T] media s, "arrivals": [T] wall clock}, meta {"timings"}
and one PUB per LLM replica (connected to that replica's SUB endpoint) sends SNAPSHOT messages (seq = snapshot version,
`Snapshot.to_wire()` meta + arrays, plus "lag_s"). The newest snapshot is re-published every
REPUBLISH_S while idle, so a (re)started LLM gets it without waiting for new video.

Checkpoint: `<checkpoint_dir>/<stream_id>.ckpt` holds `StreamCompressor.to_bytes()`, rewritten atomically
(tmp file + os.replace) after every chunk; a restarted actor restores it before it takes new tokens, and
binds the tokens port recorded in `<stream_id>.port` again, so the encoder's queued chunks reach it.
`<stream_id>.resume` (JSON, written after each checkpoint) keeps what the state does not: when the newest
frame arrived and the next chunk seq, so a source restarted with its memory (a node lost) counts a camera's
outage in its media clock and goes on numbering. A
checkpoint made with another method, budget, K range or recent window is refused (kept aside as `.bad`, the
stream starts afresh), never re-fitted.

Segments (token_dynamics with `compressor.segment_s > 0`): every chunk also goes to the stream's
`compressor.segments.SegmentStore` in `<checkpoint_dir>/<stream_id>.segments/`, which seals a segment every
`segment_s` media seconds and applies retention. A question about a time window gets its memory from here
(`window`: built from that folder with the live memory's K and sent to the LLM replica over Ray's object
transfer), so no other process, and no other node, reads this node's disk. Removing the stream deletes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from actors.config import StreamSpec, TransportConfig
from actors.errors import StreamNotReady, WindowUnavailable
from actors.workers.loop import POLL_MS, LoopThread, StageTimes, bind_host, open_sticky
from compressor.serial import write_atomic
from compressor.snapshot import Snapshot
from actors.status import MemoryTelemetry
from actors.workers.meta import seconds, with_transport
from stream.codec import Kind, Message
from stream.tensors import from_wire_array
from stream.timestamps import ResumePoint
from stream.transport import SequenceTracker, Socket

log = logging.getLogger(__name__)

REPUBLISH_S = 1.0  # idle re-publish period of the newest snapshot (late or restarted subscribers)
STALL_AFTER_S = 10.0  # a stream whose every chunk was refused for this long reports itself stalled


class MediaAhead(ValueError):
    """A live chunk whose media time runs further ahead of the arrival clock than the stream allows."""


def segments_folder(checkpoint_dir: str | Path, stream_id: str) -> Path:
    """Where a stream's segments live (next to its checkpoint)."""
    return Path(checkpoint_dir).expanduser() / f"{stream_id}.segments"


def checkpoint_file(checkpoint_dir: str | Path, stream_id: str) -> Path:
    return Path(checkpoint_dir).expanduser() / f"{stream_id}.ckpt"


def state_digest(data: bytes) -> str:
    """Short fingerprint of a serialised compressor state (base, key map, counters)."""
    return hashlib.sha256(data).hexdigest()[:16]


class MemoryWorker:
    """Owns one stream's compressor, its checkpoint and its sockets; one loop thread updates and publishes."""

    def __init__(self, spec: StreamSpec, checkpoint_dir: str, transport: TransportConfig,
                 publish_to: list[str] | None = None, exit_on_crash: bool = False) -> None:
        self.spec = spec
        self.transport = transport
        self.path = checkpoint_file(checkpoint_dir, spec.stream_id)
        self.restored_digest: str | None = None
        # Imported here, not at module top: a source actor that asks this memory where to resume loads this
        # module through Ray, and should not pay for torch (~130 MB per stream).
        from compressor.segments import SegmentStore

        self.compressor = self._restore_or_new()
        c = spec.compressor
        self.segments = SegmentStore(segments_folder(checkpoint_dir, spec.stream_id), c) \
            if c.segment_s and c.method == "token_dynamics" else None
        self._tokens_in = open_sticky("pull", bind_host(transport.bind), self.path.with_suffix(".port"), transport.hwm,
                                      transport.keys)
        self._lock = threading.Lock()
        self._publish_to = list(publish_to or [])
        self.times = StageTimes()
        self.chunks = self.compressor.snapshot().version if self.compressor.frames_seen else 0  # one per chunk
        self.bad_messages = 0
        self.lag_s: float | None = None
        self._sequence = SequenceTracker()  # gaps = chunks lost between source and here (live drops, restarts)
        self._last_t = self.compressor.t_end  # media time of the newest frame (the console's key map view)
        self._last_arrival: float | None = None  # wall clock that frame arrived (the .resume file, not the state)
        self._restore_resume()
        # The arrival clock: the newest media time held and the wall time it arrived (this process's clock
        # since; the .resume file's across a restart). Live media time may not run far ahead of it.
        self._anchor = (float(self._last_t), self._last_arrival or time.time()) if self.compressor.frames_seen \
            else None
        self._refusing_since: float | None = None  # wall time of the first chunk refused since one was applied
        self._refusal: str | None = None  # why the latest chunk of this stream was refused
        self._snapshot = self.compressor.snapshot() if self.compressor.frames_seen else None
        self._loop = LoopThread(f"memory-{spec.stream_id}", self._run, exit_on_crash)

    def _restore_or_new(self):
        """The checkpointed compressor if this stream has one with the same method, else a fresh one."""
        from compressor.registry import make_stream_compressor, restore_stream_compressor  # as in __init__

        if self.path.exists():
            data = self.path.read_bytes()
            try:
                restored = restore_stream_compressor(data, self.spec.compressor)
            except ValueError as exc:  # corrupt, or another method/budget: keep it aside, never crash-loop
                log.error("memory %s: refused checkpoint %s (%s), starting fresh", self.spec.stream_id,
                          self.path, exc)
                os.replace(self.path, self.path.with_suffix(".bad"))
                return make_stream_compressor(self.spec.compressor)
            self.restored_digest = state_digest(data)
            log.info("memory %s: restored %d frames from %s", self.spec.stream_id, restored.frames_seen, self.path)
            return restored
        return make_stream_compressor(self.spec.compressor)

    def _restore_resume(self) -> None:
        """When the newest frame arrived and the next seq expected, from the `.resume` file written after each
        checkpoint; kept only when it belongs to the restored state (a crash between the two writes, or a
        torn or foreign file, leaves them unknown, as before the file existed)."""
        if not self.compressor.frames_seen:
            return
        try:
            saved = json.loads(self.path.with_suffix(".resume").read_bytes())
            if float(saved["t"]) != float(self._last_t) or isinstance(saved["seq"], bool):
                return
            arrival, seq = seconds(saved["arrival"]), int(saved["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        self._last_arrival = arrival if arrival is not None and arrival <= time.time() else None
        if seq >= 0:  # a source still running sends on from here: chunks lost while this was down count
            self._sequence.next_seq[self.spec.stream_id] = seq

    # --- control (any thread) -------------------------------------------------------------------------

    def endpoints(self) -> dict:
        """{"tokens": address the encoder pushes this stream's tokens to}."""
        return {"tokens": self._tokens_in.peer_spec()}

    def resume_point(self) -> ResumePoint | None:
        """Where a source (re)started on this stream goes on from: the newest media time held, when that
        frame arrived and the next chunk seq expected; None before the first frame."""
        with self._lock:
            if not self.compressor.frames_seen:
                return None
            return ResumePoint(float(self._last_t), self._last_arrival,
                               self._sequence.next_seq.get(self.spec.stream_id, 0))

    def set_publish_targets(self, endpoints: list[str]) -> None:
        """Where snapshots go: every LLM replica's `pub+connect:...` address (re-set when replicas come and go
        or restart on a new port)."""
        with self._lock:
            self._publish_to = list(endpoints)

    def status(self) -> MemoryTelemetry:
        """Telemetry: tokens held vs seen, compression ratio, span, snapshot version, lag, gaps, stage times.
        Every state figure comes from one published snapshot, so a reader never sees tokens counted whose
        snapshot is not out yet (the compressor's own counters move mid-update)."""
        snap = self._snapshot
        held = snap.tokens_held if snap is not None else 0
        seen = snap.tokens_seen if snap is not None else 0
        return MemoryTelemetry(
            tokens_seen=seen, tokens_held=held, compression_ratio=(seen / held) if held else None,
            t_start=snap.t_start if snap else None, t_end=snap.t_end if snap else None,
            snapshot_version=snap.version if snap else None, chunks=self.chunks,
            bad_messages=self.bad_messages + self._tokens_in.stats.bad,
            sequence_gaps=self._sequence.missing(self.spec.stream_id), lag_s=self.lag_s,
            restored=self.restored_digest is not None, stage_s=self.times.means(),
            stage_totals={k: [v, self.times.counts[k]] for k, v in self.times.totals.items()},
            stalled=self._stalled(), refused_peers=self._tokens_in.stats.refused,
        )

    def _stalled(self) -> str | None:
        """Why the stream is stalled: every chunk of it refused for STALL_AFTER_S (None: it is not)."""
        since = self._refusing_since
        if since is None or time.time() - since < STALL_AFTER_S:
            return None
        return f"every chunk refused for {time.time() - since:.0f} s: {self._refusal}"

    def window(self, t_start: float, t_end: float) -> Snapshot:
        """A memory of media time [t_start, t_end] alone, built from this stream's segments (cost bounded by the
        window's segments, not the stream's length) with the live memory's K and version.

        Raises:
            StreamNotReady: no chunk compressed yet.
            WindowUnavailable: this memory keeps no segments, or none holds the window (retention dropped it,
                or the stream has not reached it).
        """
        from compressor.segments import WindowOutOfRange, window_from_folder  # as in __init__

        sid, live = self.spec.stream_id, self._snapshot
        if self.segments is None:
            raise WindowUnavailable(f"stream {sid!r}: expected segments to answer a time window, got a memory "
                                    "that keeps none (compressor.segment_s 0, or a method other than token_dynamics)")
        if live is None:
            raise StreamNotReady(f"stream {sid!r}: no chunk compressed yet")
        try:
            return window_from_folder(self.segments.folder, t_start, t_end, max(live.base.shape[0], 1),
                                      live.version).snapshot
        except WindowOutOfRange as exc:
            raise WindowUnavailable(f"stream {sid!r}: {exc}") from None

    def keymap_view(self) -> dict | None:
        """The newest frame's key map and each base token's first/last seen (compressor.keymap_view), JSON-ready;
        None before the first chunk or for a method without a key map."""
        from compressor.keymap_view import latest_key_map  # as in __init__

        with self._lock:
            view = latest_key_map(self.compressor, self._last_t)
        return None if view is None else view.to_dict()

    def state_digest(self) -> str:
        """Fingerprint of the current state; equals `state_digest(checkpoint bytes)` when nothing is pending."""
        with self._lock:
            return state_digest(self.compressor.to_bytes())

    def close(self, delete_checkpoint: bool = False) -> None:
        """Stop the loop; with `delete_checkpoint` the stream's memory is gone for good (stream removed)."""
        self._loop.stop()
        if delete_checkpoint:
            self.path.unlink(missing_ok=True)
            self.path.with_suffix(".port").unlink(missing_ok=True)
            self.path.with_suffix(".resume").unlink(missing_ok=True)
            if self.segments is not None:
                shutil.rmtree(self.segments.folder, ignore_errors=True)

    # --- loop thread ----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        pubs: dict[str, Socket] = {}  # LLM replica endpoint -> PUB connected to it
        last_publish = 0.0
        try:
            while not stop.is_set():
                with self._lock:
                    targets = list(self._publish_to)
                if set(targets) != set(pubs):
                    for endpoint in set(pubs) - set(targets):
                        pubs.pop(endpoint).close()
                    for endpoint in set(targets) - set(pubs):
                        pubs[endpoint] = Socket.open(endpoint, hwm=self.transport.hwm, keys=self.transport.keys)
                    last_publish = 0.0  # a new replica gets the newest snapshot now
                msg = self._tokens_in.recv(POLL_MS)
                updated = msg is not None and self._apply(msg)
                if pubs and self._snapshot is not None and (
                        updated or time.monotonic() - last_publish > REPUBLISH_S):
                    self._publish(list(pubs.values()))
                    last_publish = time.monotonic()
        finally:
            self._tokens_in.close()
            for pub in pubs.values():
                pub.close()

    def _apply(self, msg: Message) -> bool:
        """Update + checkpoint for a TOKENS message; True if the state changed. Bad input is counted."""
        try:
            if msg.stream_id != self.spec.stream_id:  # anyone can reach the port: not ours, not applied
                raise ValueError(f"expected stream {self.spec.stream_id!r}, got {msg.stream_id!r:.80}")
            if msg.kind is Kind.EOS:
                self._sequence.observe(msg)
                return False
            if msg.kind is not Kind.TOKENS or "tokens" not in msg.arrays or "timestamps" not in msg.arrays:
                raise ValueError(f"expected a tokens message with tokens + timestamps, got {msg.kind.value} "
                                 f"with {sorted(msg.arrays)}")
            timings = with_transport(msg.meta, time.time())  # BadMeta (a ValueError) before any change
            tokens = from_wire_array(msg.arrays["tokens"])  # [T, gh, gw, D]
            timestamps = np.asarray(msg.arrays["timestamps"], dtype=np.float64)
            start = time.perf_counter()
            newest_arrival = _newest_arrival(msg.arrays.get("arrivals"))
            self._check_lead(timestamps)
            with self._lock:
                self.compressor.update(tokens, timestamps)
                self._last_t = float(timestamps[-1])
                self._last_arrival = newest_arrival
                data = self.compressor.to_bytes()
            snapshot = self.compressor.snapshot()
            compress_s = time.perf_counter() - start
        except (ValueError, TypeError) as exc:
            # The compressor validates shapes/dtypes/timestamps and raises ValueError subclasses:
            # one bad chunk must not take the stream's memory down.
            self.bad_messages += 1
            if msg.stream_id == self.spec.stream_id:
                self._refusal = f"{exc}"[:200]
                self._refusing_since = self._refusing_since or time.time()
            log.warning("memory %s: skipped bad message #%d (seq %d): %s", self.spec.stream_id,
                        self.bad_messages, msg.seq, exc)
            return False
        self._anchor, self._refusing_since = (self._last_t, time.time()), None
        self._sequence.observe(msg)  # only a message that was applied: a hostile seq must not fake gaps
        write_atomic(self.path, data)
        resume = {"t": self._last_t, "arrival": newest_arrival, "seq": msg.seq + 1}
        write_atomic(self.path.with_suffix(".resume"), json.dumps(resume).encode(), durable=False)
        if self.segments is not None:
            try:
                self.segments.update(tokens, timestamps)
            except ValueError as exc:  # the live memory took the chunk: its segment copy must not undo that
                log.warning("memory %s: segment update failed: %s", self.spec.stream_id, exc)
        timings["compress"] = compress_s
        self.times.merge(timings)
        self.lag_s = seconds(time.time() - newest_arrival) if newest_arrival is not None else None
        self.chunks += 1
        self._snapshot = snapshot
        return True

    def _check_lead(self, timestamps: np.ndarray) -> None:
        """Live streams: raise MediaAhead when the chunk's newest media time runs more than
        `max_media_lead_s` ahead of the arrival clock (newest media time held + wall time since it came)."""
        if not self.spec.is_live or self._anchor is None or not len(timestamps):
            return
        newest = float(np.max(timestamps))
        media, wall = self._anchor
        ahead = newest - media - (time.time() - wall)
        if ahead > self.spec.max_media_lead_s:
            raise MediaAhead(f"media time {newest:.6g} s runs {ahead:.6g} s ahead of the arrival clock: expected "
                             f"at most max_media_lead_s = {self.spec.max_media_lead_s:g} s")

    def _publish(self, pubs: list[Socket]) -> None:
        """The newest snapshot to every LLM replica; a replica that is not taking messages misses it (never
        waits: it gets the next one, at the latest REPUBLISH_S later)."""
        meta, arrays = self._snapshot.to_wire()
        meta = dict(meta, lag_s=self.lag_s, published_at=time.time())
        msg = Message(Kind.SNAPSHOT, self.spec.stream_id, self._snapshot.version, meta, arrays)
        for pub in pubs:
            pub.send(msg, timeout_ms=0)


def _newest_arrival(arrivals: np.ndarray | None) -> float | None:
    """Wall-clock time the chunk's newest frame was decoded (from its [T] `arrivals`); None when the array is
    missing or holds no usable time (it arrives from the wire: any dtype, NaN, the future)."""
    if arrivals is None or arrivals.ndim != 1 or not len(arrivals) or arrivals.dtype.kind not in "iuf":
        return None
    newest = seconds(np.max(arrivals.astype(np.float64)).item())
    return newest if newest is not None and newest <= time.time() else None
