"""Scenes: deterministic per seed, prefixes of longer scenes, and pixels that agree with the event log."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.scene import COLOURS, DIRECTIONS, SHAPES, ZONES, SceneSpec, SceneSpecError, make_scene
from scenes.shapes import COLOUR_RGB, shape_mask

SEEDS = (0, 7, 123)


def _same(a, b) -> bool:
    return a.objects == b.objects and a.events == b.events


@pytest.mark.parametrize("seed", SEEDS)
def test_deterministic_per_seed(seed):
    """Given a spec, when the scene is made twice, then plan, log and pixels are identical; another seed
    gives another scene."""
    spec = SceneSpec(seed=seed, seconds=20)
    a, b = make_scene(spec), make_scene(spec)
    assert _same(a, b)
    for t in (0.0, 7.3, 19.9):
        assert np.array_equal(a.render(t), b.render(t)) and np.array_equal(a.labels(t), b.labels(t))
    assert not _same(a, make_scene(SceneSpec(seed=seed + 1, seconds=20)))


def test_a_scene_is_the_prefix_of_a_longer_one():
    """The first minute of a 10-minute scene is the 1-minute scene of the same seed, pixel for pixel."""
    short, long = make_scene(SceneSpec(seed=3, seconds=60)), make_scene(SceneSpec(seed=3, seconds=600))
    for t in np.arange(0, 60, 2.5):
        assert np.array_equal(short.render(t), long.render(t)), t
    assert short.events == tuple(e for e in long.events if e.t < 60)


@pytest.mark.parametrize("seed", range(12))
def test_objects_are_unique_sized_and_limited(seed):
    spec = SceneSpec(seed=seed, max_objects=(1, 2, 3, 5)[seed % 4])
    scene = make_scene(spec)
    assert [o.enter_t for o in scene.objects] == sorted(o.enter_t for o in scene.objects)
    shapes, colours = [o.shape for o in scene.objects], [o.colour for o in scene.objects]
    assert len(set(shapes)) == len(shapes) and len(set(colours)) == len(colours)
    assert set(shapes) <= set(SHAPES) and set(colours) <= set(COLOURS)
    assert all(40 <= o.size_px <= 60 for o in scene.objects)
    for t in np.arange(0, 60, 0.25):
        assert len(scene.state_at(t)) <= spec.max_objects


def _centroid(labels: np.ndarray, index: int) -> tuple[float, float]:
    rows, cols = np.nonzero(labels == index)
    return cols.mean() + 0.5, rows.mean() + 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_pixels_agree_with_the_log(seed):
    """Given the event log alone, when frames are rendered, then an object is on screen exactly between
    its enter and leave events, its colour sits at its stated centre, labelled pixels have its colour,
    and its pixels stand still between a stop and the next start and move otherwise."""
    spec = SceneSpec(seed=seed, seconds=60)
    scene = make_scene(spec)
    by_object: dict[int, list] = {}
    for event in scene.events:
        by_object.setdefault(event.index, []).append(event)
    times = np.arange(0, 60, 0.5)
    frames = {t: (scene.render(t), scene.labels(t)) for t in times}
    for index, events in by_object.items():
        enter = next(e.t for e in events if e.kind == "enter")
        leave = next((e.t for e in events if e.kind == "leave"), np.inf)
        colour = COLOUR_RGB[scene.objects[index].colour]
        for t in times:
            image, labels = frames[t]
            on_screen = (labels == index).any()
            assert on_screen == (enter <= t < leave), (index, t)
            if not on_screen:
                continue
            assert (image[labels == index] == colour).all()
            state = next(s for s in scene.state_at(t) if s.index == index)
            x, y = state.centre
            assert labels[int(y), int(x)] == index and tuple(image[int(y), int(x)]) == colour
            motion = [e for e in events if e.kind in ("start", "stop") and e.t <= t]
            moving = bool(motion) and motion[-1].kind == "start"
            nxt = t + 0.1
            if nxt < leave and not any(t < e.t <= nxt for e in events):
                # unoccluded in both frames: the centroid of its pixels is its position
                size = scene.objects[index].size_px
                full = [shape_mask(scene.objects[index].shape, size, *s.centre, spec.height, spec.width)[1].sum()
                        for s in (state, next(s for s in scene.state_at(nxt) if s.index == index))]
                later = scene.labels(nxt)
                if (labels == index).sum() == full[0] and (later == index).sum() == full[1]:
                    shift = np.hypot(*np.subtract(_centroid(later, index), _centroid(labels, index)))
                    assert (shift > 1.0) == moving, (index, t, shift, moving)
    assert all(set(np.unique(labels)) <= set(range(-1, len(scene.objects))) for _, labels in frames.values())


def test_background_never_takes_an_object_colour():
    scene = make_scene(SceneSpec(seed=11, seconds=10))
    for t in (0.0, 5.0, 9.5):
        image, labels = scene.render(t), scene.labels(t)
        background = image[labels == -1].astype(int)
        for rgb in COLOUR_RGB.values():
            assert np.abs(background - rgb).max(axis=1).min() > 40


def test_every_zone_and_direction_occurs():
    """Across a few scenes, objects visit all 9 zones and move in all 4 directions and stand still."""
    words = {(s.zone, s.direction) for seed in range(4) for t in np.arange(0, 60, 1.0)
             for s in make_scene(SceneSpec(seed=seed)).state_at(t)}
    assert {z for z, _ in words} == set(ZONES)
    assert {d for _, d in words} == set(DIRECTIONS)


def test_url_round_trip_and_clear_errors():
    spec = SceneSpec(seed=7, seconds=12.5, width=160, height=120, fps=5, max_objects=3)
    assert SceneSpec.from_url(spec.to_url()) == spec
    assert SceneSpec.from_url("scene://?seed=9") == SceneSpec(seed=9)
    for url, words in (("scene://?seconds=5", "expected a seed"),
                       ("scene://?seed=1&colour=red", "unknown key 'colour'"),
                       ("scene://?seed=x", "seed='x' is not an integer"),
                       ("scene://?seed=1&width=63", "even and >= 64"),
                       ("synthetic://?seed=1", "expected a scene:// URL"), ("scene://?seed=1&seconds=0", "> 0")):
        with pytest.raises(SceneSpecError, match=words):
            SceneSpec.from_url(url)
    assert SceneSpec(seed=np.int64(7), seconds=np.float32(12.5), width=np.int32(160), height=120, fps=5,
                     max_objects=3) == spec
    for bad, words in ((dict(seed=1.5), "seed: expected an integer"), (dict(seed=True), "seed: expected an integer"),
                       (dict(seed=1, seconds="60"), "seconds: expected a number"), (dict(seed=-1), ">= 0")):
        with pytest.raises(SceneSpecError, match=words):
            SceneSpec(**bad)
    with pytest.raises(ValueError, match="expected 0 <= t < 60"):
        make_scene(SceneSpec(seed=1)).render(60.0)
