"""Procedural scenes -> training examples, with the frame tokens of a frozen vision tower computed once per scene.

Per scene: render the frames the pipeline would sample (t = i / sample_rate_hz), resize them to the model's
input like the source actor, encode them (no grad, batched), feed every memory format chunk by chunk
(train/memory.py) and ask questions at a few snapshot times (t_query = the snapshot's t_end). Only the
memories and questions are kept (the frame tokens are dropped), so the pool costs K x D floats per snapshot and
format (frames x 196 x D for "full"): memory grows with `scenes.count x snapshots x formats`, nothing else.
With a trainable vision path (`live`) the scene's frames (S x S x 3 bytes each) are kept instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scenes.questions import questions
from scenes.scene import Scene, SceneSpec, make_scene
from scenes.suites import TRAIN_SEED_START
from stream.sampling import resize_frames
from train.config import DataConfig
from train.formats import MemoryFormat
from train.memory import Memory, memory_inputs, snapshot_chunks, stream_memories
from train.oracle import (Concepts, cell_label_maps, focus_tokens, oracle_tokens, referents, token_targets,
                          without_motion)
from train.objective import Example
from vlm.llava_onevision import LlavaOnevision

def sampled_frames(scene: Scene, rate_hz: float, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames a pipeline sampling `scene` at `rate_hz` sees -> (uint8 [T, S, S, 3], media times [T] s)."""
    count = int(np.ceil(scene.spec.seconds * rate_hz - 1e-9))
    times = np.arange(count, dtype=np.float64) / rate_hz  # [T]
    frames = np.stack([scene.render(float(t)) for t in times])  # [T, H, W, 3]
    return resize_frames(frames, image_size), times


@dataclass
class ExamplePool:
    """Examples per memory format (index into config.formats); sampled with replacement."""

    by_format: list[list[Example]]
    build_s: float = 0.0
    media_s: float = 0.0

    def __len__(self) -> int:
        return sum(len(e) for e in self.by_format)

    def extend(self, other: ExamplePool) -> None:
        for mine, theirs in zip(self.by_format, other.by_format):
            mine.extend(theirs)
        self.build_s += other.build_s
        self.media_s += other.media_s

    def sample(self, fmt: int, n: int, rng: np.random.Generator) -> list[Example]:
        """`n` examples of format `fmt`, drawn with replacement."""
        pool = self.by_format[fmt]
        if not pool:
            raise ValueError(f"formats[{fmt}]: expected examples, got none (no data for this format)")
        return [pool[i] for i in rng.integers(0, len(pool), size=n)]


def scene_examples(vlm: LlavaOnevision, spec: SceneSpec, formats: Sequence[MemoryFormat], data: DataConfig,
                   seed: int, live: bool = False, oracle: Concepts | None = None,
                   targets: bool = False, categories: tuple[str, ...] | None = None) -> list[list[Example]]:
    """One scene -> its examples per format: every question at every snapshot time, for every format.

    `live`: the vision path trains, so keep the frames (memories are rebuilt with grad every step).
    `oracle`: build the memories from the scene's true label maps through these concepts (train/oracle.py)
    instead of rendering and encoding frames. `targets`: give each memory's base tokens their answer words
    (the auxiliary loss) and each question the tokens it depends on (the attention loss) where the format
    has a key map. `categories`: the question categories asked (None: all)."""
    scene = make_scene(spec)
    grid = vlm.grid
    if oracle is not None:
        times = np.arange(int(np.ceil(spec.seconds * data.sample_rate_hz - 1e-9)), dtype=np.float64) / data.sample_rate_hz
        labels = cell_label_maps(scene, times, grid)
    else:
        frames, times = sampled_frames(scene, data.sample_rate_hz, vlm.image_size)
        labels = cell_label_maps(scene, times, grid) if targets else None
    num_chunks = -(-len(times) // data.frames_per_chunk)
    at = snapshot_chunks(num_chunks, data.scenes.snapshots)
    if oracle is not None:
        tokens = oracle_tokens(oracle, scene, labels, seed=spec.seed)
        inputs = [stream_memories(tokens, times, fmt, data.frames_per_chunk, at, seed, labels) for fmt in formats]
    else:
        inputs = memory_inputs(vlm, frames, times, formats, data.frames_per_chunk, at, seed, live, labels)
    rng = np.random.default_rng([seed, spec.seed])
    out: list[list[Example]] = [[] for _ in formats]
    for s, chunk in enumerate(at):
        t_query = float(times[min((chunk + 1) * data.frames_per_chunk, len(times)) - 1])  # the snapshot's t_end
        words = [token_targets(vlm.tokenizer, scene, memory.objects, t_query)
                 if targets and isinstance(memory, Memory) and memory.objects is not None else None
                 for memory in (inputs[f][s] for f in range(len(formats)))]
        words = [w if w is None or fmt.uses_dynamics else without_motion(w) for w, fmt in zip(words, formats)]
        asked = {"categories": categories} if categories else {}
        for qa in questions(scene, t_query, rng, data.scenes.per_category, **asked):
            wanted = referents(scene, qa.key, t_query)
            for f, fmt in enumerate(formats):
                memory = inputs[f][s]
                focus = focus_tokens(memory.objects, wanted) if words[f] is not None else None
                out[f].append(Example.of(memory, qa.question, str(qa.answer), fmt, qa.category, qa, words[f], focus))
    return out


def scene_specs(data: DataConfig, seed: int, rank: int = 0, world: int = 1) -> list[SceneSpec]:
    """This worker's share of the training scenes (seeds >= TRAIN_SEED_START; lengths drawn per scene)."""
    first = TRAIN_SEED_START if data.scenes.first_seed is None else data.scenes.first_seed
    lengths = np.random.default_rng([seed, 1]).uniform(*data.scenes.seconds, size=data.scenes.count)
    return [SceneSpec(seed=first + i, seconds=round(float(lengths[i]), 1), width=data.scenes.width,
                      height=data.scenes.height, fps=data.scenes.fps)
            for i in range(rank, data.scenes.count, world)]


def build_scene_pool(vlm: LlavaOnevision, specs: Sequence[SceneSpec], formats: Sequence[MemoryFormat | None],
                     data: DataConfig, seed: int, live: bool = False,
                     progress: Callable[[int, int], None] | None = None, oracle: Concepts | None = None,
                     targets: bool = False, categories: tuple[str, ...] | None = None) -> ExamplePool:
    """Scenes -> ExamplePool; `progress(done, total)` after each scene. Records build time and media seconds.
    A format given as None gets no examples (its slot stays, so format indices match the config's);
    `oracle`, `targets`, `categories`: see scene_examples."""
    pool = ExamplePool([[] for _ in formats])
    used = [f for f in formats if f is not None]
    started = time.perf_counter()
    for i, spec in enumerate(specs):
        examples = iter(scene_examples(vlm, spec, used, data, seed, live, oracle, targets, categories))
        for mine, fmt in zip(pool.by_format, formats):
            if fmt is not None:
                mine.extend(next(examples))
        pool.media_s += spec.seconds
        if progress is not None:
            progress(i + 1, len(specs))
    pool.build_s = time.perf_counter() - started
    return pool
