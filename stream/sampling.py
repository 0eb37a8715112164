"""Sampling by presentation time, resizing and chunking: the one loop from a source to chunks.

Sampling is by timestamp, not frame count, so variable frame rates and dropped frames give the same
grid: the sampler keeps the first frame at or after each point ``t0 + k / rate_hz``. After a long gap it
resumes on the grid point after the kept frame (no burst of catch-up frames). A resumed source (its
``resume`` point: where the stream's memory stands) keeps its grid and chunk numbers going from there.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
from PIL import Image

from stream.config import BufferPolicy, SourceConfig
from stream.decode import grid_index
from stream.frames import Chunk, Frame, check_frames
from stream.sources import Source, open_source

# Timestamps within this of a grid point count as on it: mkv/webm store milliseconds, so the frame at
# 1/3 s is stored as 0.333 s and must still be the one picked for the grid point 1/3 s.
GRID_EPS_S = 5e-4


class Sampler:
    """Keeps frames on a ``rate_hz`` grid anchored at the first frame's timestamp, or, ``after`` a resume
    point, at that time as if its frame had been kept (the next one kept is a period later)."""

    def __init__(self, rate_hz: float, after: float | None = None) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz: expected > 0, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._t0: float | None = after
        self._next_k = 0 if after is None else 1

    def keep(self, pts: float) -> bool:
        """Whether the frame at media time ``pts`` (seconds, increasing) is sampled."""
        if self._t0 is None:
            self._t0 = pts
        k = (pts - self._t0) / self.period
        if k + GRID_EPS_S / self.period < self._next_k:
            return False
        self._next_k = int(np.floor(k + GRID_EPS_S / self.period)) + 1
        return True

    def would_keep(self, prev: float | None, pts: float) -> bool:
        """Whether ``keep`` will keep the frame at ``pts`` whose predecessor in presentation time is at ``prev``
        (None: unknown), asked before either is decoded (stream/decode.py): true when ``pts`` lies in a later
        grid cell than ``prev``. True, never wrongly false, before the first frame or without ``prev``."""
        if self._t0 is None or prev is None:
            return True
        return grid_index(pts, self._t0, self.period, GRID_EPS_S) > grid_index(prev, self._t0, self.period,
                                                                               GRID_EPS_S)


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, h, w, 3] uint8 (``size`` = s for s x s, or (h, w)), bilinear with
    antialiasing (PIL), aspect ratio not kept: the encoders here take a square input."""
    h, w = (size, size) if isinstance(size, int) else size
    check_frames(frames)
    if h < 1 or w < 1:
        raise ValueError(f"size: expected positive, got {size}")
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((frames.shape[0], h, w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
    return out


class Chunker:
    """Groups frames into ``Chunk`` objects of ``frames_per_chunk`` frames with consecutive ``seq``."""

    def __init__(self, frames_per_chunk: int, stream_id: str, size: int | tuple[int, int] | None = None,
                 first_seq: int = 0) -> None:
        if frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk: expected >= 1, got {frames_per_chunk}")
        self.frames_per_chunk = frames_per_chunk
        self.stream_id = stream_id
        self.size = size
        self.seq = first_seq
        self._pending: list[Frame] = []

    def push(self, frame: Frame) -> Chunk | None:
        """Add a frame; returns a full chunk when this frame completes one. The frame is resized now, not when
        its chunk is full, so a stream holds one camera-size frame at a time, not a chunk of them (a 720p RGB
        frame is 2.7 MB; at the encoder's 384 x 384 it is 0.44 MB)."""
        if self.size is not None:
            frame = dataclasses.replace(frame, image=resize_frames(frame.image[None], self.size)[0])
        self._pending.append(frame)
        return self.flush() if len(self._pending) >= self.frames_per_chunk else None

    def flush(self) -> Chunk | None:
        """The pending frames as a (possibly short) chunk, or None when nothing is pending."""
        if not self._pending:
            return None
        frames = np.stack([f.image for f in self._pending])  # one size within a chunk; raises if a stream changed size
        chunk = Chunk(self.stream_id, self.seq, frames, np.array([f.pts for f in self._pending], np.float64),
                      np.array([f.arrival for f in self._pending], np.float64))
        self.seq += 1
        self._pending = []
        return chunk


def chunks(source: Source | str, rate_hz: float, frames_per_chunk: int, size: int | tuple[int, int] | None = None,
           stream_id: str = "stream", policy: BufferPolicy | str | None = None,
           flush_partial: bool = True) -> Iterator[Chunk]:
    """Sample ``source`` at ``rate_hz`` (by timestamp), resize to ``size``, yield chunks of
    ``frames_per_chunk`` frames ([T, s, s, 3] uint8 + timestamps [T]).

    source: an open ``Source`` or a URL, opened with ``SourceConfig(policy=policy)`` (``policy`` applies to
        URLs only; None picks by source kind). A URL source is closed when the iterator ends.
    flush_partial: at the end of a finite source, yield the last short chunk too.
    A source opened with a ``resume`` point goes on from it: the grid continues after its time and the chunks
    are numbered from its ``seq``.
    """
    owned = isinstance(source, str)
    if owned:
        source = open_source(source, SourceConfig(policy=policy))
    elif policy is not None and BufferPolicy(policy) is not source.policy:
        raise ValueError(f"policy: the source was opened with {source.policy.value}, got {policy!r}")
    resume = source.resume
    # sample inside the source: skipped frames cost no RGB conversion
    sampler = Sampler(rate_hz, resume.t if resume is not None else None)
    source.set_sampler(sampler.keep, sampler.would_keep, sampler.period)
    chunker = Chunker(frames_per_chunk, stream_id, size, resume.seq if resume is not None else 0)
    try:
        for frame in source:
            chunk = chunker.push(frame)
            if chunk is not None:
                yield chunk
        if flush_partial and (chunk := chunker.flush()) is not None:
            yield chunk
    finally:
        if owned:
            source.close()
