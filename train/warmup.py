"""Optional vision warm-up on scenes: teach the vision tower + projector to separate objects before QA training.

Per grid cell of every frame the target is the majority object under it, as a (shape, colour) class, or
background (class 0); a linear head on the projector output (the tokens the memory clusters) classifies it.
The head is thrown away afterwards: what stays is a vision path whose base tokens differ by object, with
its output standardised (`standardise_projector`) so that they differ in direction, not only in length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from scenes.scene import Scene, make_scene
from scenes.shapes import COLOURS, SHAPES
from stream.sampling import resize_frames
from train.config import TrainConfig
from train.memory import encode
from train.model import encode_frames_grad
from train.scene_data import scene_specs
from vlm.llava_onevision import LlavaOnevision

NUM_CLASSES = 1 + len(SHAPES) * len(COLOURS)  # background + every (shape, colour)
# Background is ~90% of the cells: unweighted, the tower learns "background" well and shapes hardly at all.
BACKGROUND_WEIGHT = 0.1
FRAME_POOL = 2048  # most frames rendered for the warm-up, then sampled from (memory: S x S x 3 bytes each)
STANDARDISE_FRAMES = 256  # frames the token statistics are measured on after the warm-up


def cell_classes(scene: Scene, t: float, grid: tuple[int, int]) -> np.ndarray:
    """[gh, gw] int64: per grid cell, the majority (shape, colour) class of scene.labels(t), 0 = background.

    Cells split the full frame evenly (the model input is the frame resized without keeping the aspect)."""
    labels = scene.labels(t)  # [H, W] object index or -1
    classes = np.zeros(len(scene.objects) + 1, dtype=np.int64)  # object index + 1 -> class
    for obj in scene.objects:
        classes[obj.index + 1] = 1 + SHAPES.index(obj.shape) * len(COLOURS) + COLOURS.index(obj.colour)
    pixel_class = classes[labels.astype(np.int64) + 1]  # [H, W]
    gh, gw = grid
    rows = np.arange(labels.shape[0]) * gh // labels.shape[0]  # [H] cell row of each pixel row
    cols = np.arange(labels.shape[1]) * gw // labels.shape[1]  # [W]
    counts = np.zeros((gh, gw, NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (rows[:, None], cols[None, :], pixel_class), 1)
    return counts.argmax(-1)  # [gh, gw]


class CellClassifier(nn.Module):
    """Vision tower + projector + a linear head: frames uint8 [T, S, S, 3] -> logits [T, gh, gw, NUM_CLASSES]."""

    def __init__(self, vlm: LlavaOnevision) -> None:
        super().__init__()
        self.vlm = vlm
        self.vision = vlm.model.model.vision_tower
        self.projector = vlm.model.model.multi_modal_projector
        self.head = nn.Linear(vlm.hidden_size, NUM_CLASSES).to(device=vlm.device, dtype=vlm.dtype)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(encode_frames_grad(self.vlm, frames))


def _frame_pool(config: TrainConfig, image_size: int, grid: tuple[int, int], rank: int,
                world: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [N, S, S, 3] at random times of this worker's training scenes, and their cell classes
    [N, gh, gw]."""
    rng = np.random.default_rng([config.seed, rank, 7])
    scenes = [make_scene(spec) for spec in scene_specs(config.data, config.seed, rank, world)]
    frames, targets = [], []
    for _ in range(min(FRAME_POOL, config.vision_warmup.steps * config.vision_warmup.batch_frames)):
        scene = scenes[int(rng.integers(len(scenes)))]
        t = float(rng.uniform(0, scene.spec.seconds))
        frames.append(resize_frames(scene.render(t)[None], image_size)[0])
        targets.append(cell_classes(scene, t, grid))
    return np.stack(frames), np.stack(targets)


def vision_warmup(vlm: LlavaOnevision, config: TrainConfig, rank: int, world: int,
                  wrap: Callable[[nn.Module], nn.Module] = lambda module: module) -> dict[str, Any]:
    """Run `vision_warmup.steps` AdamW steps on the cell task; returns figures: first and last loss, accuracy
    over all cells and over object cells (background is most of a frame) in the last tenth of the steps, seconds. `wrap` makes the module data-parallel (Ray Train's
    prepare_model inside a worker)."""
    warm = config.vision_warmup
    started = time.perf_counter()
    frames, targets = _frame_pool(config, vlm.image_size, vlm.grid, rank, world)
    built_s = time.perf_counter() - started
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    classifier = CellClassifier(vlm)
    for p in (*classifier.vision.parameters(), *classifier.projector.parameters(), *classifier.head.parameters()):
        p.requires_grad_(True)
    params = [p for p in classifier.parameters() if p.requires_grad]
    model = wrap(classifier)
    optimizer = torch.optim.AdamW(params, lr=warm.lr)
    class_weight = torch.ones(NUM_CLASSES, device=vlm.device)
    class_weight[0] = BACKGROUND_WEIGHT
    rng = np.random.default_rng([config.seed, rank, 8])
    losses, correct, cells, object_correct, object_cells = [], 0, 0, 0, 0
    for step in range(warm.steps):
        pick = rng.integers(0, len(frames), size=warm.batch_frames)
        target = torch.from_numpy(targets[pick]).to(vlm.device)  # [B, gh, gw]
        logits = model(torch.from_numpy(frames[pick]))  # [B, gh, gw, C]
        loss = F.cross_entropy(logits.reshape(-1, NUM_CLASSES).float(), target.reshape(-1), weight=class_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step >= warm.steps - max(1, warm.steps // 10):  # accuracy over the last tenth of the steps
            hits, objects = logits.argmax(-1) == target, target > 0
            correct, cells = correct + int(hits.sum()), cells + target.numel()
            object_correct, object_cells = object_correct + int(hits[objects].sum()), object_cells + int(objects.sum())
    offset = standardise_projector(vlm, frames[rng.permutation(len(frames))[:STANDARDISE_FRAMES]])
    return {"steps": warm.steps, "loss_first": losses[0], "loss_last": losses[-1],
            "cell_accuracy": correct / cells, "object_cell_accuracy": object_correct / max(object_cells, 1),
            "frames_built_s": built_s, **offset,
            "s": time.perf_counter() - started}


def standardise_projector(vlm: LlavaOnevision, frames: np.ndarray) -> dict[str, float]:
    """Fold a standardisation of the visual tokens into the projector's last linear layer, so the tokens of
    frames uint8 [N, S, S, 3] come out with mean 0 and a mean per-dimension std of 1. Returns the mean token's
    norm relative to the spread (before, after).

    Why: a tower trained from scratch gives every token one large shared offset (norm ~25 against a spread of
    ~7 after the warm-up). Cosine similarity, which the compressors cluster by, then calls every pair of tokens
    alike, and the LLM's normalised inputs differ by little. An affine map of the projector output commutes
    with the 2x2 pooling after it, so this is exact. Under DDP the statistics are averaged over the workers,
    which keeps their weights identical.
    """
    tokens = encode(vlm, frames).reshape(-1, vlm.hidden_size).float()  # [N * gh * gw, D]
    mean, scale = tokens.mean(0), tokens.std(0).mean().reshape(1)  # [D], [1]
    if dist.is_available() and dist.is_initialized():
        for stat in (mean, scale):
            dist.all_reduce(stat)
            stat /= dist.get_world_size()
    layer = vlm.model.model.multi_modal_projector.linear_2
    with torch.no_grad():
        layer.weight.div_(scale.to(layer.weight.dtype))
        layer.bias.sub_(mean.to(layer.bias.dtype)).div_(scale.to(layer.bias.dtype))
    return {"token_offset_before": float(mean.norm() / scale / math.sqrt(vlm.hidden_size)),
            "token_offset_after": float(encode(vlm, frames).float().mean((0, 1, 2)).norm() / math.sqrt(vlm.hidden_size))}
