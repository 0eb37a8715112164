"""Vision stage: per-cell targets follow the scene's labels; a few steps train vision + projector only; the
held-out accuracy is measured against the concept table."""

from __future__ import annotations

import numpy as np
import torch

from scenes.scene import SceneSpec, make_scene
from scenes.shapes import COLOURS, SHAPES
from train.config import DataConfig, ModelInit, SceneData, TrainConfig, WarmupConfig
from train.model import load_model
import train.warmup as train_warmup
from train.oracle import Concepts
from train.warmup import cell_accuracy, cell_classes, concept_table, heldout_frames, vision_warmup


def test_cell_classes_follow_the_label_map():
    scene = make_scene(SceneSpec(seed=100_003, seconds=30, width=280, height=280))
    t = next(t for t in np.arange(0, 30, 0.5) if scene.visible(float(t)))
    classes = cell_classes(scene, float(t), (14, 14))
    labels = scene.labels(float(t))  # [280, 280]: each 14 x 14 cell is 20 x 20 pixels
    for r in range(14):
        for c in range(14):
            block = labels[20 * r:20 * r + 20, 20 * c:20 * c + 20]
            values, counts = np.unique(block, return_counts=True)
            majority = int(values[counts.argmax()])
            if majority < 0:
                assert classes[r, c] == 0
            else:
                obj = scene.objects[majority]
                assert classes[r, c] == 1 + SHAPES.index(obj.shape) * len(COLOURS) + COLOURS.index(obj.colour)
    assert (classes > 0).any() and (classes == 0).any()


def test_warmup_lowers_its_loss_and_trains_only_the_vision_path():
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    config = TrainConfig(data=DataConfig(scenes=SceneData(count=2, seconds=(10, 10), width=128, height=96)),
                         vision_warmup=WarmupConfig(steps=12, lr=3e-3, batch_frames=4))
    before = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    torch.manual_seed(0)
    figures = vision_warmup(vlm, config, rank=0, world=1)
    assert figures["loss_last"] < figures["loss_first"]
    after = vlm.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.vision_tower.") for k in changed)
    assert any(k.startswith("model.multi_modal_projector.") for k in changed)
    assert not any(k.startswith(("model.language_model.", "lm_head.")) for k in changed)


def test_accuracy_is_measured_against_the_concept_table(monkeypatch):
    # given a tower whose cells are replaced by their exact concept tokens (what a perfect vision path gives)
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    table = concept_table(Concepts.make(vlm.hidden_size))
    frames, targets = heldout_frames(vlm.image_size, vlm.grid, 128, 96, count=8)
    perfect = table[torch.from_numpy(targets)]  # [N, gh, gw, D]
    monkeypatch.setattr(train_warmup, "encode", lambda model, f: perfect[: len(f)])
    figures = cell_accuracy(vlm, table, frames, targets)
    # then every object, object cell and background cell is right
    assert figures == {"object_means": 1.0, "object_cells": 1.0, "object_shape": 1.0, "object_colour": 1.0,
                       "background_cells": 1.0}
    assert (targets > 0).any()
