"""Training configuration: YAML -> frozen dataclasses, validated; every error names the dotted key.

    config = load_train_config("configs/train-default.yaml")      # or a shipped name: "train-default"

Keys and units are documented on each dataclass and, line by line, in `configs/train-default.yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from configs.schema import ConfigError, apply_settings, build, check, config_path
from train.formats import MemoryFormat

#: Parts of a LLaVA-OneVision model (plus the cross-dynamics attention) that `freeze` may list.
PARTS = ("vision", "projector", "dynamics", "llm")
BAD_ROW_POLICIES = ("skip", "stop")
TINY_TOKENIZERS = ("bytes", "scenes")
WARMUP_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ModelInit:
    """Where the weights start.

    init:   "tiny": a from-scratch LLaVA-OneVision of the tiny family built in code (random weights, seeded
            by the run's seed); otherwise a local checkpoint directory written by `save_pretrained` (a
            llava-hf LLaVA-OneVision checkpoint or an earlier `tokdyn train` output's `model/`).
    size:   for init "tiny": overrides of the tiny model's sizes (passed to `vlm.llava_onevision.build_tiny`);
            empty = the default tiny size.
    tokenizer: for init "tiny": "bytes" (one token per byte, the test model's) or "scenes" (byte-level BPE
            learned from training-scene questions: their words are single tokens; any text still encodes).
    dtype:  weight dtype while training: float32 (CPU) | bfloat16 | float16.
    device: "auto" (cuda when the worker has a GPU, else cpu), "cpu" or "cuda".
    """

    init: str = "tiny"
    size: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "bytes"
    dtype: str = "float32"
    device: str = "auto"

    def __post_init__(self) -> None:
        check(bool(self.init), "init", "'tiny' or a checkpoint directory", self.init)
        check(self.tokenizer in TINY_TOKENIZERS, "tokenizer", " | ".join(TINY_TOKENIZERS), self.tokenizer)
        check(self.dtype in ("float32", "bfloat16", "float16"), "dtype", "float32 | bfloat16 | float16", self.dtype)
        check(self.device in ("auto", "cpu", "cuda"), "device", "auto | cpu | cuda", self.device)
        if not self.is_tiny:  # relative to where the command runs, not to a Ray worker's own directory
            object.__setattr__(self, "init", str(Path(self.init).expanduser().resolve()))

    @property
    def is_tiny(self) -> bool:
        return self.init == "tiny"


@dataclass(frozen=True)
class SceneData:
    """Procedural scenes (scenes/) as training data; seeds start at scenes.suites.TRAIN_SEED_START.

    count:        scenes in the pool, rendered and encoded once, then sampled from (0 = no scene data).
    seconds:      [min, max] media seconds per scene, drawn uniformly per scene.
    width, height: rendered frame size in pixels (frames are resized to the model's input like the pipeline).
    fps:          the scene's native frame rate (frames per second; sampling picks from these).
    snapshots:    memory snapshots per scene at evenly spaced chunk ends (the last chunk always one);
                  questions are asked at each (t_query = snapshot t_end).
    per_category: questions per category per snapshot.
    first_seed:   seed of the pool's first scene; null = TRAIN_SEED_START (never the evaluation seeds).
    """

    count: int = 16
    seconds: tuple[float, float] = (8.0, 20.0)
    width: int = 160
    height: int = 120
    fps: float = 10.0
    snapshots: int = 3
    per_category: int = 1
    first_seed: int | None = None

    def __post_init__(self) -> None:
        check(self.count >= 0, "count", ">= 0", self.count)
        lo, hi = (tuple(self.seconds) + (None, None))[:2] if isinstance(self.seconds, (list, tuple)) else (None, None)
        check(isinstance(self.seconds, (list, tuple)) and len(self.seconds) == 2 and 0 < lo <= hi,
               "seconds", "[min, max] with 0 < min <= max", self.seconds)
        object.__setattr__(self, "seconds", (float(lo), float(hi)))
        check(min(self.width, self.height) >= 64 and self.width % 2 == 0 and self.height % 2 == 0, "width/height",
               "even numbers of pixels >= 64", [self.width, self.height])
        check(self.fps > 0, "fps", "> 0", self.fps)
        check(self.snapshots >= 1, "snapshots", ">= 1", self.snapshots)
        check(self.per_category >= 1, "per_category", ">= 1", self.per_category)


@dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how the memory is fed (exactly as the pipeline feeds it).

    sample_rate_hz:   frames per media second kept, sampled at t = i / rate (as the source actor does).
    frames_per_chunk: sampled frames per compressor update (the pipeline's chunk).
    scenes:           procedural scenes (see SceneData); `scenes: {count: 0}` for none.
    jsonl:            path of a user dataset, one JSON object per line: {"video": path or URL, "question",
                      "answer", "t_start"?, "t_end"? (media seconds)}; null = none.
    on_bad_row:       "skip" (count and warn) or "stop" (raise, naming the row) on a bad JSONL row.
    max_frames:       most sampled frames decoded per JSONL video (a bound on memory and time).
    """

    sample_rate_hz: float = 2.0
    frames_per_chunk: int = 4
    scenes: SceneData = field(default_factory=SceneData)
    jsonl: str | None = None
    on_bad_row: str = "skip"
    max_frames: int = 256

    def __post_init__(self) -> None:
        check(self.sample_rate_hz > 0, "sample_rate_hz", "> 0", self.sample_rate_hz)
        check(self.frames_per_chunk >= 1, "frames_per_chunk", ">= 1", self.frames_per_chunk)
        check(self.on_bad_row in BAD_ROW_POLICIES, "on_bad_row", " | ".join(BAD_ROW_POLICIES), self.on_bad_row)
        check(self.max_frames >= 1, "max_frames", ">= 1", self.max_frames)
        check(self.scenes.count > 0 or self.jsonl is not None, "scenes.count/jsonl",
               "scenes (count > 0) or a jsonl path", None)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to 10% of lr.

    lr:           peak learning rate.
    weight_decay: AdamW decoupled weight decay.
    warmup_steps: optimiser steps of linear warm-up from 0 to lr.
    grad_clip:    clip the global gradient norm to this (0 = no clipping).
    dynamics_lr_scale: the cross-dynamics attention's learning rate as a multiple of lr: it starts as the
                  identity (a zero output projection) and is all that carries position, motion and time into
                  the base tokens, so at the LLM's rate those questions stayed at chance for 30k examples.
    """

    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    dynamics_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        check(self.warmup_steps >= 0, "warmup_steps", ">= 0", self.warmup_steps)
        check(self.grad_clip >= 0, "grad_clip", ">= 0", self.grad_clip)
        check(self.dynamics_lr_scale > 0, "dynamics_lr_scale", "> 0", self.dynamics_lr_scale)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out accuracy by greedy generation through the serving path (`model.generate` + `is_correct`).

    suite:         name of an evaluation suite (scenes.suites.suite); null = no evaluation.
    every_steps:   evaluate every this many optimiser steps (0 = once per epoch and at the end).
    max_questions: evaluate on at most this many of the suite's questions (0 = all).
    format:        index into `formats` of the memory format evaluated (0 = the first).
    """

    suite: str | None = None
    every_steps: int = 0
    max_questions: int = 0
    format: int = 0

    def __post_init__(self) -> None:
        check(self.every_steps >= 0, "every_steps", ">= 0", self.every_steps)
        check(self.max_questions >= 0, "max_questions", ">= 0", self.max_questions)
        check(self.format >= 0, "format", ">= 0", self.format)


@dataclass(frozen=True)
class WarmupConfig:
    """Optional vision stage (train/warmup.py): the vision tower + projector learn to give each object's
    tokens its (shape, colour) concept token and background cells the background one, on fresh frames.

    steps:        most optimiser steps (0 = off).
    lr:           peak learning rate (AdamW; 50 steps of linear warm-up).
    schedule:     "constant" after the warm-up, or "cosine": decay to a tenth of lr at `steps`.
    batch_frames: fresh frames per step.
    eval_every:   steps between held-out evaluations (per-cell accuracy, logged as the stage's curve).
    patience:     stop once that many evaluations in a row did not raise the held-out objects' accuracy (0 = never).
    """

    steps: int = 0
    lr: float = 1e-3
    batch_frames: int = 32
    eval_every: int = 100
    patience: int = 0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        check(self.schedule in WARMUP_SCHEDULES, "schedule", " | ".join(WARMUP_SCHEDULES), self.schedule)
        check(self.steps >= 0, "steps", ">= 0", self.steps)
        check(self.eval_every >= 1, "eval_every", ">= 1", self.eval_every)
        check(self.patience >= 0, "patience", ">= 0", self.patience)
        check(self.lr > 0, "lr", "> 0", self.lr)
        check(self.batch_frames >= 1, "batch_frames", ">= 1", self.batch_frames)


MEMORY_SOURCES = ("oracle", "real")


@dataclass(frozen=True)
class Stage:
    """One stage of teaching the language model to read memories, before the main stage (the top-level
    `steps`, `formats`, `data.scenes`). A curriculum goes from clean memories to real ones.

    memory:       "oracle": memories built from the scenes' true label maps through the concept tokens
                  (train/oracle.py: no rendering, no vision, about 0.2 s per scene) | "real": rendered,
                  encoded by the trained vision path, compressed, as in the main stage.
    steps:        optimiser steps of this stage (its own warm-up and cosine decay of `optim.lr`).
    scenes:       training scenes of its pool (seeds from the main pool's first seed; oracle pools are cheap).
    snapshots, per_category: memories per scene and questions per category per memory.
    categories:   question categories asked (empty = all).
    """

    memory: str = "oracle"
    steps: int = 1000
    scenes: int = 200
    snapshots: int = 6
    per_category: int = 2
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.memory in MEMORY_SOURCES, "memory", " | ".join(MEMORY_SOURCES), self.memory)
        check(self.steps >= 1, "steps", ">= 1", self.steps)
        check(self.scenes >= 1, "scenes", ">= 1", self.scenes)
        check(self.snapshots >= 1, "snapshots", ">= 1", self.snapshots)
        check(self.per_category >= 1, "per_category", ">= 1", self.per_category)
        object.__setattr__(self, "categories", tuple(self.categories))


@dataclass(frozen=True)
class RayTrainConfig:
    """Ray Train placement (TorchTrainer, DDP across workers).

    address:        "local" starts a private cluster bound to 127.0.0.1; "auto" joins `ray start`; "ray://..".
    num_cpus:       CPUs a "local" cluster advertises.
    num_workers:    training workers (DDP ranks); the batch is per worker.
    use_gpu:        one GPU per worker.
    resources_per_worker: Ray resources each worker reserves, e.g. {CPU: 2}; CPU also sets torch's threads.
    """

    address: str = "local"
    num_cpus: int = 2
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = field(default_factory=lambda: {"CPU": 2})

    def __post_init__(self) -> None:
        ok = self.address in ("local", "auto") or self.address.startswith("ray://")
        check(ok, "address", "'local', 'auto' or 'ray://host:port'", self.address)
        check(self.num_cpus >= 1, "num_cpus", ">= 1", self.num_cpus)
        check(self.num_workers >= 1, "num_workers", ">= 1", self.num_workers)
        for name, amount in self.resources_per_worker.items():
            check(isinstance(amount, (int, float)) and amount >= 0, f"resources_per_worker.{name}",
                   "a number >= 0", amount)


@dataclass(frozen=True)
class TrainConfig:
    """One `tokdyn train` run.

    output:       directory of the run: Ray Train checkpoints, metrics.jsonl, and the final `model/`
                  (loadable with load_vlm); running again with the same output resumes.
    seed:         seeds the model init, the data pool, batch order and dropout (per worker: seed + rank).
    model:        ModelInit.  freeze: parts kept fixed, a subset of PARTS.
    data:         DataConfig. formats: the memory formats trained on (MemoryFormat, drawn by weight).
    batch_size:   examples per optimiser step per worker.
    steps:        optimiser steps in total; or epochs: passes over the example pool (exactly one of the two).
    checkpoint_every_steps: report a checkpoint every this many steps (and at the end).
    aux_weight:   weight of the memory tokens' auxiliary loss (each names its object's words; 0 = off).
    focus_weight: weight of the attention loss (the answer looks at the tokens it depends on; 0 = off).
    motion_weight: weight of the fused tokens' motion-word loss (train/objective.py; 0 = off).
    curriculum:   Stages run before the main one, in order (after the vision warm-up).
    replay:       share of the main stage's steps drawn from the last curriculum stage's pool (0 = none): reading
                  taught on clean memories is kept while the model adapts to real ones.
    optim, eval, vision_warmup, ray: see their dataclasses.
    """

    output: str = "out/train"
    seed: int = 0
    model: ModelInit = field(default_factory=ModelInit)
    freeze: tuple[str, ...] = ("vision", "projector")
    data: DataConfig = field(default_factory=DataConfig)
    formats: tuple[MemoryFormat, ...] = (MemoryFormat(),)
    batch_size: int = 16
    steps: int | None = 200
    epochs: int | None = None
    checkpoint_every_steps: int = 50
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    aux_weight: float = 0.0
    focus_weight: float = 0.0
    motion_weight: float = 0.0
    curriculum: tuple[Stage, ...] = ()
    replay: float = 0.0
    vision_warmup: WarmupConfig = field(default_factory=WarmupConfig)
    ray: RayTrainConfig = field(default_factory=RayTrainConfig)

    def __post_init__(self) -> None:
        check(bool(self.output), "output", "a directory path", self.output)
        freeze = tuple(self.freeze)
        bad = [p for p in freeze if p not in PARTS]
        check(not bad, "freeze", f"a subset of {PARTS}", list(freeze))
        object.__setattr__(self, "freeze", freeze)
        check(len(self.formats) >= 1, "formats", "at least one memory format", [])
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check((self.steps is None) != (self.epochs is None), "steps/epochs", "exactly one of them set",
               (self.steps, self.epochs))
        check(self.steps is None or self.steps >= 1, "steps", ">= 1", self.steps)
        check(self.epochs is None or self.epochs >= 1, "epochs", ">= 1", self.epochs)
        check(self.checkpoint_every_steps >= 1, "checkpoint_every_steps", ">= 1", self.checkpoint_every_steps)
        check(self.eval.format < len(self.formats), "eval.format", f"< {len(self.formats)} (formats listed)",
               self.eval.format)
        check(set(freeze) != set(PARTS), "freeze", "at least one trainable part", list(freeze))
        check(self.aux_weight >= 0, "aux_weight", ">= 0", self.aux_weight)
        check(self.focus_weight >= 0, "focus_weight", ">= 0", self.focus_weight)
        check(self.motion_weight >= 0, "motion_weight", ">= 0", self.motion_weight)
        object.__setattr__(self, "curriculum", tuple(self.curriculum))
        check(0 <= self.replay < 1, "replay", "a share in [0, 1)", self.replay)
        check(not self.replay or self.curriculum, "replay", "a curriculum stage to replay (curriculum is empty)",
              self.replay)

    @property
    def output_path(self) -> Path:
        return Path(self.output).expanduser().resolve()

    @property
    def dense_losses(self) -> bool:
        """Whether any loss needs per-token targets (aux, motion) or the answer's referents (focus)."""
        return bool(self.aux_weight or self.focus_weight or self.motion_weight)

    def trains(self, part: str) -> bool:
        """Whether `part` (one of PARTS) is trained."""
        return part not in self.freeze


def load_train_config(path_or_name: str | Path, settings: Sequence[str] = (), **overrides: Any) -> TrainConfig:
    """A training config from YAML ("train-default" -> configs/train-default.yaml); `settings` set dotted keys
    (``"model.init=out/run/model"``, configs.schema.apply_settings), then `overrides` replace top-level keys
    (e.g. output=..., steps=... from the command line)."""
    path = config_path(path_or_name)
    if not path.is_file():
        raise ConfigError(f"config: expected a YAML file, got {str(path)!r} (not found)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top of {path.name}, got {type(data).__name__}")
    data = apply_settings(data, settings)
    if overrides.get("steps") is not None:
        data.pop("epochs", None)
    elif data.get("epochs") is not None:
        data.setdefault("steps", None)  # `epochs: N` alone replaces the default step count
    data.update({k: v for k, v in overrides.items() if v is not None})
    return build(TrainConfig, data)
