"""Video sources behind one interface: files, RTSP and other FFmpeg URLs (PyAV), and synthetic video.

``open_source(url, config)`` returns a ``Source``; iterate it for ``Frame`` objects (RGB, corrected media
timestamps, wall-clock arrival). A live source reconnects forever with capped exponential backoff and
jitter, and treats end-of-file as a disconnect. ``status()`` gives the state machine's state, counters and
recent events, with every URL and error text redacted.

Threading: with the WAIT policy frames are decoded in the consumer's thread, on demand (nothing lost);
with DROP_OLDEST a reader thread decodes into a bounded ``FrameBuffer`` (freshest wins, drops counted).
``set_sampler`` moves sampling into the source, so frames it skips are never converted to RGB.

Resuming (``resume``, a ``ResumePoint``: the newest media time a stream's memory holds): a source started
again on a stream (a crash, or a move to another node) goes on from there, never from 0, because a memory
refuses time that goes backwards. A file or generated video continues its content: it seeks there and skips
what is not later (a looped file seeks within the loop and continues its clock). A camera cannot seek: its
clock continues from there, stepped by the wall time since that frame arrived.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import random
import threading
import time
from typing import Callable, Generator, Iterator
from urllib.parse import urlsplit

import av
import numpy as np

from stream.buffer import FrameBuffer
from stream.config import BufferPolicy, SourceConfig, redact_text, redact_url
from stream.frames import ALLOWED, Frame, SourceState, SourceStatus, StatusEvent
from stream.synthetic import SyntheticVideo
from stream.timestamps import ResumePoint, TimestampCorrector
from stream.urls import GENERATED_SCHEMES, NETWORK_SCHEMES, SCENE_SCHEME, is_live_url, resolve_url

log = logging.getLogger(__name__)

MAX_EVENTS = 32  # status events kept per source
MAX_LIVE_DECODE_ERRORS = 50  # consecutive undecodable packets before a live stream counts as disconnected
TRUNCATION_SLACK_S = 1.0  # a file ending this much (+5%) before its declared duration is truncated
CLOSE_JOIN_S = 15.0

EventCallback = Callable[[StatusEvent], None]


class SourceError(RuntimeError):
    """A source that cannot deliver frames (bad URL, unreadable or corrupt file); text is redacted."""


def backoff_delay(attempt: int, initial_s: float, max_s: float, jitter: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): min(max, initial * 2**attempt) scaled by a
    random factor in [1 - jitter, 1] so that many cameras dropped together do not retry in lockstep."""
    return min(max_s, initial_s * 2.0 ** min(attempt, 60)) * (1.0 - jitter * rng.random())


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

    def set_sampler(self, keep: Callable[[float], bool]) -> None:
        """Hand out only frames for which ``keep(pts)`` is true (e.g. ``Sampler(rate_hz).keep``); call before
        iterating. The others are still decoded (inter-frame codecs need them) but never converted to RGB
        nor buffered: a 30 fps camera sampled at 2 Hz skips 28 of 30 conversions, and drop_oldest drops
        only frames that would have been used."""
        if self._iterator is not None or self._keep is not None:
            raise RuntimeError(f"source {self.url}: set_sampler must be called once, before iterating")
        self._keep = keep

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


def _generated_video(url: str):
    """The frame generator behind a ``synthetic://`` or ``scene://`` URL (fps, width, height, num_frames,
    frame(index)). scenes/ is imported only for scene:// URLs: stream/ does not depend on it."""
    if urlsplit(url).scheme == SCENE_SCHEME:
        from scenes.video import SceneVideo

        return SceneVideo.from_url(url)
    return SyntheticVideo.from_url(url)


class SyntheticSource(Source):
    """Frames of generated video (``synthetic://`` moving squares, ``scene://`` scenes with known truth,
    scenes/) at exactly ``i / fps`` seconds; paced when ``config.realtime``."""

    def __init__(self, url: str, config: SourceConfig, on_event: EventCallback | None = None,
                 resume: ResumePoint | None = None) -> None:
        self.video = _generated_video(url)
        self.live = config.realtime
        super().__init__(url, config, on_event, resume)
        self._info.update(fps=self.video.fps, width=self.video.width, height=self.video.height, codec="synthetic")

    def _image(self, index: int) -> np.ndarray:
        return self.video.frame(index)[0]

    def _produce(self) -> Iterator[Frame]:
        clock, pace_from = TimestampCorrector(self.video.fps), []
        self._set_state(SourceState.STREAMING)
        index = 0 if self.resume is None else math.floor(self.resume.t * self.video.fps) + 1  # the next frame
        while not self._stop.is_set() and (self.video.num_frames is None or index < self.video.num_frames):
            frame = self._emit(functools.partial(self._image, index), index / self.video.fps, clock, pace_from)
            if frame is not None:
                yield frame
            index += 1
        if self._state is not SourceState.ENDED:
            self._set_state(SourceState.ENDED, "end of synthetic video")


class AvSource(Source):
    """Anything FFmpeg opens: files (read as fast as consumed, or paced, optionally looped) and network
    URLs (RTSP over TCP/UDP, HTTP, HLS, ...) with timeouts and reconnect-forever."""

    def __init__(self, url: str, config: SourceConfig, on_event: EventCallback | None = None,
                 resume: ResumePoint | None = None) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        self.network = scheme in NETWORK_SCHEMES
        self.live_stream = is_live_url(url)
        self.live = self.live_stream or config.realtime
        self._path = url[len("file://"):] if scheme == "file" else url
        super().__init__(url, config, on_event, resume)
        self._rng = random.Random()
        self._decode_s = 0.0

    def _open(self) -> "av.container.InputContainer":
        cfg = self.config
        if not self.network:
            return av.open(self._path)
        options = {"fflags": "nobuffer", "analyzeduration": "500000"} if self.live_stream else {}  # low latency
        if urlsplit(self._url).scheme.lower().startswith("rtsp"):
            options.update(rtsp_transport=cfg.transport, timeout=str(int(cfg.read_timeout_s * 1e6)))
        else:
            options["rw_timeout"] = str(int(cfg.read_timeout_s * 1e6))
        return av.open(self._url, options=options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s))

    def _produce(self) -> Iterator[Frame]:
        attempt, opened_once = 0, False
        clock: TimestampCorrector | None = None
        pace_from: list = []
        while not self._stop.is_set():
            if self._state is SourceState.RECONNECTING:
                self._set_state(SourceState.CONNECTING)
            try:
                container = self._open()
            except (av.FFmpegError, OSError) as exc:
                text = self._error(exc, "open failed")
                if not self.network or not (opened_once or self.config.retry_first_open):
                    raise self._fail(text) from None
                attempt = self._backoff(attempt, text)
                continue
            opened_once = True
            decoded_before = self._counts["decoded"]
            try:
                stream = self._video_stream(container)
                if clock is None:
                    clock = TimestampCorrector(self._info["fps"], live=self.live_stream)  # type: ignore[arg-type]
                    if self.resume is not None:
                        self._resume_in(container, stream, clock, self.resume)
                finished = yield from self._decode(container, stream, clock, pace_from)
                reason = "end of stream (treated as a disconnect)"
            except (av.FFmpegError, OSError, EOFError) as exc:
                if not self.network:
                    raise self._fail(self._error(exc, "decode failed")) from None
                finished, reason = False, self._error(exc, "read failed")
            finally:
                container.close()
            if self._stop.is_set():
                break
            if finished:
                if self.config.loop and not self.network:
                    continue
                self._set_state(SourceState.ENDED, "end of file")
                return
            if self._counts["decoded"] > decoded_before:
                attempt = 0  # the stream worked for a while: start the backoff over
            attempt = self._backoff(attempt, reason)
        if self._state is not SourceState.FAILED:
            self._set_state(SourceState.ENDED, "closed")

    def _resume_in(self, container, stream, clock: TimestampCorrector, resume: ResumePoint) -> None:
        """Go on after ``resume.t``: a file seeks there (within the loop for a looped file, whose clock then
        continues) and skips frames not later; a network stream's clock continues from it."""
        if self.network:
            clock.continue_after(resume.t, resume.arrival if resume.arrival is not None else time.time())
            return
        duration = _duration_s(container, stream)
        looped = self.config.loop and duration is not None and resume.t >= duration
        position = resume.t % duration if looped else resume.t
        start = stream.start_time if stream.start_time is not None else 0
        try:  # to the keyframe at or before the position; decoding from the start would only cost time
            container.seek(start + int(position / stream.time_base), stream=stream, backward=True)
        except av.FFmpegError as exc:
            self._error(exc, "seek to the resume point failed, decoding from the start")
        if looped:
            clock.continue_after(resume.t, time.time())
        else:
            self._skip_until = resume.t

    def _backoff(self, attempt: int, reason: str) -> int:
        with self._lock:
            self._counts["reconnect_attempts"] += 1
            self._reconnecting = True
        self._note_error(reason)
        self._set_state(SourceState.RECONNECTING, reason)
        cfg = self.config
        self._stop.wait(backoff_delay(attempt, cfg.reconnect_initial_s, cfg.reconnect_max_s, cfg.reconnect_jitter,
                                      self._rng))
        return attempt + 1

    def _video_stream(self, container: "av.container.InputContainer") -> "av.video.stream.VideoStream":
        if not container.streams.video:
            raise self._fail(f"no video stream (streams: {[s.type for s in container.streams]})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: several times faster on multi-core machines
        rate = stream.average_rate or stream.guessed_rate
        with self._lock:
            self._info.update(fps=float(rate) if rate else None, width=stream.width, height=stream.height,
                              codec=stream.codec_context.name)
        return stream

    def _decode(self, container, stream, clock: TimestampCorrector, pace_from: list):
        """Yield frames until the demuxer ends; return True for a final end (a file), False for a
        disconnect. Raises SourceError for a file that ends well before its declared duration."""
        errors, last_raw = 0, None
        for packet in container.demux(stream):
            if self._stop.is_set():
                return True
            started = time.perf_counter()  # decoder time only: demuxing waits on the network for a camera
            try:
                decoded = packet.decode()
            except av.InvalidDataError as exc:
                if not self.network:
                    raise
                errors += 1  # lossy networks give broken packets: skip them, but not forever
                if errors >= MAX_LIVE_DECODE_ERRORS:
                    raise
                self._error(exc, "undecodable packet skipped")
                continue
            with self._lock:
                self._decode_s += time.perf_counter() - started
            errors = 0
            for frame in decoded:
                last_raw = frame.time if frame.time is not None else last_raw
                out = self._emit(functools.partial(frame.to_ndarray, format="rgb24"), frame.time, clock, pace_from)
                if self._state is SourceState.CONNECTING:
                    self._set_state(SourceState.STREAMING)
                if out is not None:
                    yield out
        if self.live_stream or (self.network and container.duration is None):
            return False
        self._check_complete(container, stream, last_raw)
        return True

    def _check_complete(self, container, stream, last_raw: float | None) -> None:
        start = stream.start_time * stream.time_base if stream.start_time is not None else 0.0
        declared = _duration_s(container, stream) or 0.0
        reached = (float(last_raw) - float(start)) if last_raw is not None else 0.0
        if reached < declared - TRUNCATION_SLACK_S - 0.05 * declared:
            raise self._fail(f"file ended at {reached:.2f} s of its declared {declared:.2f} s "
                             "(truncated or corrupt)")


def _duration_s(container, stream) -> float | None:
    """The file's declared duration (s): its video stream's, else the container's; None when neither says."""
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration is not None else None


def open_source(url: str, config: SourceConfig | None = None, on_event: EventCallback | None = None,
                resume: ResumePoint | None = None) -> Source:
    """Open a video source. ``url``: a file path, ``file://``, ``rtsp://``, ``http(s)://`` (any FFmpeg URL),
    ``sample://vtest`` (a real clip, fetched once), ``synthetic://?width=..&height=..&fps=..`` or
    ``scene://?seed=..&seconds=..`` (scenes/). Nothing is read until the source is iterated.

    on_event: called (from the reading thread) with every state change.
    resume: go on after this point of the stream (see the module docstring), not from the start.
    Raises ValueError for a synthetic or scene URL with bad parameters, SampleUnavailable for a sample
    that cannot be fetched; open/read errors surface while iterating (SourceError) and in ``status()``.
    """
    config = config or SourceConfig()
    if urlsplit(url).scheme in GENERATED_SCHEMES:
        return SyntheticSource(url, config, on_event, resume)
    return AvSource(resolve_url(url), config, on_event, resume)
