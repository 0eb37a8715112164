"""The "hour" suite (bench/qa.py's hour section): questions about an hour scene's first minute (asked of a
window memory an hour back) and its last minute (asked of the live memory), and its fresh 1-minute twins.

Only plans and event logs are built here (no frame of an hour is rendered)."""

from __future__ import annotations

import pytest

from scenes.questions import answer_at
from scenes.scene import make_scene
from scenes.suites import FIRST_MINUTE_S, HOUR_SECONDS, last_sampled_time, suite

#: Question kinds about one object's entry (its colour and shape are asked about once it has entered).
ENTRY_KINDS = ("colour", "shape", "enter_time")


@pytest.fixture(scope="module")
def hour():
    return suite("hour"), suite("hour-first-minute")


def _split(spec, qas):
    t_query = last_sampled_time(spec)
    first = [qa for qa in qas if qa.span[1] < FIRST_MINUTE_S]
    last = [qa for qa in qas if qa.span[0] >= t_query - FIRST_MINUTE_S]
    return t_query, first, last


def test_every_question_is_about_the_first_or_the_last_minute(hour):
    pairs, _ = hour
    assert pairs and all(spec.seconds == HOUR_SECONDS for spec, _ in pairs)
    for spec, qas in pairs:
        t_query, first, last = _split(spec, qas)
        assert first and last and len(first) + len(last) == len(qas)  # each in exactly one of the two
        assert all(qa.t_query == t_query for qa in qas)
        assert all(0.0 <= qa.span[0] <= qa.span[1] < FIRST_MINUTE_S for qa in first)
        assert all(t_query - FIRST_MINUTE_S <= qa.span[0] <= qa.span[1] <= t_query for qa in last)


def test_spans_agree_with_the_event_log(hour):
    """What a first-minute question depends on entered in the first minute; what a last-minute question
    asks about an object is about an object in view at the hour's end (checked on the plan, not the spans)."""
    pairs, _ = hour
    for spec, qas in pairs:
        scene = make_scene(spec)
        t_query, first, last = _split(spec, qas)
        for qa in first:
            kind, args = qa.key[0], qa.key[1:]
            if kind in ENTRY_KINDS or kind == "first":
                assert all(scene.objects[i].enter_t < FIRST_MINUTE_S for i in args), qa
            elif kind == "ever":
                assert qa.answer == "yes" and any(o.name == f"{args[0]} {args[1]}" and o.enter_t < FIRST_MINUTE_S
                                                  for o in scene.objects), qa
        for qa in last:
            if qa.key[0] in ("zone", "direction"):
                assert scene.objects[qa.key[1]].present(t_query), qa


def test_the_one_minute_twins_ask_the_first_minute_questions_with_answers_at_their_end(hour):
    pairs, twins = hour
    assert len(twins) == len(pairs)
    for (spec, qas), (short, early) in zip(pairs, twins):
        assert short.seed == spec.seed and short.seconds == FIRST_MINUTE_S
        assert (short.width, short.height, short.fps) == (spec.width, spec.height, spec.fps)
        _, first, _ = _split(spec, qas)
        assert [(q.question, q.key) for q in early] == [(q.question, q.key) for q in first]
        scene, t_end = make_scene(short), last_sampled_time(short)
        assert t_end == FIRST_MINUTE_S - 0.5
        assert all(q.t_query == t_end and q.answer == answer_at(scene, q.key, t_end) for q in early)
        # The truth of a first-minute question does not change over the next hour: the twin and the hour
        # scene are asked the same thing with the same answer.
        assert [q.answer for q in early] == [q.answer for q in first]
