"""Synthetic video: coloured squares moving at known constant speeds, exact timestamps, plus a PyAV writer.

``synthetic://?width=640&height=480&fps=30&shapes=3&seconds=10&seed=0`` (every key optional; no
``seconds`` = endless). Frame i is at exactly ``i / fps`` seconds and ``SyntheticVideo.positions(t)`` says
where every square is, so tests (and the compressor's motion checks) know the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from stream.urls import query_params

COLOURS = ((230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40), (220, 60, 220), (40, 220, 220))
BACKGROUND = 24


@dataclass(frozen=True)
class SyntheticVideo:
    """Squares of side ``min(width, height) // 6`` moving linearly, wrapping around the frame."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    shapes: int = 3
    seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"size: expected even width/height >= 16, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps: expected > 0, got {self.fps}")
        if not 1 <= self.shapes <= len(COLOURS):
            raise ValueError(f"shapes: expected 1..{len(COLOURS)}, got {self.shapes}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds: expected > 0 or absent, got {self.seconds}")

    @classmethod
    def from_url(cls, url: str) -> "SyntheticVideo":
        """Parse ``synthetic://?width=..&height=..&fps=..&shapes=..&seconds=..&seed=..``."""
        casts = {"width": int, "height": int, "fps": float, "shapes": int, "seconds": float, "seed": int}
        kwargs = query_params(url, "synthetic", casts)
        return cls(**kwargs)

    @property
    def side(self) -> int:
        return min(self.width, self.height) // 6

    @property
    def num_frames(self) -> int | None:
        return None if self.seconds is None else math.ceil(self.seconds * self.fps - 1e-9)

    def _motion(self) -> np.ndarray:
        """[shapes, 4] start x, start y, speed x, speed y (pixels, pixels per second)."""
        rng = np.random.default_rng(self.seed)
        start = rng.uniform(0, 1, (self.shapes, 2)) * [self.width - self.side, self.height - self.side]
        direction = rng.choice([-1, 1], (self.shapes, 2))
        speed = rng.uniform(0.15, 0.5, (self.shapes, 2)) * [self.width, self.height] * direction
        return np.concatenate([start, speed], axis=1)

    def positions(self, t: float) -> np.ndarray:
        """[shapes, 2] integer top-left corners (x, y) of the squares at time ``t`` seconds."""
        m = self._motion()
        span = np.array([self.width - self.side, self.height - self.side], dtype=np.float64)
        return np.floor(np.mod(m[:, :2] + m[:, 2:] * t, span)).astype(np.int64)

    def frame(self, index: int) -> tuple[np.ndarray, float]:
        """Frame ``index``: ([H, W, 3] uint8 RGB, timestamp ``index / fps`` seconds)."""
        t = index / self.fps
        image = np.full((self.height, self.width, 3), BACKGROUND, dtype=np.uint8)
        s = self.side
        for (x, y), colour in zip(self.positions(t), COLOURS):
            image[y:y + s, x:x + s] = colour
        return image, t

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """All frames in order (endless when ``seconds`` is None)."""
        index = 0
        while self.num_frames is None or index < self.num_frames:
            yield self.frame(index)
            index += 1


def write_video(path: str | Path, frames: Iterable[tuple[np.ndarray, float]], codec: str = "libx264",
                fps: float = 30.0, options: dict[str, str] | None = None) -> list[float]:
    """Encode (image [H, W, 3] uint8, timestamp s) pairs to ``path`` with PyAV; timestamps may be irregular
    (variable frame rate) where the container allows it. Returns the timestamps of the frames as they
    decode back (rounded to the container's time base, e.g. milliseconds for mkv/webm).

    codec: an FFmpeg encoder name (libx264, libvpx-vp9, mpeg4, ...); the container comes from the suffix.
    fps: nominal rate; MPEG-4 part 2 only takes a 16-bit time base, so it gets 1/fps (constant rate).
    """
    import av

    time_base = Fraction(1, 90000) if codec != "mpeg4" else 1 / Fraction(fps).limit_denominator(1000)
    written: list[float] = []
    with av.open(str(path), "w") as container:
        stream = None
        for image, t in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000), options=options or {})
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            written.append(float(frame.time))
    return written
