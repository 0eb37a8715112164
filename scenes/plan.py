"""Planning a scene: which objects, when they enter and leave, and their piecewise-linear paths with stops.

The plan is causal, so a scene is a prefix of every longer scene with the same seed: each object draws from
its own random generator, later objects dodge earlier ones (never the reverse), and every decision about a
path segment looks at most ``SEGMENT_S[1]`` seconds ahead. Planning runs ``PLAN_MARGIN_S`` past the end so
that decisions near the end are the ones a longer scene makes too.

Objects never come close enough to hide another object's centre (``MIN_GAP``), but they do overlap: partial
occlusion is part of the scenes. Moves are along one axis, so every motion has one direction word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scenes.shapes import COLOURS, REACH, SHAPES

DIRECTIONS = ("left", "right", "up", "down", "still")
EVENT_KINDS = ("enter", "leave", "start", "stop")
SIZE_PX = (40, 60)            # object sizes on a 240-pixel-high frame (scaled with the frame)
SPEED = (0.17, 0.33)          # pixels per second, as a fraction of the frame's smaller side (40-80 px/s at 240)
SEGMENT_S = (1.5, 4.0)        # duration of one move or stop, seconds
TOWARD_ROOM = 0.7             # chance a move heads to the side with more room
MIN_MOVE_S = 1.0              # a move cut short by the frame edge must still last this long
STOP_PROBABILITY = 0.2        # chance that the next segment is a stop
ENTRY_GAP_S = (3.0, 15.0)     # seconds between consecutive entries
MIN_OBJECTS = 3               # objects a scene plans, at least (at most one per shape)
STAY_PROBABILITY = 0.6        # chance an object never leaves; else it stays LIFETIME_S
LIFETIME_S = (10.0, 40.0)
MIN_GAP = REACH + 0.05        # centres stay this many (larger) sizes apart: nothing hides a centre
CHECK_STEP_S = 0.05           # time step of the collision check
PLAN_MARGIN_S = 30.0          # > (objects) * SEGMENT_S[1]: decisions near the end match a longer scene's
TRIES = 40                    # candidates per segment before the object gives up and leaves


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene. keyframes: ((t, x, y), ...) of a piecewise-linear path of its centre in
    pixels, times increasing, the first at ``enter_t``; two equal consecutive positions are a stop.
    Visible for ``enter_t <= t < leave_t`` (leave_t None: until the scene ends). Later indices draw on top."""

    index: int
    shape: str
    colour: str
    size_px: int
    enter_t: float
    leave_t: float | None
    keyframes: tuple[tuple[float, float, float], ...]

    def present(self, t: float) -> bool:
        """Whether the object is in the frame at media time ``t``."""
        return self.enter_t <= t and (self.leave_t is None or t < self.leave_t)

    def position(self, t: float) -> tuple[float, float]:
        """Centre (x, y) in pixels at time ``t`` (held at the ends of the path)."""
        k = np.asarray(self.keyframes)
        return float(np.interp(t, k[:, 0], k[:, 1])), float(np.interp(t, k[:, 0], k[:, 2]))

    def direction(self, t: float) -> str:
        """Direction of motion at ``t`` (DIRECTIONS): that of the segment [t_i, t_i+1) holding t."""
        i = self._segment(t)
        if i is None:
            return "still"
        (_, x0, y0), (_, x1, y1) = self.keyframes[i], self.keyframes[i + 1]
        if x1 != x0:
            return "right" if x1 > x0 else "left"
        if y1 != y0:
            return "down" if y1 > y0 else "up"  # image rows grow downwards
        return "still"

    def segment_start(self, t: float) -> float:
        """When the current run of the same direction began (the enter time at the latest)."""
        direction, i = self.direction(t), self._segment(t)
        if i is None:
            i = len(self.keyframes) - 1
        while i > 0 and self.direction(self.keyframes[i - 1][0]) == direction:
            i -= 1
        return self.keyframes[i][0]

    def _segment(self, t: float) -> int | None:
        times = [k[0] for k in self.keyframes]
        i = int(np.searchsorted(times, t, side="right")) - 1
        return i if 0 <= i < len(times) - 1 else None

    @property
    def name(self) -> str:
        """Canonical name, e.g. "red star" (unique in its scene)."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Event:
    """One line of the ground-truth log: at media time ``t``, object ``index`` entered, left, started or
    stopped moving. An object that moves when it enters logs "enter" then "start" at the same time."""

    t: float
    kind: str
    index: int


def _positions(obj_keys: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[T, 2] centres at ``times`` of a path given as keyframes [N, 3]."""
    return np.stack([np.interp(times, obj_keys[:, 0], obj_keys[:, 1]),
                     np.interp(times, obj_keys[:, 0], obj_keys[:, 2])], axis=1)


class _Planner:
    """Plans objects one at a time against the ones already planned (see the module docstring)."""

    def __init__(self, seed: int, width: int, height: int, horizon: float) -> None:
        self.seed, self.width, self.height, self.horizon = seed, width, height, horizon
        self.planned: list[tuple[np.ndarray, float, float, int]] = []  # keyframes, enter, leave, size

    def _clear(self, start: tuple[float, float, float], end: tuple[float, float, float], size: int) -> bool:
        """Whether a straight segment start -> end (t, x, y) keeps MIN_GAP from every planned object."""
        (t0, x0, y0), (t1, x1, y1) = start, end
        times = np.append(np.arange(t0, t1, CHECK_STEP_S), t1)
        frac = (times - t0) / max(t1 - t0, 1e-9)
        here = np.stack([x0 + (x1 - x0) * frac, y0 + (y1 - y0) * frac], axis=1)
        for keys, enter, leave, other in self.planned:
            alive = (times >= enter) & (times < leave)
            if not alive.any():
                continue
            gap = np.linalg.norm(_positions(keys, times[alive]) - here[alive], axis=1)
            if (gap < MIN_GAP * max(size, other)).any():
                return False
        return True

    def _bounds(self, size: int) -> tuple[float, float, float, float]:
        half = size / 2 + 2
        return half, self.width - half, half, self.height - half

    def _segment(self, rng: np.random.Generator, t: float, x: float, y: float, size: int
                 ) -> tuple[float, float, float]:
        """A candidate next keyframe after (t, x, y): a stop, or a move along one axis inside the frame."""
        duration = rng.uniform(*SEGMENT_S)
        if rng.random() < STOP_PROBABILITY:
            return t + duration, x, y
        x_lo, x_hi, y_lo, y_hi = self._bounds(size)
        axis = rng.integers(2)
        speed = rng.uniform(*SPEED) * min(self.width, self.height)
        lo, hi, here = (x_lo, x_hi, x) if axis == 0 else (y_lo, y_hi, y)
        roomier = 1.0 if hi - here > here - lo else -1.0  # mostly away from the nearer edge: fewer stalls
        sign = roomier if rng.random() < TOWARD_ROOM else -roomier
        room = (hi - here) if sign > 0 else (here - lo)
        duration = min(duration, room / speed)
        if duration < MIN_MOVE_S:
            return t, x, y  # rejected by the caller: too little room this way
        step = sign * speed * duration
        return (t + duration, x + step, y) if axis == 0 else (t + duration, x, y + step)

    def plan(self, index: int, enter: float, lifetime: float | None, size: int) -> tuple[np.ndarray, float] | None:
        """Keyframes [N, 3] and leave time of a new object entering at ``enter`` (None: it found no room)."""
        rng = np.random.default_rng([self.seed, 2, index])
        leave = math.inf if lifetime is None else enter + lifetime
        x_lo, x_hi, y_lo, y_hi = self._bounds(size)
        keys: list[tuple[float, float, float]] = []
        for _ in range(TRIES):  # a first position and segment that are clear
            start = (enter, rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi))
            end = self._segment(rng, *start, size)
            if end[0] > enter and self._clear(start, end, size):
                keys = [start, end]
                break
        if not keys:
            return None
        while keys[-1][0] < min(leave, self.horizon):
            for _ in range(TRIES):
                end = self._segment(rng, *keys[-1], size)
                if end[0] > keys[-1][0] and self._clear(keys[-1], end, size):
                    keys.append(end)
                    break
            else:  # boxed in: the object leaves here (a logged event like any other)
                leave = keys[-1][0]
                break
        path = np.array(keys)
        self.planned.append((path, enter, leave, size))
        return path, leave

    def present_at(self, t: float) -> list[float]:
        """Leave times of the planned objects present at ``t``."""
        return [leave for _, enter, leave, _ in self.planned if enter <= t < leave]


def plan_objects(seed: int, seconds: float, width: int, height: int, max_objects: int) -> tuple[SceneObject, ...]:
    """Every object of a scene (at most one per shape and per colour), in order of entry."""
    rng = np.random.default_rng([seed, 1])
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))]
    entries = np.cumsum([0.0, 0.0 if rng.random() < 0.5 else rng.uniform(*ENTRY_GAP_S)]
                        + list(rng.uniform(*ENTRY_GAP_S, len(SHAPES) - 2)))
    stays = [rng.random() < STAY_PROBABILITY for _ in SHAPES]
    lifetimes = [None if stay else rng.uniform(*LIFETIME_S) for stay in stays]
    scale = min(width, height) / 240.0
    sizes = [int(round(rng.uniform(*SIZE_PX) * scale)) for _ in SHAPES]
    count = int(rng.integers(MIN_OBJECTS, len(SHAPES) + 1))
    planner = _Planner(seed, width, height, seconds + PLAN_MARGIN_S)
    objects: list[SceneObject] = []
    last_enter = 0.0
    for i, enter in enumerate(entries[:count]):
        # Never before the previous object (which may have waited for a slot): objects enter in index
        # order, so each one sees every object that can be present when it enters.
        enter = max(round(float(enter), 2), last_enter)
        while len(present := planner.present_at(enter)) >= max_objects:
            if min(present) == math.inf:
                break
            enter = round(min(present) + 1.0, 2)  # wait for a free slot (never more than max_objects)
        if enter >= seconds or len(planner.present_at(enter)) >= max_objects:
            continue
        planned = planner.plan(i, enter, lifetimes[i], sizes[i])
        if planned is None:
            continue
        path, leave = planned
        last_enter = enter
        keyframes = tuple((round(float(t), 4), float(x), float(y)) for t, x, y in path)
        objects.append(SceneObject(index=len(objects), shape=shapes[i], colour=colours[i], size_px=sizes[i],
                                   enter_t=enter, leave_t=None if leave >= seconds else round(float(leave), 4),
                                   keyframes=keyframes))
    return tuple(objects)


def event_log(objects: tuple[SceneObject, ...], seconds: float) -> tuple[Event, ...]:
    """The ground-truth log of ``objects`` over [0, seconds), ordered by time, then object."""
    events: list[Event] = []
    for obj in objects:
        events.append(Event(obj.enter_t, "enter", obj.index))
        moving = False
        end = obj.leave_t if obj.leave_t is not None else seconds
        for t, _, _ in obj.keyframes:
            if t >= end:
                break
            now = obj.direction(t) != "still"
            if now != moving:
                events.append(Event(t, "start" if now else "stop", obj.index))
                moving = now
        if obj.leave_t is not None:
            events.append(Event(obj.leave_t, "leave", obj.index))
    order = {kind: i for i, kind in enumerate(EVENT_KINDS)}
    return tuple(sorted((e for e in events if e.t < seconds), key=lambda e: (e.t, e.index, order[e.kind])))
