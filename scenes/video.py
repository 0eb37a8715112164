"""A scene as video: the frames a ``scene://`` camera produces, and an H.264 file of them.

``SceneVideo`` has the interface ``stream.sources`` plays synthetic cameras through (fps, width, height,
num_frames, frame(index)), so ``open_source("scene://?seed=7&seconds=60")`` is a live camera whose frames
carry their exact media time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from scenes.scene import Scene, SceneSpec, make_scene
from stream.urls import SCENE_SCHEME, register_generator


class SceneVideo:
    """Frame i of the scene at exactly ``i / spec.fps`` seconds, for i < ``spec.num_frames``."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.scene: Scene = make_scene(spec)
        self.fps, self.width, self.height = spec.fps, spec.width, spec.height
        self.num_frames: int = spec.num_frames

    @classmethod
    def from_url(cls, url: str) -> "SceneVideo":
        """The camera ``scene://?seed=..&seconds=..&width=..&height=..&fps=..`` (SceneSpec.from_url)."""
        return cls(SceneSpec.from_url(url))

    def frame(self, index: int) -> tuple[np.ndarray, float]:
        """Frame ``index``: ([H, W, 3] uint8 RGB, timestamp ``index / fps`` seconds)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index: expected 0..{self.num_frames - 1}, got {index}")
        t = index / self.fps
        return self.scene.render(t), t

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Every frame in order."""
        return (self.frame(i) for i in range(self.num_frames))


def write_scene(path: str | Path, spec: SceneSpec, codec: str = "libx264") -> list[float]:
    """Encode the scene's frames to ``path`` (container from the suffix, e.g. .mp4) for the file and RTSP
    paths; returns the timestamps of the frames as they decode back (seconds)."""
    from stream.synthetic import write_video  # PyAV is needed only here

    video = SceneVideo(spec)
    return write_video(path, video.frames(), codec=codec, fps=spec.fps)


register_generator(SCENE_SCHEME, SceneVideo.from_url)  # open_source plays scene:// URLs once this module is imported
