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
NOTHING = "nothing"   # recency: nothing moves
GONE = "gone"         # answer_at for an object not in view (position, direction) or not seen yet


class QuestionError(ValueError):
    """A question request that cannot be served (unknown category, time outside the scene)."""


@dataclass(frozen=True)
class QA:
    """One question with its exact answer.

    numeric/tolerance: the answer is a number and a prediction within ``tolerance`` of it is correct
        (time answers: whole media seconds, tolerance 1.0).
    span: the media-time interval [a, b] of the events the answer depends on ("now" questions:
        (t_query, t_query)); lets a benchmark pick questions about the first or the last minute.
    key: what is asked, independent of wording, e.g. ("direction", 2) or ("first", 0, 3);
        ``answer_at(scene, qa.key, t)`` gives the truth at any other time t (the demo's snapshot end).
    """

    question: str
    answer: str
    category: str
    t_query: float
    numeric: bool = False
    tolerance: float = 0.0
    span: tuple[float, float] = (0.0, 0.0)
    key: tuple = ()


# -- the truth: one function answers every kind of question at any time -----------------------------
def _entered(scene: Scene, t: float) -> list[SceneObject]:
    return [o for o in scene.objects if o.enter_t <= t]


def answer_at(scene: Scene, key: tuple, t: float) -> str:
    """The canonical answer to the question ``key`` (QA.key) about [0, t] of ``scene``, from its plan."""
    kind, args = key[0], key[1:]
    objects = scene.objects
    if kind == "colour":
        return objects[args[0]].colour
    if kind == "shape":
        return objects[args[0]].shape
    if kind == "ever":
        return "yes" if any(o.name == f"{args[0]} {args[1]}" for o in _entered(scene, t)) else "no"
    if kind == "count_now":
        return str(sum(o.present(t) for o in objects))
    if kind == "count_ever":
        return str(len(_entered(scene, t)))
    if kind in ("zone", "direction", "enter_time"):
        obj = objects[args[0]]
        if kind == "enter_time":
            return str(int(round(obj.enter_t))) if obj.enter_t <= t else GONE
        if not obj.present(t):
            return GONE
        x, y = obj.position(t)
        return zone_of(x, y, scene.spec.width, scene.spec.height) if kind == "zone" else obj.direction(t)
    if kind == "first":
        seen = [objects[i] for i in args if objects[i].enter_t <= t]
        return min(seen, key=lambda o: o.enter_t).name if seen else GONE
    if kind == "moving":
        moving = [o.name for o in objects if o.present(t) and o.direction(t) != "still"]
        return " and ".join(moving) if moving else NOTHING
    if kind == "last_entered":
        entered = _entered(scene, t)
        return max(entered, key=lambda o: o.enter_t).name if entered else GONE
    raise QuestionError(f"question key: expected one of {sorted(KEY_KINDS)}, got {key!r}")


KEY_KINDS = frozenset({"colour", "shape", "ever", "count_now", "count_ever", "zone", "direction", "enter_time",
                       "first", "moving", "last_entered"})


# -- naming ---------------------------------------------------------------------------------------------
def _ref(obj: SceneObject, rng: np.random.Generator) -> str:
    """A unique way to name ``obj``: "the star", "the red object" or "the red star"."""
    return (f"the {obj.shape}", f"the {obj.colour} object", f"the {obj.name}")[rng.integers(3)]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


# -- templates: each lists every question of its category with a well-defined answer at t --------------
# (key, wording, span); the answer comes from answer_at, so wording and truth cannot drift apart.
Ask = tuple[tuple, str, tuple[float, float]]
Builder = Callable[[Scene, float, np.random.Generator], list[Ask]]


def _seen(scene: Scene, t: float) -> list[SceneObject]:
    """Objects that entered at least SETTLE_S before t (visible on a few sampled frames)."""
    return [o for o in scene.objects if o.enter_t <= t - SETTLE_S]


def _settled_now(scene: Scene, t: float) -> list[SceneObject]:
    """Objects present at t, in view for at least SETTLE_S."""
    return [o for o in _seen(scene, t) if o.present(t)]


def _content(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    out = []
    for o in _seen(scene, t):
        be, span = ("is" if o.present(t) else "was"), (o.enter_t, o.enter_t)
        out.append((("colour", o.index), _pick(rng, (f"What colour {be} the {o.shape}?",
                                                     f"Which colour {be} the {o.shape}?",
                                                     f"The {o.shape} {be} what colour?")), span))
        out.append((("shape", o.index), _pick(rng, (f"What shape {be} the {o.colour} object?",
                                                    f"Which shape {be} {o.colour}?",
                                                    f"The {o.colour} object {be} what shape?")), span))
    return out


def _existence(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    templates = ("Was there ever a {}?", "Did a {} appear at any point?", "Has a {} been seen in the video?")
    seen = {o.name: o for o in _seen(scene, t)}
    recent = {o.name for o in scene.objects if t - SETTLE_S < o.enter_t <= t}  # too recent to ask about
    out = []
    for colour in COLOURS:
        for shape in SHAPES:
            name = f"{colour} {shape}"
            if name in recent:
                continue
            span = (seen[name].enter_t, seen[name].enter_t) if name in seen else (0.0, t)
            out.append((("ever", colour, shape), _pick(rng, templates).format(name), span))
    return out


def _count(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    if any(t - SETTLE_S < e.t <= t and e.kind in ("enter", "leave") for e in scene.events):
        return []
    return [(("count_now",), _pick(rng, ("How many objects are visible now?", "How many objects are in view "
                                         "right now?", "How many shapes can be seen at the moment?")), (t, t)),
            (("count_ever",), _pick(rng, ("How many different objects have appeared so far?",
                                          "How many objects have been seen in total?",
                                          "In total, how many different shapes appeared?")), (0.0, t))]


def _position(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    w, h = scene.spec.width, scene.spec.height
    out = []
    for o in _settled_now(scene, t):
        x, y = o.position(t)
        if min(abs(x - w / 3), abs(x - 2 * w / 3)) < ZONE_MARGIN * w or \
                min(abs(y - h / 3), abs(y - 2 * h / 3)) < ZONE_MARGIN * h:
            continue  # too close to a zone border to call
        ref = _ref(o, rng)
        out.append((("zone", o.index), _pick(rng, (f"Where is {ref} now?", f"In which part of the frame is {ref} "
                                                   "right now?", f"Where can {ref} be seen at the moment?")), (t, t)))
    return out


def _direction(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    out = []
    for o in _settled_now(scene, t):
        if o.segment_start(t) > t - SETTLE_S:
            continue  # just turned, started or stopped: not visible yet at 2 frames/s
        ref = _ref(o, rng)
        out.append((("direction", o.index), _pick(rng, (f"Which way is {ref} moving?", f"In which direction is "
                                                        f"{ref} moving now?", f"Where is {ref} heading right now?")),
                    (t, t)))
    return out


def _order(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    seen = _seen(scene, t)
    out = []
    for i, a in enumerate(seen):
        for b in seen[i + 1:]:
            if abs(a.enter_t - b.enter_t) < ORDER_GAP_S:
                continue
            x, y = (a, b) if rng.random() < 0.5 else (b, a)  # the first-named is not always the answer
            out.append((("first", x.index, y.index), _pick(rng, (f"Which appeared first, the {x.name} or the {y.name}?",
                                                                  f"Which came first: the {x.name} or the {y.name}?",
                                                                  f"Did the {x.name} or the {y.name} appear "
                                                                  "earlier?")),
                        (min(a.enter_t, b.enter_t), max(a.enter_t, b.enter_t))))
    return out


def _time(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    out = []
    for o in _seen(scene, t):
        ref = _ref(o, rng)
        out.append((("enter_time", o.index), _pick(rng, (f"When did {ref} appear?", f"At what second did {ref} "
                                                         "first appear?", f"How many seconds into the video did "
                                                         f"{ref} show up?")), (o.enter_t, o.enter_t)))
    return out


def _recency(scene: Scene, t: float, rng: np.random.Generator) -> list[Ask]:
    out = []
    present = [o for o in scene.objects if o.present(t)]
    settled = all(o.enter_t <= t - SETTLE_S and o.segment_start(t) <= t - SETTLE_S for o in present)
    if settled and sum(o.direction(t) != "still" for o in present) <= 1:
        out.append((("moving",), _pick(rng, ("What is moving right now?", "Which object is moving at the moment?",
                                             "What is in motion now?")), (t, t)))
    entered = sorted(o.enter_t for o in scene.objects if o.enter_t <= t)
    if entered and entered[-1] <= t - SETTLE_S and (len(entered) < 2 or entered[-1] - entered[-2] >= ORDER_GAP_S):
        out.append((("last_entered",), _pick(rng, ("Which object appeared most recently?",
                                                   "What was the last object to appear?",
                                                   "Which object showed up last?")), (entered[-1], t)))
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
    offers fewer well-defined ones), in CATEGORIES order; answers exact from the plan (answer_at)."""
    unknown = [c for c in categories if c not in BUILDERS]
    if unknown:
        raise QuestionError(f"categories: expected some of {CATEGORIES}, got unknown {unknown}")
    if not 0 <= t_query < scene.spec.seconds:
        raise QuestionError(f"t_query: expected 0 <= t < {scene.spec.seconds:g} s, got {t_query!r}")
    out: list[QA] = []
    for category in categories:
        numeric = category == "time"
        candidates = [QA(text, answer_at(scene, key, t_query), category, t_query, numeric=numeric,
                         tolerance=TIME_TOLERANCE_S if numeric else 0.0, span=span, key=key)
                      for key, text, span in BUILDERS[category](scene, t_query, rng)]
        out.extend(_choose(candidates, per_category, rng))
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
