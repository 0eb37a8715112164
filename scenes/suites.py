"""Evaluation sets defined in the repo, so every accuracy figure can be reproduced: scenes (by spec) and
their questions, asked at the time of the last frame a 2 frames/s sampler keeps (the scene's end).

Seeds below TRAIN_SEED_START are for evaluation; training draws seeds at or above it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from scenes.questions import QA, answer_at, questions
from scenes.scene import SceneSpec, make_scene

TRAIN_SEED_START = 100_000
SAMPLE_RATE_HZ = 2.0          # the pipeline's default sampling rate: questions are asked at its last frame
HELDOUT_SEEDS = range(0, 60)  # 60 scenes of 60 s, one question per category each
DEMO_SEED = 502         # a 30-s scene with 5 objects whose demo questions name 4 of them
DEMO_SECONDS = 30.0
DEMO_CATEGORIES = ("content", "count", "position", "direction", "order", "time")
LONG_SEEDS = range(1000, 1004)
LONG_SECONDS = 600.0
LONG_PER_CATEGORY = 6         # questions per category per long scene (the memory is built once per scene)
HOUR_SEEDS = range(1100, 1102)
HOUR_SECONDS = 3600.0
HOUR_PER_CATEGORY = 10        # about every first-minute question a scene offers (its last minute: ~4)
FIRST_MINUTE_S = 60.0
SUITES = ("heldout", "heldout-small", "demo", "long", "long-first-minute", "hour", "hour-first-minute")


class SuiteError(ValueError):
    """An unknown suite name."""


def sampled_times(spec: SceneSpec, rate_hz: float = SAMPLE_RATE_HZ) -> np.ndarray:
    """[T] float64 media times (s) of the frames of ``spec``'s camera that a ``rate_hz`` sampler keeps:
    the frames the pipeline encodes (training renders exactly these)."""
    from stream.sampling import Sampler  # the pipeline's own sampler, so the two can never disagree

    sampler = Sampler(rate_hz)
    times = (index / spec.fps for index in range(spec.num_frames))
    return np.array([t for t in times if sampler.keep(t)], dtype=np.float64)


def last_sampled_time(spec: SceneSpec, rate_hz: float = SAMPLE_RATE_HZ) -> float:
    """Media time (s) of the last frame a ``rate_hz`` sampler keeps: when a scene's questions are asked."""
    return float(sampled_times(spec, rate_hz)[-1])


def training_text(count: int = 128) -> list[str]:
    """Question and answer lines of `count` training-seed scenes (60 s, asked at 15 s intervals, two per
    category), each question and its answer on lines of their own as in a chat: the text a tokenizer for scene
    questions learns its vocabulary from. Never the evaluation seeds."""
    lines = []
    for seed in range(TRAIN_SEED_START, TRAIN_SEED_START + count):
        scene, rng = make_scene(SceneSpec(seed=seed)), np.random.default_rng([seed, 6])
        for t_query in (15.0, 30.0, 45.0, 59.5):
            lines += [f"{qa.question}\n{qa.answer}" for qa in questions(scene, t_query, rng, 2)]
    return lines


def _ask(spec: SceneSpec, per_category: int = 1, categories: tuple[str, ...] | None = None) -> list[QA]:
    scene = make_scene(spec)
    rng = np.random.default_rng([spec.seed, 5])
    kwargs = {"categories": categories} if categories else {}
    return questions(scene, last_sampled_time(spec), rng, per_category, **kwargs)


def _first_and_last(seeds: range, seconds: float, per_category: int) -> list[tuple[SceneSpec, list[QA]]]:
    """Scenes of ``seconds``: questions about their first minute (their span ends within it) and their last
    minute ("now"; the span starts within it), ``per_category`` asked per category before that split."""
    out = []
    for seed in seeds:
        spec = SceneSpec(seed=seed, seconds=seconds)
        qas = _ask(spec, per_category=per_category)
        t_query = last_sampled_time(spec)
        first = [qa for qa in qas if qa.span[1] < FIRST_MINUTE_S]
        last = [qa for qa in qas if qa.span[0] >= t_query - FIRST_MINUTE_S]
        out.append((spec, first + last))
    return out


def _first_minute_twins(pairs: Iterable[tuple[SceneSpec, Sequence[QA]]]) -> list[tuple[SceneSpec, list[QA]]]:
    """The first minute of each scene of ``pairs`` as a 1-minute scene (the same frames: scenes are prefixes
    of longer ones), asked the first-minute questions with their answers at the 1-minute scene's end: the
    baseline for a memory of a long stream."""
    out = []
    for spec, qas in pairs:
        short = SceneSpec(seed=spec.seed, seconds=FIRST_MINUTE_S, width=spec.width, height=spec.height,
                          fps=spec.fps, max_objects=spec.max_objects)
        scene, t_query = make_scene(short), last_sampled_time(short)
        moved = [dataclasses.replace(qa, t_query=t_query, answer=answer_at(scene, qa.key, t_query))
                 for qa in qas if qa.span[1] < FIRST_MINUTE_S]
        out.append((short, moved))
    return out


@lru_cache(maxsize=None)
def _suite(name: str) -> tuple[tuple[SceneSpec, tuple[QA, ...]], ...]:
    if name == "heldout":
        pairs = [(spec, _ask(spec)) for spec in (SceneSpec(seed=s) for s in HELDOUT_SEEDS)]
    elif name == "heldout-small":
        pairs = [(spec, list(qas)) for spec, qas in _suite("heldout")[:8]]
    elif name == "demo":
        spec = SceneSpec(seed=DEMO_SEED, seconds=DEMO_SECONDS)
        pairs = [(spec, _ask(spec, categories=DEMO_CATEGORIES))]
    elif name == "long":
        pairs = _first_and_last(LONG_SEEDS, LONG_SECONDS, LONG_PER_CATEGORY)
    elif name == "long-first-minute":
        pairs = _first_minute_twins(_suite("long"))
    elif name == "hour":
        pairs = _first_and_last(HOUR_SEEDS, HOUR_SECONDS, HOUR_PER_CATEGORY)
    elif name == "hour-first-minute":
        pairs = _first_minute_twins(_suite("hour"))
    else:
        raise SuiteError(f"suite: expected one of {SUITES}, got {name!r}")
    return tuple((spec, tuple(qas)) for spec, qas in pairs)


def suite(name: str) -> list[tuple[SceneSpec, list[QA]]]:
    """The evaluation set ``name`` (SUITES) as (scene spec, questions) pairs; the same on every run.

    heldout: 60 scenes of 60 s, one question per category each (fewer where a scene has no well-defined one).
    heldout-small: the first 8 scenes of heldout (tests).
    demo: one 30-s scene and questions of six categories.
    long: 10-minute scenes with questions about their first minute and their last minute.
    long-first-minute: the same scenes cut to their first minute, with the same first-minute questions.
    hour: hour-long scenes with questions about their first minute (an hour back) and their last minute.
    hour-first-minute: the hour scenes cut to their first minute, with the same first-minute questions.
    """
    return [(spec, list(qas)) for spec, qas in _suite(name)]
