"""Frame tokens -> the memories the model reads, built by the same streaming compressor code the pipeline runs.

The memory actor (actors/memory.py) calls `compressor.update(tokens [T_c, gh, gw, D], timestamps [T_c])` once per
chunk of `frames_per_chunk` sampled frames and answers from `compressor.snapshot()`; `stream_memories` does
exactly that and keeps the snapshots taken after the chosen chunks. The "full" format instead keeps every
token of `frames` frames sampled uniformly over the frames seen so far (the uncompressed reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor.registry import make_stream_compressor
from train.config import FULL, MemoryFormat


@dataclass(frozen=True)
class Memory:
    """What one question is answered from: base [K, D], motion [K, F] (F = 0: no motion), recent [R, D],
    all float32 CPU tensors, and the media-time span [t_start, t_end] (seconds) they cover."""

    base: torch.Tensor
    motion: torch.Tensor
    recent: torch.Tensor
    t_start: float
    t_end: float

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Memory:
        """The same memory with its tensors on `device` in `dtype`."""
        base, motion, recent = (t.to(device=device, dtype=dtype) for t in (self.base, self.motion, self.recent))
        return Memory(base, motion, recent, self.t_start, self.t_end)

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


def _full_memory(tokens: torch.Tensor, timestamps: np.ndarray, frames: int) -> Memory:
    """Every token of `frames` frames sampled uniformly from tokens [T, gh, gw, D] -> base [frames * gh * gw, D]."""
    picks = np.unique(np.linspace(0, tokens.shape[0] - 1, num=min(frames, tokens.shape[0])).round().astype(int))
    base = tokens[torch.from_numpy(picks)].reshape(-1, tokens.shape[-1]).float()  # [n * gh * gw, D]
    return Memory(base, base.new_zeros(base.shape[0], 0), base.new_zeros(0, base.shape[1]),
                  float(timestamps[0]), float(timestamps[-1]))


def stream_memories(tokens: torch.Tensor, timestamps: np.ndarray, fmt: MemoryFormat, frames_per_chunk: int,
                    at_chunks: Sequence[int], seed: int = 0) -> list[Memory]:
    """Tokens [T, gh, gw, D] of sampled frames at media times [T] -> the memory after each chunk in `at_chunks`
    (chunk i = frames [i * frames_per_chunk, (i + 1) * frames_per_chunk)), in that order."""
    if tokens.ndim != 4 or tokens.shape[0] != len(timestamps):
        raise ValueError(f"tokens [T, gh, gw, D] and timestamps [T]: expected matching T, got "
                         f"{tuple(tokens.shape)} and {len(timestamps)}")
    wanted = sorted(set(at_chunks))
    tokens = tokens.detach().cpu()
    if fmt.method == FULL:
        return [_full_memory(tokens[:(i + 1) * frames_per_chunk], timestamps[:(i + 1) * frames_per_chunk], fmt.frames)
                for i in wanted]
    compressor = make_stream_compressor(CompressorConfig(method=fmt.method, budget=fmt.budget,
                                                         recent_window=fmt.recent_window, seed=seed))
    out = []
    for i in range(wanted[-1] + 1):
        part = slice(i * frames_per_chunk, (i + 1) * frames_per_chunk)
        compressor.update(tokens[part], timestamps[part])
        if i in wanted:
            snap = compressor.snapshot()
            out.append(Memory(torch.from_numpy(np.array(snap.base)), torch.from_numpy(np.array(snap.motion)),
                              torch.from_numpy(np.array(snap.recent)), snap.t_start, snap.t_end))
    return out
