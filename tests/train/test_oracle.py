"""Oracle memories and the dense training signal: a scene's true label maps through the pipeline's own
streaming compressor give a memory whose tokens, key map and motion agree with the scene's event log; each
token's answer words name its object (background names "nothing" and nothing else); a question's focus is
the tokens of the objects its answer depends on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenes.questions import questions
from scenes.scene import SceneSpec, make_scene, zone_of
from scenes.suites import sampled_times
from train.formats import MemoryFormat
from train.memory import stream_memories
from train.config import ModelInit
from train.model import load_model, make_dynamics, scene_tokenizer
from train.objective import Example, QAObjective
from train.config import DataConfig
from train.oracle import (ATTRIBUTES, IGNORE, MOTION_COLUMNS, Concepts, cell_label_maps, focus_tokens,
                          oracle_tokens, referents, token_targets)
from train.scene_data import scene_examples
from compressor.motion import MOTION_FEATURES

GRID = (14, 14)
SPEC = SceneSpec(seed=100_021, seconds=40.0)


@pytest.fixture(scope="module")
def oracle():
    """The scene, its sampled times and label maps, and its TD@32 memory at the last chunk."""
    scene = make_scene(SPEC)
    times = sampled_times(SPEC)
    labels = cell_label_maps(scene, times, GRID)
    tokens = oracle_tokens(Concepts.make(128), scene, labels, seed=SPEC.seed)
    last = -(-len(times) // 4) - 1
    (memory,) = stream_memories(tokens, times, MemoryFormat("token_dynamics", 32), 4, [last], labels=labels)
    return scene, times, labels, memory


def _feature(memory, name: str) -> np.ndarray:
    return memory.motion[:, MOTION_FEATURES.index(name)].numpy()


def test_label_maps_are_the_majority_object_of_each_cell():
    scene = make_scene(SceneSpec(seed=100_003, seconds=30, width=280, height=280))
    t = next(float(t) for t in np.arange(0, 30, 0.5) if scene.visible(float(t)))
    cells = scene.cell_labels(t, GRID)
    pixels = scene.labels(t)  # [280, 280]: each cell is 20 x 20 pixels
    for r in range(14):
        for c in range(14):
            values, counts = np.unique(pixels[20 * r:20 * r + 20, 20 * c:20 * c + 20], return_counts=True)
            assert cells[r, c] == values[counts.argmax()]


def test_every_object_seen_has_its_own_tokens_and_background_has_the_rest(oracle):
    scene, times, labels, memory = oracle
    t_end = float(times[-1])
    seen = {o.index for o in scene.objects if o.enter_t <= t_end - 1.0}
    assert seen and seen <= set(memory.objects.tolist())
    assert (memory.objects == -1).sum() >= memory.base.shape[0] // 2  # the budget goes mostly to background
    # an object's tokens are nearest its own concept: the compressor kept them apart
    table = Concepts.make(128).object_tokens(scene)  # [N + 1, D]
    for k, index in enumerate(memory.objects):
        if index >= 0:
            cos = torch.nn.functional.cosine_similarity(memory.base[k][None], table, dim=1)
            assert int(cos.argmax()) == index + 1


def test_motion_of_object_tokens_agrees_with_the_event_log(oracle):
    scene, times, labels, memory = oracle
    t_end = float(times[-1])
    present, row, col = (_feature(memory, n) for n in ("present_now", "row_now", "col_now"))
    first = _feature(memory, "first_seen_s")
    w, h = scene.spec.width, scene.spec.height
    checked = 0
    for k, index in enumerate(memory.objects):
        if index < 0:
            continue
        obj = scene.objects[int(index)]
        # first seen at the first sampled frame at or after it entered (2 frames/s: within 0.5 s)
        assert obj.enter_t - 1e-6 <= first[k] <= obj.enter_t + 0.5 + 1e-6
        if obj.present(t_end) and obj.enter_t <= t_end - 0.5:
            assert present[k] == 1.0
            x, y = obj.position(t_end)
            # the token's mean cell in the latest frame is the object's centre, to within a cell or so
            assert abs(col[k] - x / w) < 0.12 and abs(row[k] - y / h) < 0.12
            checked += 1
        elif obj.leave_t is not None and obj.leave_t < t_end - 0.5:
            assert present[k] == 0.0
    assert checked >= 1


def test_token_words_name_the_object_and_background_names_nothing(oracle):
    scene, times, labels, memory = oracle
    tokenizer = scene_tokenizer()
    t_end = float(times[-1])
    targets = token_targets(tokenizer, scene, memory.objects, t_end)
    assert targets.shape == (memory.base.shape[0], len(ATTRIBUTES))
    first = lambda word: tokenizer(word, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    for k, index in enumerate(memory.objects):
        row = targets[k].tolist()
        if index < 0:  # background: "nothing" as shape and colour, no zone, direction or time to learn
            assert row == [first("nothing"), first("nothing"), IGNORE, IGNORE, IGNORE]
            continue
        obj = scene.objects[int(index)]
        assert row[0] == first(obj.shape) and row[1] == first(obj.colour)
        if obj.present(t_end):
            assert row[2] == first(zone_of(*obj.position(t_end), scene.spec.width, scene.spec.height))
            assert row[3] == first(obj.direction(t_end))
        else:  # out of view: its zone and direction are not asked
            assert row[2] == row[3] == IGNORE
        assert row[4] == tokenizer(str(int(round(obj.enter_t))), add_special_tokens=False)["input_ids"][0]


def test_focus_is_the_tokens_of_the_objects_the_answer_depends_on(oracle):
    scene, times, labels, memory = oracle
    t_end = float(times[-1])
    asked = questions(scene, t_end, np.random.default_rng(0), per_category=3)
    order = [qa for qa in asked if qa.category == "order"]
    assert order
    for qa in order:
        wanted = referents(scene, qa.key, t_end)
        assert sorted(wanted) == sorted(qa.key[1:])
        focus = focus_tokens(memory.objects, wanted)
        assert set(memory.objects[focus.numpy()].tolist()) == set(wanted)
    count = next(qa for qa in asked if qa.key == ("count_ever",))
    assert len(referents(scene, count.key, t_end)) == int(count.answer)


def test_dense_losses_train_on_an_oracle_example(oracle):
    scene, times, labels, memory = oracle
    vlm = load_model(ModelInit(tokenizer="scenes"), seed=0, device="cpu")
    objective = QAObjective(vlm, make_dynamics(vlm, 0), aux_weight=1.0, focus_weight=1.0)
    t_end = float(times[-1])
    qa = next(q for q in questions(scene, t_end, np.random.default_rng(1)) if q.category == "content")
    targets = token_targets(vlm.tokenizer, scene, memory.objects, t_end)
    focus = focus_tokens(memory.objects, referents(scene, qa.key, t_end))
    example = Example(memory, qa.question, qa.answer, True, qa.category, qa, targets=targets, focus=focus)
    torch.manual_seed(0)
    loss, answer_tokens = objective([example])
    assert torch.isfinite(loss) and answer_tokens >= 2
    assert objective.last["aux"] > 0 and objective.last["focus"] > 0
    loss.backward()
    assert vlm.model.lm_head.weight.grad is not None and torch.isfinite(vlm.model.lm_head.weight.grad).all()
    objective.serving()
    assert vlm.model.config.text_config._attn_implementation != "eager"


def test_motion_words_train_the_cross_dynamics_attention_from_fused_memories_only(oracle):
    """The motion loss reaches the zero-initialised attention at once (its output layer gets a gradient on the
    first step), and a memory read without motion is never asked motion words."""
    scene, times, labels, memory = oracle
    vlm = load_model(ModelInit(tokenizer="scenes"), seed=0, device="cpu")
    dynamics = make_dynamics(vlm, 0)
    objective = QAObjective(vlm, dynamics, motion_weight=1.0)
    t_end = float(times[-1])
    qa = next(q for q in questions(scene, t_end, np.random.default_rng(1)) if q.category == "position")
    targets = token_targets(vlm.tokenizer, scene, memory.objects, t_end)
    fused = Example(memory, qa.question, qa.answer, True, qa.category, qa, targets=targets)
    loss, _ = objective([fused])
    assert objective.last["motion"] > 0
    loss.backward()
    assert dynamics.out.weight.grad.abs().sum() > 0
    dynamics.zero_grad(set_to_none=True)
    unfused = Example(memory, qa.question, qa.answer, False, qa.category, qa, targets=targets)
    objective([unfused])[0].backward()
    assert objective.last["motion"] == 0 and dynamics.out.weight.grad is None

    formats = [MemoryFormat("token_dynamics", 32), MemoryFormat("token_dynamics", 32, centroid_only=True)]
    spec = SceneSpec(seed=100_022, seconds=12.0)
    with_motion, centroid = scene_examples(vlm, spec, formats, DataConfig(), seed=0,
                                           oracle=Concepts.make(vlm.hidden_size), targets=True)
    assert any((ex.targets[:, MOTION_COLUMNS] != IGNORE).any() for ex in with_motion)
    assert all((ex.targets[:, MOTION_COLUMNS] == IGNORE).all() for ex in centroid)
    assert all((ex.targets[:, :2] != IGNORE).all() for ex in centroid)  # content words are still asked
