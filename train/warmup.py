"""The vision stage: teach the vision tower + projector to give every object its concept token.

Targets are the concept tokens the oracle memory is built from (train/oracle.py): per object its (shape, colour)
concept, background the background concept. The loss, on each object's mean token in each frame and (with a
quarter of the weight) on every grid cell, is the squared distance to the target plus a cross-entropy over the
whole concept table (every (shape, colour) and background, scored by dot product), so a token has to be nearer
its own concept than any other. The mean carries most of the weight because the memory hands the reader cluster
means, and because one cell sees only a corner of a star: shape is a property of the whole object. Background is
most of a frame and gets a lower weight. Frames are fresh every step (the scenes are procedural, so data is
unlimited: a fixed pool of frames was memorised on shape before), and the stage is measured on frames of
held-out scenes (`cell_accuracy`): objects' mean tokens, object cells and background cells apart, shape and
colour apart. It ends after `steps`, or earlier once the held-out accuracy of the objects' mean tokens has
stopped rising for `patience` evaluations. The learning rate is constant after its warm-up, or (`schedule:
cosine`) decays over `steps`: at a constant rate the held-out accuracy swings by ±0.06 between evaluations 100
steps apart, and a decayed run of 1,800 steps ended at 0.55 per object against 0.48."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scenes.scene import Scene, SceneSpec, make_scene
from scenes.shapes import COLOURS, SHAPES
from scenes.suites import HELDOUT_SEEDS
from stream.sampling import resize_frames
from train.config import TrainConfig
from train.memory import encode
from train.model import encode_frames_grad
from train.oracle import Concepts
from train.scene_data import scene_specs
from train.schedule import warmup_cosine
from vlm.llava_onevision import LlavaOnevision

NUM_CLASSES = 1 + len(SHAPES) * len(COLOURS)  # background + every (shape, colour)
# Background is ~90% of the cells: at full weight the tower learns "background" well and shapes hardly at all.
BACKGROUND_WEIGHT = 0.1
EVAL_FRAMES = 96  # held-out frames the stage is measured on (seeds of the held-out suite, fixed times)
# The cells' own loss against their objects' mean token's: one cell sees a corner of a star, the mean sees all
# of it. The memory hands the reader cluster means, so the object's mean must name it; each cell must at least
# be nearer its own object's concept than any other (colour does that) for the clustering.
CELL_WEIGHT = 0.25
WARMUP_STEPS = 50  # of linear learning-rate warm-up


def concept_table(concepts: Concepts) -> torch.Tensor:
    """[NUM_CLASSES, D]: row 0 background, row 1 + s * C + c the concept of shape s in colour c."""
    rows = [concepts.background] + [concepts.shape[s] + concepts.colour[c]
                                    for s in range(len(SHAPES)) for c in range(len(COLOURS))]
    return torch.stack(rows)


def cell_classes(scene: Scene, t: float, grid: tuple[int, int]) -> np.ndarray:
    """[gh, gw] int64: per grid cell, the (shape, colour) class of the object covering most of it, 0 = background."""
    classes = np.zeros(len(scene.objects) + 1, dtype=np.int64)  # object index + 1 -> class
    for obj in scene.objects:
        classes[obj.index + 1] = 1 + SHAPES.index(obj.shape) * len(COLOURS) + COLOURS.index(obj.colour)
    return classes[scene.cell_labels(t, grid).astype(np.int64) + 1]


def cell_frames(scenes: list[Scene], count: int, rng: np.random.Generator, image_size: int,
                grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames at random times of random `scenes`: uint8 [N, S, S, 3] resized like the pipeline, and
    their cell classes [N, gh, gw]."""
    frames, targets = [], []
    for _ in range(count):
        scene = scenes[int(rng.integers(len(scenes)))]
        t = float(rng.uniform(0, scene.spec.seconds))
        frames.append(resize_frames(scene.render(t)[None], image_size)[0])
        targets.append(cell_classes(scene, t, grid))
    return np.stack(frames), np.stack(targets)


def heldout_frames(image_size: int, grid: tuple[int, int], width: int = 320, height: int = 240,
                   count: int = EVAL_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames (width x height, resized to image_size) of the held-out suite's scenes (never trained on)
    at fixed random times, and their cell classes [N, gh, gw]: the same on every run."""
    scenes = [make_scene(SceneSpec(seed=s, seconds=60.0, width=width, height=height)) for s in HELDOUT_SEEDS]
    return cell_frames(scenes, count, np.random.default_rng(12345), image_size, grid)


def cell_accuracy(vlm: LlavaOnevision, table: torch.Tensor, frames: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Nearest-concept accuracy of the vision path's tokens on frames [N, S, S, 3] with cell classes [N, gh, gw]:
    object cells (class, shape, colour right) and background cells apart."""
    tokens = encode(vlm, frames).float()  # [N, gh, gw, D]
    predicted = (tokens @ table.T.to(tokens)).argmax(-1).cpu().numpy()  # [N, gh, gw]
    objects = targets > 0
    shape_of = lambda c: (c - 1) // len(COLOURS)  # noqa: E731 - class -> shape index (background: -1)
    colour_of = lambda c: (c - 1) % len(COLOURS)  # noqa: E731
    hit = predicted == targets
    # Each object's mean token per frame (what a cluster of its cells hands the reader), nearest concept.
    flat, classes = tokens.reshape(-1, tokens.shape[-1]), torch.from_numpy(targets.reshape(-1))
    segment = torch.arange(len(frames)).repeat_interleave(classes.numel() // len(frames)) * NUM_CLASSES + classes
    sums = flat.new_zeros(len(frames) * NUM_CLASSES, flat.shape[1]).index_add(0, segment, flat)
    counts = torch.bincount(segment, minlength=sums.shape[0])
    present = ((counts > 0) & (torch.arange(sums.shape[0]) % NUM_CLASSES > 0)).nonzero().flatten()
    means = sums[present] / counts[present].unsqueeze(1)
    object_means = float(((means @ table.T.to(means)).argmax(-1) == present % NUM_CLASSES).float().mean())
    return {"object_means": object_means, "object_cells": float(hit[objects].mean()),
            "object_shape": float((shape_of(predicted) == shape_of(targets))[objects & (predicted > 0)].sum()
                                  / max(objects.sum(), 1)),
            "object_colour": float((colour_of(predicted) == colour_of(targets))[objects & (predicted > 0)].sum()
                                   / max(objects.sum(), 1)),
            "background_cells": float(hit[~objects].mean())}


class CellConcepts(nn.Module):
    """Vision tower + projector -> the vision stage's loss on a batch of frames (module docstring)."""

    def __init__(self, vlm: LlavaOnevision, table: torch.Tensor) -> None:
        super().__init__()
        self.vlm = vlm
        self.vision = vlm.model.model.vision_tower
        self.projector = vlm.model.model.multi_modal_projector
        self.register_buffer("table", table.to(device=vlm.device, dtype=vlm.dtype), persistent=False)
        weight = torch.ones(NUM_CLASSES, device=vlm.device)
        weight[0] = BACKGROUND_WEIGHT
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, frames: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """frames uint8 [B, S, S, 3], target classes [B, gh, gw] -> scalar loss: the cells' loss times
        CELL_WEIGHT plus the same loss on each object's mean token in each frame."""
        tokens = encode_frames_grad(self.vlm, frames).reshape(-1, self.table.shape[1]).float()  # [B*gh*gw, D]
        target = target.reshape(-1)
        # One segment per (frame, class): a class is one object within a scene, so this is each object's mean.
        frame = torch.arange(frames.shape[0], device=tokens.device).repeat_interleave(target.numel() // frames.shape[0])
        segment = frame * NUM_CLASSES + target
        sums = tokens.new_zeros(frames.shape[0] * NUM_CLASSES, tokens.shape[1]).index_add(0, segment, tokens)
        counts = torch.bincount(segment, minlength=sums.shape[0])
        objects = (counts > 0) & (torch.arange(sums.shape[0], device=tokens.device) % NUM_CLASSES > 0)
        means = sums[objects] / counts[objects].unsqueeze(1)  # [O, D]
        return CELL_WEIGHT * self._loss(tokens, target) + self._loss(means, objects.nonzero().flatten() % NUM_CLASSES)

    def _loss(self, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """tokens [N, D], classes [N] -> weighted squared distance to the class's concept + cross-entropy over
        the concept table."""
        weight = self.weight[target]  # [N]
        distance = ((tokens - self.table[target]) ** 2).mean(-1)
        classify = F.cross_entropy(tokens @ self.table.T, target, weight=self.weight)
        return (distance * weight).sum() / weight.sum() + classify


def vision_warmup(vlm: LlavaOnevision, config: TrainConfig, rank: int, world: int,
                  wrap: Callable[[nn.Module], nn.Module] = lambda module: module,
                  log: Callable[[dict[str, Any]], None] = lambda record: None,
                  start: tuple[int, dict | None, dict[str, Any]] = (0, None, {}),
                  checkpoint: Callable[[int, torch.optim.Optimizer, dict[str, Any]], None] | None = None,
                  every: int = 0) -> dict[str, Any]:
    """Run the vision stage (module docstring). `log` gets each held-out evaluation (its learning curve);
    `start` = (step, optimiser state, {"best", "stale"}) resumes a stage a checkpoint stopped in, and
    `checkpoint(step, optimizer, {"best", "stale"})` is called every `every` steps and at the end. `wrap` makes
    the module data-parallel (Ray Train's prepare_model inside a worker). Returns figures: first and last loss,
    held-out cell accuracy at the end, steps run, seconds."""
    warm = config.vision_warmup
    started = time.perf_counter()
    table = concept_table(Concepts.make(vlm.hidden_size))
    scenes = [make_scene(spec) for spec in scene_specs(config.data, config.seed, rank, world)]
    eval_frames, eval_targets = heldout_frames(vlm.image_size, vlm.grid, config.data.scenes.width,
                                               config.data.scenes.height)
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    module = CellConcepts(vlm, table)
    for p in (*module.vision.parameters(), *module.projector.parameters()):
        p.requires_grad_(True)
    params = [p for p in module.parameters() if p.requires_grad]
    model = wrap(module)
    optimizer = torch.optim.AdamW(params, lr=warm.lr)
    step, optimizer_state, progress = start
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    best, stale = float(progress.get("best", -1.0)), int(progress.get("stale", 0))
    # Frames are drawn from a generator seeded by the step, so a resumed stage sees what it would have seen.
    losses: list[float] = []
    result: dict[str, float] = {}
    while step < warm.steps and not (warm.patience and stale >= warm.patience):
        step += 1
        lr = warmup_cosine(step - 1, warm.steps, warm.lr, WARMUP_STEPS) if warm.schedule == "cosine" \
            else warm.lr * min(1.0, step / WARMUP_STEPS)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([config.seed, rank, 8, step])
        frames, targets = cell_frames(scenes, warm.batch_frames, rng, vlm.image_size, vlm.grid)
        loss = model(torch.from_numpy(frames), torch.from_numpy(targets).to(vlm.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % warm.eval_every == 0 or step == warm.steps:
            result = cell_accuracy(vlm, table, eval_frames, eval_targets)
            log({"event": "vision_eval", "step": step, "frames_seen": step * warm.batch_frames * world,
                 "loss": float(np.mean(losses[-warm.eval_every:])), **result})
            stale = 0 if result["object_means"] > best + 0.002 else stale + 1
            best = max(best, result["object_means"])
        if checkpoint is not None and every and step % every == 0:
            checkpoint(step, optimizer, {"best": best, "stale": stale})
    if checkpoint is not None:
        checkpoint(step, optimizer, {"best": best, "stale": stale})
    if not result:
        result = cell_accuracy(vlm, table, eval_frames, eval_targets)
    return {"steps": step, "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            **{f"heldout_{k}": v for k, v in result.items()}, "s": time.perf_counter() - started}
