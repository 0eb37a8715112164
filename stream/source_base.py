"""The base of every video source: its state machine, counters, status events and buffer policy.

Subclasses (stream/sources.py: files and network streams through PyAV, generated video) implement
``_produce``, a generator of decoded frames, and call ``_emit`` for each; the base counts, timestamps,
samples (``set_sampler``), skips what comes before a resume point and paces them (``realtime``).

Threading: with the WAIT policy frames are decoded in the consumer's thread, on demand (nothing lost);
with DROP_OLDEST a reader thread decodes into a bounded ``FrameBuffer`` (freshest wins, drops counted).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Generator, Iterator

import av
import numpy as np

from stream.buffer import FrameBuffer
from stream.config import BufferPolicy, SourceConfig, redact_text, redact_url
from stream.frames import ALLOWED, Frame, SourceState, SourceStatus, StatusEvent
from stream.timestamps import ResumePoint, TimestampCorrector

log = logging.getLogger(__name__)

MAX_EVENTS = 32  # status events kept per source
CLOSE_JOIN_S = 15.0

EventCallback = Callable[[StatusEvent], None]


class SourceError(RuntimeError):
    """A source that cannot deliver frames (bad URL, unreadable or corrupt file); text is redacted."""


class Source:
    """Base class: state machine, counters, events, buffer policy. Subclasses implement ``_produce``."""

    live: bool = False  # frames come in real time (network stream or paced file): drop_oldest by default
    live_stream: bool = False  # a network stream that is live by nature (RTSP, RTMP, HLS, ...)
    network: bool = False  # read over the network: reconnects, and its errors may be a server's, not the data's

    def __init__(self, url: str, config: SourceConfig, on_event: EventCallback | None = None,
                 resume: ResumePoint | None = None) -> None:
        self._url = url
        self.url = redact_url(url)
        self.config = config
        self.resume = resume
        self._skip_until: float | None = None  # frames at or before this media time are decoded, not handed out
        self.policy = config.policy or (BufferPolicy.DROP_OLDEST if self.live else BufferPolicy.WAIT)
        self.paced = config.realtime and not self.live_stream  # a camera is paced by its own clock
        self._on_event = on_event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = SourceState.CONNECTING
        self._events: collections.deque[StatusEvent] = collections.deque([StatusEvent(time.time(), self._state)],
                                                                          maxlen=MAX_EVENTS)
        # reconnect_attempts: tries after a disconnect or failed open; reconnects: those that got frames again
        self._counts = {"decoded": 0, "sampled": 0, "reconnects": 0, "reconnect_attempts": 0}
        self._reconnecting = False  # a disconnect happened and no frame has arrived since
        self._info: dict[str, object] = {"fps": None, "width": None, "height": None, "codec": None}
        self._last_error: str | None = None
        self._last_error_at: float | None = None  # wall clock: the error stays after a recovery, with its time
        self._decode_s: float | None = None  # seconds inside the decoder; stays None where nothing is decoded
        self._buffer: FrameBuffer | None = None
        self._reader: threading.Thread | None = None
        self._iterator: Generator[Frame, None, None] | None = None
        self._keep: Callable[[float], bool] | None = None
        self._would_keep: Callable[[float | None, float], bool] | None = None  # decode only what is kept
        self._period_s: float | None = None

    # -- state machine -------------------------------------------------------------------------------
    def _set_state(self, state: SourceState, detail: str = "") -> None:
        with self._lock:
            if state == self._state or self._state in (SourceState.ENDED, SourceState.FAILED):
                return  # terminal states are final (close() may race with the reader thread)
            if state not in ALLOWED[self._state]:
                raise RuntimeError(f"source {self.url}: transition {self._state.value} -> {state.value} "
                                   "is not allowed")
            self._state = state
            event = StatusEvent(time.time(), state, detail)
            self._events.append(event)
            if state is SourceState.STREAMING and self._reconnecting:
                self._reconnecting = False
                self._counts["reconnects"] += 1
        log.info("source %s: %s %s", self.url, state.value, detail)
        if self._on_event is not None:
            self._on_event(event)

    def _error(self, exc: BaseException, doing: str) -> str:
        """Redacted one-line description of ``exc``; also stored as ``last_error``."""
        if isinstance(exc, (av.ExitError, av.error.TimeoutError)):  # PyAV's timeout interrupts the read
            exc = TimeoutError(f"no data for {self.config.read_timeout_s:g} s ({exc})")
        elif isinstance(exc, av.InvalidDataError) and self.network:
            # FFmpeg says "invalid data" also when a server's reply came too late or held no stream
            exc = av.InvalidDataError(exc.errno, f"{exc.strerror}: the server's reply was not a playable stream "
                                      f"within {self.config.read_timeout_s:g} s (late, or no such stream path)")
        text = redact_text(f"{doing}: {type(exc).__name__}: {exc}", self._url)
        self._note_error(text)
        return text

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._last_error, self._last_error_at = text, time.time()

    def _fail(self, text: str) -> SourceError:
        self._note_error(text)
        self._set_state(SourceState.FAILED, text)
        return SourceError(f"{self.url}: {text}")

    def status(self) -> SourceStatus:
        """Snapshot of state, counters (decoded, sampled, dropped, reconnects), last error and events."""
        with self._lock:
            return SourceStatus(url=self.url, state=self._state, dropped=self._buffer.dropped if self._buffer else 0,
                                last_error=self._last_error, last_error_at=self._last_error_at,
                                state_since=self._events[-1].time, events=tuple(self._events), decode_s=self._decode_s,
                                **self._counts, **self._info)  # type: ignore[arg-type]

    def set_sampler(self, keep: Callable[[float], bool],
                    would_keep: Callable[[float | None, float], bool] | None = None,
                    period_s: float | None = None) -> None:
        """Hand out only frames for which ``keep(pts)`` is true (e.g. ``Sampler(rate_hz).keep``); call before
        iterating. The others are still decoded (inter-frame codecs need them) but never converted to RGB
        nor buffered: a 30 fps camera sampled at 2 Hz skips 28 of 30 conversions, and drop_oldest drops
        only frames that would have been used.

        would_keep(prev, pts): the same decision asked before decoding (``Sampler.would_keep``), with the
        sampling period ``period_s``: a decoding source then skips what the sampler drops, as far as
        ``config.decode`` allows (stream/decode.py); without it every frame is decoded."""
        if self._iterator is not None or self._keep is not None:
            raise RuntimeError(f"source {self.url}: set_sampler must be called once, before iterating")
        self._keep, self._would_keep, self._period_s = keep, would_keep, period_s

    # -- iteration -------------------------------------------------------------------------------------
    def _produce(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __iter__(self) -> Generator[Frame, None, None]:
        if self._iterator is not None:
            raise RuntimeError(f"source {self.url} can be iterated once")
        self._iterator = self._iterate()
        return self._iterator

    def _iterate(self) -> Generator[Frame, None, None]:
        if self.policy is BufferPolicy.WAIT:
            yield from self._produce()
            return
        self._buffer = FrameBuffer(self.config.buffer_frames, self.config.max_staleness_s)
        self._reader = threading.Thread(target=self._read_into_buffer, name=f"source-{self.url}", daemon=True)
        self._reader.start()
        try:
            while (frame := self._buffer.get()) is not None:
                yield frame
        finally:
            self._stop.set()  # the consumer is gone (or done): the reader thread must not run on

    def _read_into_buffer(self) -> None:
        assert self._buffer is not None
        try:
            for frame in self._produce():
                self._buffer.put(frame)
        except BaseException as exc:  # handed to the consumer thread, which raises it
            self._buffer.finish(exc)
        else:
            self._buffer.finish()

    def _emit(self, image: Callable[[], np.ndarray], raw_pts: float | None, clock: TimestampCorrector,
              pace_from: list) -> Frame | None:
        """Count and timestamp one decoded frame; if the sampler keeps it, pace it (realtime) and convert it
        (``image()`` -> [H, W, 3] uint8 RGB), else return None. ``pace_from`` holds the (wall, media) anchor
        of the pacing clock, set on the first frame."""
        arrival = time.time()
        pts = clock.correct(raw_pts, arrival)
        with self._lock:
            index = self._counts["decoded"]
            self._counts["decoded"] += 1
        if self._skip_until is not None and pts <= self._skip_until:
            return None  # before the resume point: the memory has it already
        if self._keep is not None and not self._keep(pts):
            return None
        if self.paced:
            if not pace_from:
                pace_from.extend([arrival, pts])
            wait = pace_from[0] + (pts - pace_from[1]) - time.time()
            if wait > 0:
                self._stop.wait(wait)
                arrival = time.time()
        with self._lock:
            self._counts["sampled"] += 1
        return Frame(image(), pts, arrival, index)

    def close(self) -> None:
        """Stop reading (the reader thread exits within about a read timeout). Idempotent."""
        self._stop.set()
        if self._buffer is not None:
            self._buffer.finish()
        if self._iterator is not None:
            try:  # release the decoder and connection now, not when the iterator is garbage-collected
                self._iterator.close()
            except ValueError:
                pass  # running in another thread right now: it stops at the next frame (stop flag)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(CLOSE_JOIN_S)
        if self._state not in (SourceState.ENDED, SourceState.FAILED):
            self._set_state(SourceState.ENDED, "closed")

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
