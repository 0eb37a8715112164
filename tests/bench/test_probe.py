"""bench/probe.py: per-token labels agree with the scene, and a short probe run on tiny oracle memories returns
the documented fields."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.probe import ATTRIBUTES, CLASSES, MAX_SECONDS, encode_motion, oracle_memories, probe_accuracy, token_labels
from compressor.motion import MOTION_FEATURES
from scenes.plan import DIRECTIONS
from scenes.scene import ZONES, SceneSpec, make_scene, zone_of
from scenes.shapes import COLOURS, SHAPES

#: Seed 7 at 12 s: a magenta star from 0 s, a cyan circle from 6.68 s.
HELDOUT = SceneSpec(seed=7, seconds=12.0)


@pytest.fixture(scope="module")
def tiny_memories():
    train = oracle_memories(SceneSpec(seed=100_005, seconds=12.0), snapshots=2, dim=16)
    heldout = oracle_memories(HELDOUT, snapshots=2, dim=16)
    return train, heldout


def test_token_labels_name_each_tokens_object(tiny_memories):
    _, heldout = tiny_memories
    memory, scene, t_query = heldout[-1]
    labels = token_labels(memory, scene, t_query)
    assert set(labels) == set(ATTRIBUTES)
    assert set(memory.objects.tolist()) >= {-1, 0, 1}  # background and both objects hold tokens
    w, h = scene.spec.width, scene.spec.height
    for k, index in enumerate(memory.objects):
        if index < 0:
            assert labels["object"][k] == 0
            assert all(labels[a][k] == -1 for a in ATTRIBUTES if a != "object")
            continue
        obj = scene.objects[index]
        assert labels["object"][k] == 1
        assert SHAPES[labels["shape"][k]] == obj.shape and COLOURS[labels["colour"][k]] == obj.colour
        assert ZONES[labels["zone"][k]] == zone_of(*obj.position(t_query), w, h)
        assert DIRECTIONS[labels["direction"][k]] == obj.direction(t_query)
        assert labels["enter_s"][k] == round(obj.enter_t)
    assert all(0 <= labels[a].max() < n for a, n in CLASSES.items())


def test_an_object_out_of_view_has_no_zone_or_direction(tiny_memories):
    _, heldout = tiny_memories
    memory, scene, _ = heldout[-1]
    circle = memory.objects == 1
    assert not scene.objects[1].present(3.0)
    labels = token_labels(memory, scene, 3.0)  # before the circle enters
    assert (labels["zone"][circle] == -1).all() and (labels["direction"][circle] == -1).all()
    assert (labels["shape"][circle] == SHAPES.index("circle")).all() and (labels["enter_s"][circle] == 7).all()
    star = memory.objects == 0
    assert (labels["zone"][star] >= 0).all() and (labels["direction"][star] >= 0).all()


def test_entry_seconds_are_clipped_and_a_memory_without_objects_is_refused(tiny_memories):
    _, heldout = tiny_memories
    memory, _, t_query = heldout[-1]
    scene = make_scene(HELDOUT)  # a copy of its own: the circle made to enter (on paper) after MAX_SECONDS
    scene.objects = (scene.objects[0], dataclasses.replace(scene.objects[1], enter_t=500.0))
    assert (token_labels(memory, scene, t_query)["enter_s"][memory.objects == 1] == MAX_SECONDS).all()
    with pytest.raises(ValueError, match="objects"):
        token_labels(dataclasses.replace(memory, objects=None), scene, t_query)


def test_encode_motion_is_finite_for_hour_long_seconds():
    motion = torch.rand(8, len(MOTION_FEATURES)) * 3600.0
    encoded = encode_motion(motion)
    assert encoded.shape[0] == 8 and torch.isfinite(encoded).all()


def test_short_probe_run_returns_the_documented_fields(tiny_memories):
    torch.set_num_threads(1)
    train, heldout = tiny_memories
    result = probe_accuracy(train, heldout, steps=5, seed=0)
    assert set(result) == {"per_attribute", "chance", "tokens", "enter_s_within_1", "train_tokens", "steps", "s"}
    assert set(result["per_attribute"]) == set(result["chance"]) == set(result["tokens"]) == set(ATTRIBUTES)
    assert result["train_tokens"] == sum(m.base.shape[0] for m, _, _ in train)
    assert result["tokens"]["object"] == sum(m.base.shape[0] for m, _, _ in heldout)
    assert all(0 < n <= result["tokens"]["object"] for n in result["tokens"].values())
    assert result["steps"] == 5 and result["s"] > 0
    for a in ATTRIBUTES:
        assert 0.0 <= result["per_attribute"][a] <= 100.0 and 0.0 < result["chance"][a] <= 100.0
    assert result["per_attribute"]["enter_s"] <= result["enter_s_within_1"] <= 100.0
    assert np.isfinite(list(result["per_attribute"].values())).all()
