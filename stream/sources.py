"""Video sources behind one interface: files, RTSP and other FFmpeg URLs (PyAV), and synthetic video.

``open_source(url, config)`` returns a ``Source``; iterate it for ``Frame`` objects (RGB, corrected media
timestamps, wall-clock arrival). A live source reconnects forever with capped exponential backoff and
jitter, and treats end-of-file as a disconnect. ``status()`` gives the state machine's state, counters and
recent events, with every URL and error text redacted.

The state machine, counters, buffer policy and threading are the base class's (stream/source_base.py);
``set_sampler`` moves sampling into the source, so frames it skips are never converted to RGB.

Resuming (``resume``, a ``ResumePoint``: the newest media time a stream's memory holds): a source started
again on a stream (a crash, or a move to another node) goes on from there, never from 0, because a memory
refuses time that goes backwards. A file or generated video continues its content: it seeks there and skips
what is not later (a looped file seeks within the loop and continues its clock). A camera cannot seek: its
clock continues from there, stepped by the wall time since that frame arrived.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from typing import Iterator
from urllib.parse import urlsplit

import av
import numpy as np

from stream.config import SourceConfig
from stream.decode import SkipPlanner, hwaccel_for, note_hw_failure
from stream.frames import Frame, SourceState
from stream.source_base import EventCallback, Source, SourceError
from stream.stall import StallWatch
from stream.synthetic import SyntheticVideo
from stream.timestamps import ResumePoint, TimestampCorrector
from stream.urls import (GENERATED_SCHEMES, NETWORK_SCHEMES, SYNTHETIC_SCHEME, generated_video, is_live_url,
                         register_generator, resolve_url)

log = logging.getLogger(__name__)

# SourceError and Source come from the base module; users catch and type them from here, with open_source.
__all__ = ["AvSource", "Source", "SourceError", "SyntheticSource", "backoff_delay", "open_source"]

MAX_LIVE_DECODE_ERRORS = 50  # consecutive undecodable packets before a live stream counts as disconnected
TRUNCATION_SLACK_S = 1.0  # a file ending this much (+5%) before its declared duration is truncated

def backoff_delay(attempt: int, initial_s: float, max_s: float, jitter: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): min(max, initial * 2**attempt) scaled by a
    random factor in [1 - jitter, 1] so that many cameras dropped together do not retry in lockstep."""
    return min(max_s, initial_s * 2.0 ** min(attempt, 60)) * (1.0 - jitter * rng.random())


register_generator(SYNTHETIC_SCHEME, SyntheticVideo.from_url)  # scene:// is registered by scenes.video


class SyntheticSource(Source):
    """Frames of generated video (``synthetic://`` moving squares, ``scene://`` scenes with known truth,
    scenes/) at exactly ``i / fps`` seconds; paced when ``config.realtime``."""

    def __init__(self, url: str, config: SourceConfig, on_event: EventCallback | None = None,
                 resume: ResumePoint | None = None) -> None:
        self.video = generated_video(url)
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
        self.planner: SkipPlanner | None = None  # the current connection's skip decisions (counts: tests, bench)

    def _open(self) -> "av.container.InputContainer":
        cfg = self.config
        hwaccel = hwaccel_for(cfg.hwaccel)
        if hwaccel is not None:
            try:
                return self._open_with(hwaccel)
            except (av.FFmpegError, OSError) as exc:
                note_hw_failure(exc)
        return self._open_with(None)

    def _open_with(self, hwaccel) -> "av.container.InputContainer":
        """Open the input, decoding on the device ``hwaccel`` describes (None: software)."""
        cfg, extra = self.config, ({"hwaccel": hwaccel} if hwaccel is not None else {})
        if not self.network:
            return av.open(self._path, **extra)
        options = {"fflags": "nobuffer", "analyzeduration": "500000"} if self.live_stream else {}  # low latency
        if urlsplit(self._url).scheme.lower().startswith("rtsp"):
            options.update(rtsp_transport=cfg.transport, timeout=str(int(cfg.read_timeout_s * 1e6)))
        else:
            options["rw_timeout"] = str(int(cfg.read_timeout_s * 1e6))
        return av.open(self._url, options=options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s), **extra)

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

    def _packets(self, container, stream):
        """The stream's packets; a network source's under a stall watchdog (stream/stall.py)."""
        packets = container.demux(stream)
        if not self.network:
            return packets
        return StallWatch(self.config.read_timeout_s, self._stalled, f"stall-{self.url}").packets(packets)

    def _stalled(self, idle_s: float) -> None:
        """The watchdog saw no packet for the read timeout: say so now (the read loop reconnects)."""
        text = f"read stalled: no data for {self.config.read_timeout_s:g} s (none for {idle_s:.1f} s)"
        self._note_error(text)
        with self._lock:
            streaming = self._state is SourceState.STREAMING  # connecting: already not streaming
            self._reconnecting = self._reconnecting or streaming
        if streaming:
            self._set_state(SourceState.RECONNECTING, text)

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
        threads = self.config.decoder_threads or (1 if self.live else 0)  # 0: FFmpeg's choice, one per core
        if threads != 1:
            stream.thread_type = "AUTO"  # frame threads: a file decodes several times faster on many cores
        stream.codec_context.thread_count = threads
        rate = stream.average_rate or stream.guessed_rate
        with self._lock:
            self._info.update(fps=float(rate) if rate else None, width=stream.width, height=stream.height,
                              codec=stream.codec_context.name, decoder_threads=threads)
        return stream

    def _decode(self, container, stream, clock: TimestampCorrector, pace_from: list):
        """Yield frames until the demuxer ends; return True for a final end (a file), False for a
        disconnect. Raises SourceError for a file that ends well before its declared duration."""
        errors, last_raw = 0, None
        fps, period = self._info["fps"], self._period_s
        planner = self.planner = SkipPlanner(self.config.decode, self._would_keep, fps, period)  # type: ignore[arg-type]
        context = stream.codec_context
        for packet in self._packets(container, stream):
            if self._stop.is_set():
                return True
            raw_s = float(packet.pts * packet.time_base) if packet.pts is not None else None
            skip = planner.setting(raw_s, packet.is_keyframe, clock.offset)
            if raw_s is not None and (last_raw is None or raw_s > last_raw):
                last_raw = raw_s  # how far the file goes, also where its frames are skipped
            if context.skip_frame != skip:
                context.skip_frame = skip
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
                out = self._emit(functools.partial(frame.to_ndarray, format="rgb24"), frame.time, clock, pace_from)
                if self._state is SourceState.CONNECTING:
                    self._set_state(SourceState.STREAMING)
                if out is not None:
                    planner.kept(frame.key_frame)
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
