"""Frame tokens -> the memories the model reads, built by the same streaming compressor code the pipeline runs.

The memory actor (actors/memory.py) calls `compressor.update(tokens [T_c, gh, gw, D], timestamps [T_c])` once per
chunk of `frames_per_chunk` sampled frames and answers from `compressor.snapshot()`; `stream_memories` does
exactly that and keeps the snapshots taken after the chosen chunks. The "full" format instead keeps every
token of `frames` frames sampled uniformly over the frames seen so far (the uncompressed reference).
`live_memory` is the slow path for a trainable vision path: the memory rebuilt from frames every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compressor.registry import make_stream_compressor
from compressor.snapshot import Snapshot
from compressor.stream_base import StreamCompressor
from train.formats import FULL, MemoryFormat
from train.model import encode_frames_grad
from train.oracle import token_objects
from vlm.llava_onevision import LlavaOnevision


@dataclass(frozen=True)
class Memory:
    """What one question is answered from: base [K, D], motion [K, F] (F = 0: no motion), recent [R, D],
    all float32 CPU tensors, and the media-time span [t_start, t_end] (seconds) they cover."""

    base: torch.Tensor
    motion: torch.Tensor
    recent: torch.Tensor
    t_start: float
    t_end: float
    objects: np.ndarray | None = None  # [K] object index each base token holds (-1 background), when known

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Memory:
        """The same memory with its tensors on `device` in `dtype`."""
        base, motion, recent = (t.to(device=device, dtype=dtype) for t in (self.base, self.motion, self.recent))
        return Memory(base, motion, recent, self.t_start, self.t_end, self.objects)

    @property
    def num_visual(self) -> int:
        """Visual tokens handed to the LLM: K + R."""
        return int(self.base.shape[0] + self.recent.shape[0])


def snapshot_chunks(num_chunks: int, count: int) -> list[int]:
    """Indices of `count` chunks spread evenly over `num_chunks` (the last one always included), ascending."""
    if num_chunks < 1:
        raise ValueError(f"num_chunks: expected >= 1, got {num_chunks}")
    picks = np.linspace(num_chunks - 1, 0, num=min(count, num_chunks) + 1)[:count] if count > 1 else [num_chunks - 1]
    return sorted({int(round(c)) for c in picks})


def _uniform_picks(count: int, frames: int) -> np.ndarray:
    """Indices of `frames` frames spread uniformly over `count` (all of them when fewer)."""
    return np.unique(np.linspace(0, count - 1, num=min(frames, count)).round().astype(int))


def _full_memory(tokens: torch.Tensor, timestamps: np.ndarray) -> Memory:
    """Every token of tokens [n, gh, gw, D] -> base [n * gh * gw, D], no motion, no recent window."""
    base = tokens.reshape(-1, tokens.shape[-1]).float()  # [n * gh * gw, D]
    return Memory(base, base.new_zeros(base.shape[0], 0), base.new_zeros(0, base.shape[1]),
                  float(timestamps[0]), float(timestamps[-1]))


def snapshot_memory(snapshot: Snapshot, device: torch.device | str = "cpu") -> Memory:
    """A compressor snapshot (a live memory's or a time window's) -> the Memory the model reads: base [K, D],
    motion [K, F], recent [R, D] float32 on `device`, and its span."""
    base, motion, recent = (torch.from_numpy(np.array(a, dtype=np.float32)).to(device)
                            for a in (snapshot.base, snapshot.motion, snapshot.recent))
    return Memory(base, motion, recent, snapshot.t_start, snapshot.t_end)


def _snapshot_memory(compressor: StreamCompressor, device: torch.device | str = "cpu") -> Memory:
    return snapshot_memory(compressor.snapshot(), device)


def _compressor(fmt: MemoryFormat, seed: int) -> StreamCompressor:
    return make_stream_compressor(fmt.compressor_config(seed))


def stream_memories(tokens: torch.Tensor, timestamps: np.ndarray, fmt: MemoryFormat, frames_per_chunk: int,
                    at_chunks: Sequence[int], seed: int = 0, labels: np.ndarray | None = None) -> list[Memory]:
    """Tokens [T, gh, gw, D] of sampled frames at media times [T] -> the memory after each chunk in `at_chunks`
    (chunk i = frames [i * frames_per_chunk, (i + 1) * frames_per_chunk)), in that order. With the frames' cell
    labels [T, gh, gw] (object index, -1 background) a compressor with a key map also tells which object each
    base token holds (`Memory.objects`, train/oracle.py `token_objects`)."""
    if tokens.ndim != 4 or tokens.shape[0] != len(timestamps):
        raise ValueError(f"tokens [T, gh, gw, D] and timestamps [T]: expected matching T, got "
                         f"{tuple(tokens.shape)} and {len(timestamps)}")
    wanted = sorted(set(at_chunks))
    tokens = tokens.detach().cpu()
    if fmt.method == FULL:
        ends = [(i + 1) * frames_per_chunk for i in wanted]
        return [_full_memory(tokens[_uniform_picks(min(end, len(timestamps)), fmt.frames)], timestamps[:end])
                for end in ends]
    compressor = _compressor(fmt, seed)
    out = []
    for i in range(wanted[-1] + 1):
        part = slice(i * frames_per_chunk, (i + 1) * frames_per_chunk)
        compressor.update(tokens[part], timestamps[part])
        if i in wanted:
            memory = _snapshot_memory(compressor)
            if labels is not None and hasattr(compressor, "key_map"):
                key_map = compressor.key_map()  # [T_seen, gh, gw]
                objects = token_objects(key_map, labels[:key_map.shape[0]], memory.base.shape[0])
                memory = dataclasses.replace(memory, objects=objects)
            out.append(memory)
    return out


ENCODE_BATCH_FRAMES = 32  # frames per vision-tower pass while caching tokens


def encode(vlm: LlavaOnevision, frames: np.ndarray) -> torch.Tensor:
    """Frames uint8 [T, S, S, 3] -> tokens [T, gh, gw, D] through the frozen vision path, in batches."""
    return torch.cat([vlm.encode_frames(frames[i:i + ENCODE_BATCH_FRAMES])
                      for i in range(0, len(frames), ENCODE_BATCH_FRAMES)])


@dataclass(frozen=True)
class FrameSource:
    """What a memory is rebuilt from at every step while the vision path trains (the slow path): sampled
    frames uint8 [T, S, S, 3] at media times [T], the format, the chunking and the compressor seed."""

    frames: np.ndarray
    times: np.ndarray
    fmt: MemoryFormat
    frames_per_chunk: int
    seed: int


def live_memory(vlm: LlavaOnevision, source: FrameSource) -> Memory:
    """FrameSource -> its memory, with gradients into the vision tower and projector.

    "full": the picked frames are encoded with grad and used as they are. Compressed formats: every frame is
    encoded with grad, the streaming compressor runs on the detached tokens chunk by chunk (its choices are
    not differentiable), and for Token Dynamics the base takes a straight-through gradient: its value is the
    compressor's own, its gradient that of the mean of each cluster's member tokens under the key map.
    Baselines without a key map pass no gradient to the vision path.
    """
    fmt, fpc = source.fmt, source.frames_per_chunk
    if fmt.method == FULL:
        picks = _uniform_picks(len(source.times), fmt.frames)
        return _full_memory(encode_frames_grad(vlm, torch.from_numpy(source.frames[picks])), source.times)
    tokens = encode_frames_grad(vlm, torch.from_numpy(source.frames))  # [T, gh, gw, D], with grad
    compressor = _compressor(fmt, source.seed)
    for start in range(0, len(source.times), fpc):
        compressor.update(tokens[start:start + fpc].detach(), source.times[start:start + fpc])
    memory = _snapshot_memory(compressor, tokens.device)
    if not hasattr(compressor, "key_map"):
        return memory
    ids = torch.from_numpy(compressor.key_map().astype(np.int64)).reshape(-1).to(tokens.device)  # [T * gh * gw]
    flat = tokens.reshape(-1, tokens.shape[-1])  # [T * gh * gw, D]
    k = memory.base.shape[0]
    sums = flat.new_zeros(k, flat.shape[1]).index_add(0, ids, flat)  # [K, D]
    pooled = sums / torch.bincount(ids, minlength=k).clamp(min=1).unsqueeze(1).to(flat.dtype)  # member means
    base = memory.base.to(flat.dtype) + (pooled - pooled.detach())  # value: the compressor's; grad: the mean's
    return Memory(base, memory.motion, memory.recent, memory.t_start, memory.t_end)


def memory_inputs(vlm: LlavaOnevision, frames: np.ndarray, times: np.ndarray, formats: Sequence[MemoryFormat],
                  frames_per_chunk: int, at_chunks: Sequence[int], seed: int,
                  live: bool, labels: np.ndarray | None = None) -> list[list[Memory | FrameSource]]:
    """Sampled frames uint8 [T, S, S, 3] at media times [T] -> per format, per chunk in `at_chunks` (ascending):
    the memory (frozen vision: tokens encoded once, here) or, with `live`, the FrameSource to rebuild it from
    at every step (the frames are views of `frames`, not copies). `labels` [T, gh, gw]: see stream_memories."""
    wanted = sorted(set(at_chunks))
    if live:
        ends = [min((i + 1) * frames_per_chunk, len(times)) for i in wanted]
        return [[FrameSource(frames[:end], times[:end], fmt, frames_per_chunk, seed) for end in ends]
                for fmt in formats]
    tokens = encode(vlm, frames)  # [T, gh, gw, D]
    return [stream_memories(tokens, times, fmt, frames_per_chunk, wanted, seed, labels) for fmt in formats]
