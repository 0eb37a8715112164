"""Vision warm-up: per-cell targets follow the scene's labels; a few steps train vision + projector only, and
the projector output is standardised exactly."""

from __future__ import annotations

import numpy as np
import torch

from scenes.scene import SceneSpec, make_scene
from scenes.shapes import COLOURS, SHAPES
from train.config import DataConfig, ModelInit, SceneData, TrainConfig, WarmupConfig
from train.model import load_model
from stream.sampling import resize_frames
from train.memory import encode
from train.warmup import cell_classes, standardise_projector, vision_warmup


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


def test_standardised_projector_gives_centred_unit_tokens_by_an_exact_affine_map():
    # given a random tiny model whose tokens share a large offset
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    scene = make_scene(SceneSpec(seed=100_004, seconds=10, width=128, height=96))
    frames = resize_frames(np.stack([scene.render(t) for t in np.arange(0, 10, 0.5)]), vlm.image_size)
    before = encode(vlm, frames).reshape(-1, vlm.hidden_size)  # [N * 196, D]
    # when the projector is standardised on these frames
    figures = standardise_projector(vlm, frames)
    after = encode(vlm, frames).reshape(-1, vlm.hidden_size)
    # then the tokens are centred with a mean per-dimension std of 1, and the map is the affine one
    assert figures["token_offset_before"] > 1 > 0.01 > figures["token_offset_after"]
    torch.testing.assert_close(after.mean(0), torch.zeros(vlm.hidden_size), atol=1e-4, rtol=0)
    assert abs(float(after.std(0).mean()) - 1) < 1e-4
    scale = before.std(0).mean()
    torch.testing.assert_close(after, (before - before.mean(0)) / scale, atol=1e-4, rtol=1e-4)
