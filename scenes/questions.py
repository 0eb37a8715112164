"""Questions about a scene with exact answers from its event log, in categories that need different parts
of a video memory (content, existence, count, position, direction, order, time, recency).

A question asked at ``t_query`` is about [0, t_query] ("now" = t_query, the last frame the model saw).
Anything that changed less than ``SETTLE_S`` before t_query, or a position within ``ZONE_MARGIN`` of a zone
border, is not asked about: at 2 frames/s it would not be visible yet, so the answer would be a guess.
Objects are named by shape ("the star"), colour ("the red object") or both ("the red star"): at most one
object per shape and per colour in a scene makes every name unique. Canonical answers are short: "red",
"star", "yes", "3", "top left", "left", "12", "red star", "nothing".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scenes.plan import DIRECTIONS, SceneObject
from scenes.scene import ZONES, Scene, zone_of
from scenes.shapes import COLOURS, SHAPES

CATEGORIES = ("content", "existence", "count", "position", "direction", "order", "time", "recency")
SETTLE_S = 1.0       # an event this recent (seconds before t_query) is not asked about
ZONE_MARGIN = 0.05   # fraction of the frame: centres this close to a zone border are not asked about
ORDER_GAP_S = 1.5    # entries closer than this are not compared
TIME_TOLERANCE_S = 1.0
MAX_COUNT = len(SHAPES)
NOTHING = "nothing"


class QuestionError(ValueError):
    """A question request that cannot be served (unknown category, time outside the scene)."""


@dataclass(frozen=True)
class QA:
    """One question with its exact answer.

    numeric/tolerance: the answer is a number and a prediction within ``tolerance`` of it is correct
        (time answers: whole media seconds, tolerance 1.0).
    span: the media-time interval [a, b] of the events the answer depends on ("now" questions:
        (t_query, t_query)); lets a benchmark pick questions about the first or the last minute.
    """

    question: str
    answer: str
    category: str
    t_query: float
    numeric: bool = False
    tolerance: float = 0.0
    span: tuple[float, float] = (0.0, 0.0)


# -- naming ---------------------------------------------------------------------------------------------
def _ref(obj: SceneObject, rng: np.random.Generator) -> str:
    """A unique way to name ``obj``: "the star", "the red object" or "the red star"."""
    form = rng.integers(3)
    return (f"the {obj.shape}", f"the {obj.colour} object", f"the {obj.name}")[form]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


# -- templates: each returns every question of its category that has a well-defined answer at t --------
Builder = Callable[[Scene, float, np.random.Generator], list[QA]]


def _seen(scene: Scene, t: float) -> list[SceneObject]:
    """Objects that entered at least SETTLE_S before t (visible on a few sampled frames)."""
    return [o for o in scene.objects if o.enter_t <= t - SETTLE_S]


def _settled_now(scene: Scene, t: float) -> list[SceneObject]:
    """Objects present at t whose presence is settled (entered >= SETTLE_S ago)."""
    return [o for o in _seen(scene, t) if o.present(t)]


def _content(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    out = []
    for o in _seen(scene, t):
        be = "is" if o.present(t) else "was"
        span = (o.enter_t, o.enter_t)
        out.append(QA(_pick(rng, (f"What colour {be} the {o.shape}?", f"Which colour {be} the {o.shape}?",
                                  f"The {o.shape} {be} what colour?")), o.colour, "content", t, span=span))
        out.append(QA(_pick(rng, (f"What shape {be} the {o.colour} object?", f"Which shape {be} {o.colour}?",
                                  f"The {o.colour} object {be} what shape?")), o.shape, "content", t, span=span))
    return out


def _existence(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    templates = ("Was there ever a {}?", "Did a {} appear at any point?", "Has a {} been seen in the video?")
    seen = {o.name: o for o in _seen(scene, t)}
    pending = {o.name for o in scene.objects if t - SETTLE_S < o.enter_t <= t}  # too recent to ask
    out = [QA(_pick(rng, templates).format(name), "yes", "existence", t, span=(o.enter_t, o.enter_t))
           for name, o in seen.items()]
    for colour in COLOURS:
        for shape in SHAPES:
            name = f"{colour} {shape}"
            if name not in seen and name not in pending:
                out.append(QA(_pick(rng, templates).format(name), "no", "existence", t, span=(0.0, t)))
    return out


def _count(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    out = []
    recent = [e for e in scene.events if t - SETTLE_S < e.t <= t and e.kind in ("enter", "leave")]
    if not recent:
        now = len([o for o in scene.objects if o.present(t)])
        ever = len([o for o in scene.objects if o.enter_t <= t])
        out.append(QA(_pick(rng, ("How many objects are visible now?", "How many objects are in view right now?",
                                  "How many shapes can be seen at the moment?")), str(now), "count", t,
                      span=(t, t)))
        out.append(QA(_pick(rng, ("How many different objects have appeared so far?",
                                  "How many objects have been seen in total?",
                                  "In total, how many different shapes appeared?")), str(ever), "count", t,
                      span=(0.0, t)))
    return out


def _position(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    w, h = scene.spec.width, scene.spec.height
    out = []
    for o in _settled_now(scene, t):
        x, y = o.position(t)
        borders_x, borders_y = np.array([w / 3, 2 * w / 3]), np.array([h / 3, 2 * h / 3])
        if np.abs(borders_x - x).min() < ZONE_MARGIN * w or np.abs(borders_y - y).min() < ZONE_MARGIN * h:
            continue
        ref = _ref(o, rng)
        out.append(QA(_pick(rng, (f"Where is {ref} now?", f"In which part of the frame is {ref} right now?",
                                  f"Where can {ref} be seen at the moment?")), zone_of(x, y, w, h), "position", t,
                      span=(t, t)))
    return out


def _direction(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    out = []
    for o in _settled_now(scene, t):
        if o.segment_start(t) > t - SETTLE_S:
            continue  # just turned, started or stopped: not visible yet at 2 frames/s
        ref = _ref(o, rng)
        out.append(QA(_pick(rng, (f"Which way is {ref} moving?", f"In which direction is {ref} moving now?",
                                  f"Where is {ref} heading right now?")), o.direction(t), "direction", t,
                      span=(t, t)))
    return out


def _order(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    seen = _seen(scene, t)
    out = []
    for i, a in enumerate(seen):
        for b in seen[i + 1:]:
            if abs(a.enter_t - b.enter_t) < ORDER_GAP_S:
                continue
            first = a if a.enter_t < b.enter_t else b
            x, y = (a, b) if rng.random() < 0.5 else (b, a)  # the first-named is not always the answer
            out.append(QA(_pick(rng, (f"Which appeared first, the {x.name} or the {y.name}?",
                                      f"Which came first: the {x.name} or the {y.name}?",
                                      f"Did the {x.name} or the {y.name} appear earlier?")), first.name, "order", t,
                          span=(min(a.enter_t, b.enter_t), max(a.enter_t, b.enter_t))))
    return out


def _time(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    out = []
    for o in _seen(scene, t):
        ref = _ref(o, rng)
        out.append(QA(_pick(rng, (f"When did {ref} appear?", f"At what second did {ref} first appear?",
                                  f"How many seconds into the video did {ref} show up?")),
                      str(int(round(o.enter_t))), "time", t, numeric=True, tolerance=TIME_TOLERANCE_S,
                      span=(o.enter_t, o.enter_t)))
    return out


def _recency(scene: Scene, t: float, rng: np.random.Generator) -> list[QA]:
    out = []
    present = [o for o in scene.objects if o.present(t)]
    settled = all(o.enter_t <= t - SETTLE_S and o.segment_start(t) <= t - SETTLE_S for o in present)
    moving = [o for o in present if o.direction(t) != "still"]
    if settled and len(moving) <= 1:
        out.append(QA(_pick(rng, ("What is moving right now?", "Which object is moving at the moment?",
                                  "What is in motion now?")), moving[0].name if moving else NOTHING, "recency", t,
                      span=(t, t)))
    entered = [o for o in scene.objects if o.enter_t <= t]
    if entered and entered[-1].enter_t <= t - SETTLE_S and (len(entered) < 2 or
                                                            entered[-1].enter_t - entered[-2].enter_t >= ORDER_GAP_S):
        last = max(entered, key=lambda o: o.enter_t)
        out.append(QA(_pick(rng, ("Which object appeared most recently?", "What was the last object to appear?",
                                  "Which object showed up last?")), last.name, "recency", t,
                      span=(last.enter_t, t)))
    return out


BUILDERS: dict[str, Builder] = {"content": _content, "existence": _existence, "count": _count,
                                "position": _position, "direction": _direction, "order": _order, "time": _time,
                                "recency": _recency}


def _choose(candidates: list[QA], k: int, rng: np.random.Generator) -> list[QA]:
    """k candidates without replacement, taking turns between answers (yes/no, directions, counts, ...) so
    that answers come out balanced rather than as frequent as the scenes make them."""
    groups: dict[str, list[QA]] = {}
    for qa in candidates:
        groups.setdefault(qa.answer, []).append(qa)
    pools = [[group[i] for i in rng.permutation(len(group))] for group in groups.values()]
    pools = [pools[i] for i in rng.permutation(len(pools))]
    out: list[QA] = []
    while len(out) < k and any(pools):
        for pool in pools:
            if pool and len(out) < k:
                out.append(pool.pop())
    return out


def questions(scene: Scene, t_query: float, rng: np.random.Generator, per_category: int = 1,
              categories: tuple[str, ...] = CATEGORIES) -> list[QA]:
    """Up to ``per_category`` questions per category about [0, t_query] of ``scene`` (fewer where the scene
    offers fewer well-defined ones), in CATEGORIES order; answers exact from the event log."""
    unknown = [c for c in categories if c not in BUILDERS]
    if unknown:
        raise QuestionError(f"categories: expected some of {CATEGORIES}, got unknown {unknown}")
    if not 0 <= t_query < scene.spec.seconds:
        raise QuestionError(f"t_query: expected 0 <= t < {scene.spec.seconds:g} s, got {t_query!r}")
    out: list[QA] = []
    for category in categories:
        out.extend(_choose(BUILDERS[category](scene, t_query, rng), per_category, rng))
    return out


# -- scoring --------------------------------------------------------------------------------------------
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_SYNONYMS = {"center": "centre", "middle": "centre", "gray": "grey", "none": NOTHING}
_DROP = {"the", "a", "an", "object", "one", "shape"}


def normalise(text: str) -> str:
    """Lower case, punctuation and articles dropped, number words as digits: " The Red STAR." -> "red star"."""
    words = re.sub(r"[^a-z0-9. ]+", " ", text.lower().replace("-", " ")).replace(". ", " ").strip(" .").split()
    words = [_SYNONYMS.get(w, _NUMBER_WORDS.get(w, w)) for w in words]
    kept = [w for w in words if w not in _DROP]
    return " ".join(kept if kept else words)


def is_correct(prediction: str, qa: QA) -> bool:
    """Normalised exact match; for numeric answers, the first number in the prediction within tolerance."""
    if qa.numeric:
        match = re.search(r"-?\d+(?:\.\d+)?", normalise(prediction))
        return match is not None and abs(float(match.group()) - float(qa.answer)) <= qa.tolerance
    return normalise(prediction) == normalise(qa.answer)


def chance(category: str) -> float:
    """Accuracy of a uniform guess among the answers a category can have (time: within +-1 s in a 60-s
    scene, i.e. 3 of 60 whole seconds; recency: one of 5 objects or "nothing")."""
    levels = {"content": (1 / len(COLOURS) + 1 / len(SHAPES)) / 2, "existence": 0.5, "count": 1 / (MAX_COUNT + 1),
              "position": 1 / len(ZONES), "direction": 1 / len(DIRECTIONS), "order": 0.5, "time": 3 / 60,
              "recency": 1 / (MAX_COUNT + 1)}
    if category not in levels:
        raise QuestionError(f"category: expected one of {CATEGORIES}, got {category!r}")
    return levels[category]
