"""Procedural scenes with known truth: coloured shapes that enter, move, stop and leave on a textured
background, rendered at any media time, with the ground-truth event log and per-pixel object labels.

``make_scene(SceneSpec(seed=7))`` is deterministic per spec (pure numpy), and a scene is a prefix of the
longer scenes with the same seed and size (see scenes/plan.py). ``scene://?seed=7&seconds=60`` plays one as
a live camera (scenes/video.py).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from urllib.parse import urlencode

import numpy as np

from scenes.plan import DIRECTIONS, Event, SceneObject, event_log, plan_objects
from scenes.shapes import COLOUR_RGB, COLOURS, SHAPES, shape_mask
from stream.urls import query_params

__all__ = ["SHAPES", "COLOURS", "ZONES", "DIRECTIONS", "SceneSpec", "SceneObject", "Event", "ObjectState",
           "Scene", "make_scene", "zone_of"]

ZONES = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
BACKGROUND_GREY = (100, 140)  # range of the background texture's grey levels: low contrast
TEXTURE_CELL_PX = 12          # scale of the background's blotches, pixels
FRAME_NOISE = 4               # +- grey levels of per-frame sensor-like noise


class SceneSpecError(ValueError):
    """A scene spec or scene:// URL that does not describe a valid scene."""


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a scene; ``make_scene(spec)`` is deterministic per spec.

    seed:        picks shapes, colours, sizes, entries, lifetimes and paths.
    seconds:     media length of the scene.
    width, height: frame size in pixels (even, >= 64).
    fps:         frames a scene camera produces per second of media time.
    max_objects: objects present at once, at most (a scene holds at most one object per shape: 5).
    """

    seed: int
    seconds: float = 60.0
    width: int = 320
    height: int = 240
    fps: float = 10.0
    max_objects: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy scalars and the like become plain int / float (equality, URLs)
            value, kind = getattr(self, f.name), int if f.type == "int" else float
            integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not (integral or (kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool))):
                raise SceneSpecError(f"scene {f.name}: expected {'an integer' if kind is int else 'a number'}, "
                                     f"got {value!r}")
            object.__setattr__(self, f.name, kind(value))
        checks = (
            (self.seed >= 0, "seed", "an integer >= 0", self.seed),
            (self.seconds > 0, "seconds", "> 0", self.seconds),
            (self.width >= 64 and self.height >= 64 and self.width % 2 == 0 and self.height % 2 == 0,
             "width/height", "even and >= 64", f"{self.width}x{self.height}"),
            (self.fps > 0, "fps", "> 0", self.fps),
            (1 <= self.max_objects <= len(SHAPES), "max_objects", f"1..{len(SHAPES)}", self.max_objects),
        )
        for ok, name, expected, got in checks:
            if not ok:
                raise SceneSpecError(f"scene {name}: expected {expected}, got {got!r}")

    @classmethod
    def from_url(cls, url: str) -> "SceneSpec":
        """Parse ``scene://?seed=7&seconds=60&width=320&height=240&fps=10&max_objects=5`` (seed required)."""
        casts = {f.name: (int if f.type == "int" else float) for f in fields(cls)}
        try:
            kwargs = query_params(url, "scene", casts)
        except ValueError as exc:
            raise SceneSpecError(str(exc)) from None
        if "seed" not in kwargs:
            raise SceneSpecError(f"scene URL: expected a seed (scene://?seed=7), got {url!r}")
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_url(self) -> str:
        """The scene:// URL that ``from_url`` turns back into this spec."""
        return "scene://?" + urlencode({f.name: getattr(self, f.name) for f in fields(self)})

    @property
    def num_frames(self) -> int:
        """Frames a scene camera produces: at ``i / fps`` seconds for i < num_frames."""
        return math.ceil(self.seconds * self.fps - 1e-9)


@dataclass(frozen=True)
class ObjectState:
    """A visible object at one time: centre (x, y) in pixels, zone (ZONES), direction (DIRECTIONS)."""

    index: int
    shape: str
    colour: str
    centre: tuple[float, float]
    zone: str
    direction: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def zone_of(x: float, y: float, width: int, height: int) -> str:
    """The 3x3 zone (ZONES) that holds the point (x, y) of a width x height frame."""
    col = min(2, max(0, int(3 * x / width)))
    row = min(2, max(0, int(3 * y / height)))
    return ZONES[3 * row + col]


def _texture(seed: int, width: int, height: int) -> np.ndarray:
    """[H, W, 3] uint8 static background: smooth low-contrast grey blotches with a faint tint."""
    rng = np.random.default_rng([seed, 3])
    gh, gw = height // TEXTURE_CELL_PX + 2, width // TEXTURE_CELL_PX + 2
    coarse = rng.uniform(*BACKGROUND_GREY, (gh, gw))
    # Bilinear upsampling of the coarse grid: rows then columns.
    ys = np.linspace(0, gh - 1, height)
    xs = np.linspace(0, gw - 1, width)
    rows = np.stack([np.interp(ys, np.arange(gh), coarse[:, j]) for j in range(gw)], axis=1)  # [H, gw]
    grey = np.stack([np.interp(xs, np.arange(gw), rows[i]) for i in range(height)])           # [H, W]
    tint = rng.uniform(-6, 6, 3)
    grain = rng.normal(0, 3, (height, width, 1))
    return np.clip(grey[:, :, None] + tint + grain, 0, 255).astype(np.uint8)


class Scene:
    """A planned scene: ``objects`` (SceneObject, by index), ``events`` (Event log over [0, seconds))."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.objects: tuple[SceneObject, ...] = plan_objects(spec.seed, spec.seconds, spec.width, spec.height,
                                                             spec.max_objects)
        self.events: tuple[Event, ...] = event_log(self.objects, spec.seconds)
        self._background = _texture(spec.seed, spec.width, spec.height)

    def _check_time(self, t: float) -> None:
        if not 0 <= t < self.spec.seconds:
            raise SceneSpecError(f"time: expected 0 <= t < {self.spec.seconds:g} s, got {t!r}")

    def visible(self, t: float) -> list[SceneObject]:
        """Objects in the frame at ``t``, bottom to top."""
        self._check_time(t)
        return [o for o in self.objects if o.present(t)]

    def _draw(self, t: float, image: np.ndarray | None, labels: np.ndarray | None) -> None:
        h, w = self.spec.height, self.spec.width
        for obj in self.visible(t):
            (rows, cols), mask = shape_mask(obj.shape, obj.size_px, *obj.position(t), h, w)
            if image is not None:
                image[rows, cols][mask] = COLOUR_RGB[obj.colour]
            if labels is not None:
                labels[rows, cols][mask] = obj.index

    def render(self, t: float) -> np.ndarray:
        """[H, W, 3] uint8 RGB frame at media time ``t``: texture + per-frame noise, flat-coloured shapes."""
        self._check_time(t)
        noise = np.random.default_rng([self.spec.seed, 4, round(t * 1e6)]).integers(
            -FRAME_NOISE, FRAME_NOISE + 1, (self.spec.height, self.spec.width, 1), dtype=np.int16)
        image = np.clip(self._background + noise, 0, 255).astype(np.uint8)
        self._draw(t, image, None)
        return image

    def labels(self, t: float) -> np.ndarray:
        """[H, W] int16: index of the object seen at each pixel at ``t``, -1 for background."""
        labels = np.full((self.spec.height, self.spec.width), -1, dtype=np.int16)
        self._draw(t, None, labels)
        return labels

    def cell_labels(self, t: float, grid: tuple[int, int]) -> np.ndarray:
        """[gh, gw] int16: per cell of a ``grid`` laid evenly over the whole frame (the model input is the frame
        resized without keeping the aspect), the object covering most of its pixels, -1 where background does."""
        labels = self.labels(t).astype(np.int64) + 1  # [H, W] object index + 1, 0 = background
        gh, gw = grid
        rows = np.arange(labels.shape[0]) * gh // labels.shape[0]  # [H] cell row of each pixel row
        cols = np.arange(labels.shape[1]) * gw // labels.shape[1]  # [W]
        bins = (rows[:, None] * gw + cols[None, :]) * (len(self.objects) + 1) + labels  # [H, W]
        counts = np.bincount(bins.ravel(), minlength=gh * gw * (len(self.objects) + 1))
        return (counts.reshape(gh, gw, -1).argmax(-1) - 1).astype(np.int16)

    def state_at(self, t: float) -> list[ObjectState]:
        """The visible objects at ``t`` (by index): centre, zone and direction of motion."""
        states = []
        for obj in self.visible(t):
            x, y = obj.position(t)
            states.append(ObjectState(obj.index, obj.shape, obj.colour, (x, y),
                                      zone_of(x, y, self.spec.width, self.spec.height), obj.direction(t)))
        return states


def make_scene(spec: SceneSpec) -> Scene:
    """The scene ``spec`` describes (deterministic: the same spec gives the same scene, bit for bit)."""
    return Scene(spec)
