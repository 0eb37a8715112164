"""bench/probe.py: the question-text parser recovers every template's type and named objects, and a short probe
run on tiny oracle memories returns the documented fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.probe import TYPE_CATEGORY, encode_motion, named_objects, oracle_pairs, probe_accuracy, question_type
from compressor.motion import MOTION_FEATURES
from scenes.questions import CATEGORIES, questions
from scenes.scene import SceneSpec, make_scene


def _all_questions() -> list:
    """Every category's questions, many per category, from a few scenes at a few times (all wordings)."""
    out = []
    for seed in (100_001, 100_002, 100_003, 100_004):
        scene = make_scene(SceneSpec(seed=seed, seconds=60.0))
        rng = np.random.default_rng(seed)
        for t in (20.0, 39.5, 59.5):
            out += questions(scene, t, rng, per_category=40)
    return out


def test_question_type_matches_the_key_on_every_template_wording():
    # given: questions of every category built by the templates
    qas = _all_questions()
    assert {qa.category for qa in qas} == set(CATEGORIES)
    # when / then: the type read from the text alone is the key's kind, and its category the question's
    for qa in qas:
        assert question_type(qa.question) == qa.key[0], qa.question
        assert TYPE_CATEGORY[qa.key[0]] == qa.category


def test_named_objects_follow_the_text_order():
    scenes = {seed: make_scene(SceneSpec(seed=seed, seconds=60.0)) for seed in (100_001, 100_002)}
    for seed, scene in scenes.items():
        for qa in questions(scene, 59.5, np.random.default_rng(seed), per_category=40):
            named = named_objects(qa.question)
            if qa.key[0] == "first":
                a, b = (scene.objects[i] for i in qa.key[1:])
                assert named == [(a.colour, a.shape), (b.colour, b.shape)], qa.question
            elif qa.key[0] == "ever":
                assert named == [qa.key[1:]], qa.question
            elif qa.key[0] in ("colour", "shape", "zone", "direction", "enter_time"):
                obj = scene.objects[qa.key[1]]
                assert len(named) == 1 and named[0][0] in (obj.colour, None) and named[0][1] in (obj.shape, None)
    assert named_objects("Which came first: the red star or the circle?") == [("red", "star"), (None, "circle")]


def test_encode_motion_is_finite_for_hour_long_seconds():
    motion = torch.rand(8, len(MOTION_FEATURES)) * 3600.0
    encoded = encode_motion(motion)
    assert encoded.shape[0] == 8 and torch.isfinite(encoded).all()


@pytest.fixture(scope="module")
def tiny_pairs():
    train = oracle_pairs(SceneSpec(seed=100_005, seconds=12.0), snapshots=2, per_category=2, dim=16)
    heldout = oracle_pairs(SceneSpec(seed=7, seconds=12.0), snapshots=1, per_category=2, dim=16)
    return train, heldout


def test_short_probe_run_returns_the_documented_fields(tiny_pairs):
    torch.set_num_threads(1)
    train, heldout = tiny_pairs
    result = probe_accuracy(train, heldout, steps=5, seed=0)
    assert set(result) == {"accuracy", "per_category", "questions", "train_questions", "steps", "s"}
    assert result["questions"] == sum(len(q) for _, q in heldout) > 0
    assert result["train_questions"] == sum(len(q) for _, q in train) > 0
    assert result["steps"] == 5 and result["s"] > 0
    assert 0.0 <= result["accuracy"] <= 100.0
    assert result["per_category"] and set(result["per_category"]) <= set(CATEGORIES)
    assert all(0.0 <= a <= 100.0 for a in result["per_category"].values())
