"""Questions: every answer follows from the event log and the pixels (recomputed here independently of
scenes.questions), scoring and suites behave as documented."""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from scenes.questions import (CATEGORIES, QA, QuestionError, answer_at, chance, is_correct, normalise,
                              questions)
from scenes.scene import COLOURS, SHAPES, ZONES, SceneSpec, make_scene
from scenes.suites import SUITES, TRAIN_SEED_START, SuiteError, last_sampled_time, sampled_times, suite

SAMPLE_PERIOD_S = 0.5


def _mentioned(scene, question: str) -> list:
    """Objects the question names, in order of mention (by shape, colour or both: each unique)."""
    found = []
    for match in re.finditer(r"\b(%s)\b" % "|".join(COLOURS + SHAPES), question):
        word = match.group(1)
        obj = next((o for o in scene.objects if word in (o.colour, o.shape)), None)
        if obj is not None and (not found or found[-1] is not obj):
            found.append(obj)
    return found


def _pixel_centre(scene, index: int, t: float) -> tuple[float, float] | None:
    """Centre of the object's bounding box in the labels, or None when another object touches that box
    (a partly hidden object's box is not its own)."""
    labels = scene.labels(t)
    rows, cols = np.nonzero(labels == index)
    box = labels[max(0, rows.min() - 2):rows.max() + 3, max(0, cols.min() - 2):cols.max() + 3]
    if np.isin(box, [-1, index], invert=True).any():
        return None
    return (cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2


def _oracle(scene, qa: QA) -> str | None:
    """The answer from the event log (enter/leave/start/stop) and rendered labels only (None: the pixels
    needed are partly hidden by another object)."""
    t, q, events = qa.t_query, qa.question, [e for e in scene.events if e.t <= qa.t_query]
    entered = {e.index: e.t for e in events if e.kind == "enter"}
    left = {e.index for e in events if e.kind == "leave"}
    present = [i for i in entered if i not in left]
    named = _mentioned(scene, q)
    if qa.category == "content":
        colour_word = next(w for w in COLOURS + SHAPES if re.search(rf"\b{w}\b", q))
        return named[0].colour if colour_word in SHAPES else named[0].shape
    if qa.category == "existence":
        colour, shape = re.search(r"(\w+) (\w+)(?: appear| been)?\b", q.split(" a ", 1)[1]).groups()
        return "yes" if any(scene.objects[i].name == f"{colour} {shape}" for i in entered) else "no"
    if qa.category == "count":
        return str(len(present) if re.search(r"now|moment", q) else len(entered))
    if qa.category == "position":
        if (centre := _pixel_centre(scene, named[0].index, t)) is None:
            return None
        x, y = centre
        col, row = min(2, int(3 * x / scene.spec.width)), min(2, int(3 * y / scene.spec.height))
        return ZONES[3 * row + col]
    if qa.category in ("direction", "recency") and re.search(r"mov|motion|heading", q):
        def direction(i: int) -> str | None:
            motion = [e.kind for e in events if e.index == i and e.kind in ("start", "stop")]
            if not motion or motion[-1] == "stop":
                return "still"
            before, now = _pixel_centre(scene, i, t - SAMPLE_PERIOD_S), _pixel_centre(scene, i, t)
            if before is None or now is None:
                return None
            (x0, y0), (x1, y1) = before, now
            if abs(x1 - x0) > abs(y1 - y0):
                return "right" if x1 > x0 else "left"
            return "down" if y1 > y0 else "up"
        if qa.category == "direction":
            return direction(named[0].index)
        moving = [scene.objects[i].name for i in sorted(present)
                  if [e.kind for e in events if e.index == i and e.kind in ("start", "stop")][-1:] == ["start"]]
        return " and ".join(moving) or "nothing"
    if qa.category == "recency":
        return scene.objects[max(entered, key=entered.get)].name
    if qa.category == "order":
        return min(named, key=lambda o: entered[o.index]).name
    if qa.category == "time":
        return str(round(entered[named[0].index]))
    raise AssertionError(qa)


@pytest.mark.parametrize("seed", range(10))
def test_every_answer_follows_from_the_log(seed):
    """Given a scene, when questions are asked at several times, then each answer is what the event log
    and the pixels say, found without scenes.questions."""
    scene = make_scene(SceneSpec(seed=seed))
    rng = np.random.default_rng(seed)
    checked = hidden = 0
    for t_query in (20.0, 41.5, 59.5):
        for qa in questions(scene, t_query, rng, per_category=3):
            assert qa.category in CATEGORIES and qa.t_query == t_query
            assert answer_at(scene, qa.key, t_query) == qa.answer
            truth = _oracle(scene, qa)
            if truth is None:
                hidden += 1
                continue
            assert is_correct(truth, qa), (qa, truth)
            checked += 1
    assert checked >= 30 and hidden <= checked // 5


def test_questions_are_deterministic_and_categories_selectable():
    scene = make_scene(SceneSpec(seed=4))
    a = questions(scene, 59.5, np.random.default_rng(1), per_category=2)
    assert a == questions(scene, 59.5, np.random.default_rng(1), per_category=2)
    only = questions(scene, 59.5, np.random.default_rng(1), categories=("time", "order"))
    assert {q.category for q in only} == {"time", "order"}
    assert all(q.numeric and q.tolerance == 1.0 for q in only if q.category == "time")
    with pytest.raises(QuestionError, match="unknown"):
        questions(scene, 59.5, np.random.default_rng(1), categories=("colour",))
    with pytest.raises(QuestionError, match="t_query"):
        questions(scene, 60.0, np.random.default_rng(1))


def test_answer_at_follows_time():
    """The same question asked before an object entered, while it is there and after it left."""
    scene = make_scene(SceneSpec(seed=7))
    obj = next(o for o in scene.objects if o.leave_t is not None and o.enter_t > 0)
    ever = ("ever", obj.colour, obj.shape)
    assert [answer_at(scene, ever, t) for t in (obj.enter_t - 0.1, obj.enter_t, obj.leave_t)] == ["no", "yes", "yes"]
    assert answer_at(scene, ("zone", obj.index), obj.leave_t) == "gone"
    assert answer_at(scene, ("enter_time", obj.index), obj.leave_t) == str(round(obj.enter_t))
    with pytest.raises(QuestionError, match="question key"):
        answer_at(scene, ("size", 0), 1.0)


def test_scoring():
    yes = QA("Was there ever a red star?", "yes", "existence", 10.0)
    assert is_correct(" Yes.", yes) and not is_correct("no", yes) and not is_correct("yes, twice", yes)
    star = QA("What came first?", "red star", "order", 10.0)
    assert is_correct("The red star", star) and not is_correct("red", star)
    assert is_correct("Top-left", QA("Where?", "top left", "position", 1.0))
    assert is_correct("in the center", QA("Where?", "centre", "position", 1.0)) is False  # exact match only
    assert normalise("  The CENTER. ") == "centre" and normalise("three") == "3"
    when = QA("When?", "12", "time", 30.0, numeric=True, tolerance=1.0)
    assert is_correct("13 seconds", when) and is_correct("11", when) and not is_correct("14", when)
    assert not is_correct("soon", when)
    assert all(0 < chance(c) <= 0.5 for c in CATEGORIES)
    with pytest.raises(QuestionError):
        chance("colour")


def test_heldout_suite_is_balanced_reproducible_and_disjoint_from_training():
    pairs = suite("heldout")
    assert len(pairs) == 60 and pairs == suite("heldout")
    assert all(spec.seed < TRAIN_SEED_START for spec, _ in pairs)
    qas = [qa for _, qs in pairs for qa in qs]
    by_category = collections.Counter(qa.category for qa in qas)
    assert set(by_category) == set(CATEGORIES) and min(by_category.values()) >= 40
    answers = collections.Counter(qa.answer for qa in qas if qa.category == "existence")
    assert 0.4 <= answers["yes"] / (answers["yes"] + answers["no"]) <= 0.6
    assert all(qa.t_query == last_sampled_time(spec) == 59.5 for spec, qs in pairs for qa in qs)
    assert suite("heldout-small") == pairs[:8]


def test_demo_and_long_suites():
    (spec, qas), = suite("demo")
    assert len({qa.category for qa in qas}) >= 5
    long, first = suite("long"), suite("long-first-minute")
    assert all(spec.seconds >= 600 for spec, _ in long) and all(spec.seconds == 60 for spec, _ in first)
    for (spec, qas), (short, early) in zip(long, first):
        assert spec.seed == short.seed
        about_first = [qa for qa in qas if qa.span[1] < 60]
        assert about_first and len(about_first) < len(qas)  # and some about the last minute
        assert [(q.question, q.answer) for q in about_first] == [(q.question, q.answer) for q in early]
    with pytest.raises(SuiteError, match="expected one of"):
        suite("everything")
    assert set(SUITES) >= {"heldout", "heldout-small", "demo", "long"}


def test_sampled_times_are_the_pipeline_samplers_frames():
    """The frames training renders are the ones the pipeline's 2 Hz sampler keeps from the camera."""
    from stream.sampling import chunks

    spec = SceneSpec(seed=2, seconds=4.0, width=64, height=64, fps=3)
    got = np.concatenate([c.timestamps for c in chunks(spec.to_url(), rate_hz=2, frames_per_chunk=4)])
    np.testing.assert_array_equal(sampled_times(spec), got)
    assert last_sampled_time(spec) == got[-1]
