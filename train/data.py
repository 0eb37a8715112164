"""The example pools a worker trains and evaluates on: scenes and/or JSONL rows, sharded across workers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dataclasses import replace

from scenes.scene import make_scene
from scenes.suites import sampled_times, suite
from train.config import Stage, TrainConfig
from train.jsonl import BadRow, read_rows, row_examples
from train.memory import memory_inputs, stream_memories
from train.objective import Example
from train.oracle import Concepts, cell_label_maps, oracle_tokens
from train.scene_data import ExamplePool, build_scene_pool, sampled_frames, scene_specs
from vlm.llava_onevision import LlavaOnevision


def build_train_pool(vlm: LlavaOnevision, config: TrainConfig, rank: int, world: int,
                     log: Callable[[dict[str, Any]], None]) -> ExamplePool:
    """This worker's examples: its share of the scenes, then its share of the JSONL rows.

    `log` receives one record per source: scenes built, media seconds, build time (and seconds per scene
    minute: the cost of the token cache), JSONL rows used and skipped.
    """
    data, formats = config.data, config.formats
    pool = ExamplePool([[] for _ in formats])
    if data.scenes.count:
        scenes = build_scene_pool(vlm, scene_specs(data, config.seed, rank, world), formats, data, config.seed,
                                  trains_vision(config), targets=config.dense_losses)
        pool.extend(scenes)
        log({"event": "scene_pool", "rank": rank, "scenes": len(scene_specs(data, config.seed, rank, world)),
             "examples": len(scenes), "media_s": scenes.media_s, "build_s": scenes.build_s,
             "build_s_per_scene_minute": 60 * scenes.build_s / max(scenes.media_s, 1e-9)})
    if data.jsonl is not None:
        skipped_rows: list[str] = []
        rows, skipped = read_rows(data.jsonl, data.on_bad_row, skipped_rows.append)
        used = 0
        for row in rows[rank::world]:
            try:
                per_format = row_examples(vlm, row, formats, data, config.seed, trains_vision(config))
            except BadRow as exc:  # an undecodable video or an empty span shows only when decoded
                if data.on_bad_row == "stop":
                    raise
                skipped += 1
                skipped_rows.append(str(exc))
                continue
            for mine, theirs in zip(pool.by_format, per_format):
                mine.extend(theirs)
            used += 1
        log({"event": "jsonl", "rank": rank, "rows": used, "skipped": skipped, "skipped_rows": skipped_rows[:20]})
    if not len(pool):
        raise ValueError(f"data: expected training examples for worker {rank}, got none (more scenes or rows "
                         "than workers are needed)")
    return pool


def build_stage_pool(vlm: LlavaOnevision, config: TrainConfig, stage: Stage, rank: int, world: int,
                     log: Callable[[dict[str, Any]], None]) -> ExamplePool:
    """This worker's examples for a curriculum stage: its own count of scenes, snapshots and questions, oracle
    or real memories, with the auxiliary targets and focus tokens. Formats without a key map (the baselines)
    get no oracle examples: an oracle memory is a Token Dynamics memory."""
    scenes = replace(config.data.scenes, count=stage.scenes, snapshots=stage.snapshots,
                     per_category=stage.per_category)
    data = replace(config.data, scenes=scenes)
    oracle = Concepts.make(vlm.hidden_size) if stage.memory == "oracle" else None
    formats = [f if (oracle is None or f.method == "token_dynamics") else None for f in config.formats]
    specs = scene_specs(data, config.seed, rank, world)
    pool = build_scene_pool(vlm, specs, formats, data, config.seed, oracle=oracle, targets=True,
                            categories=stage.categories or None)
    log({"event": "stage_pool", "rank": rank, "memory": stage.memory, "scenes": len(specs), "examples": len(pool),
         "media_s": pool.media_s, "build_s": pool.build_s})
    return pool


def build_eval_examples(vlm: LlavaOnevision, config: TrainConfig, oracle: bool = False) -> list[Example]:
    """The evaluation suite's questions on memories of the evaluated format (`eval.format`), built like the
    training ones (sampled at data.sample_rate_hz, chunked, compressed) and asked at each scene's end (with a
    trainable vision path, rebuilt from the frames at every evaluation). `oracle`: memories from the scenes'
    true label maps instead of their frames (train/oracle.py)."""
    fmt, data = config.formats[config.eval.format], config.data
    concepts = Concepts.make(vlm.hidden_size) if oracle else None
    out: list[Example] = []
    for spec, qas in suite(config.eval.suite):
        scene = make_scene(spec)
        if concepts is not None:
            times = sampled_times(spec, data.sample_rate_hz)
            labels = cell_label_maps(scene, times, vlm.grid)
            last = -(-len(times) // data.frames_per_chunk) - 1
            (visual,) = stream_memories(oracle_tokens(concepts, scene, labels, spec.seed), times, fmt,
                                        data.frames_per_chunk, [last], config.seed)
        else:
            frames, times = sampled_frames(scene, data.sample_rate_hz, vlm.image_size)
            last = -(-len(times) // data.frames_per_chunk) - 1
            (visual,), = memory_inputs(vlm, frames, times, [fmt], data.frames_per_chunk, [last], config.seed,
                                       trains_vision(config))
        out += [Example.of(visual, qa.question, qa.answer, fmt, qa.category, qa) for qa in qas]
        if config.eval.max_questions and len(out) >= config.eval.max_questions:
            return out[:config.eval.max_questions]
    return out


def trains_vision(config: TrainConfig) -> bool:
    """Whether the vision tower or the projector trains: then frame tokens cannot be cached and every memory
    is rebuilt from its frames, with grad, at every step (the slow path)."""
    return config.trains("vision") or config.trains("projector")


def steps_per_epoch(pool: ExamplePool, config: TrainConfig) -> int:
    """Optimiser steps in one pass over the pool: each question once per format on average
    (every question yields one example per format)."""
    return max(1, math.ceil(len(pool.by_format[0]) / config.batch_size))

