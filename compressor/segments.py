"""A stream's segments on disk: every ``segment_s`` of media time sealed as its own small memory.

The folder (next to the stream's checkpoint; shared storage on a cluster) holds

    open.seg                        the segment being filled, rewritten atomically after every chunk
    <t_start>_<t_end>.seg           sealed segments, named by the media seconds they cover (fixed width)

Each file is a checksummed state envelope (``serial.py``). The open one (method ``"segment"``) holds a
streaming Token Dynamics state (no decay: a segment weighs its whole span equally) plus the timestamps of its
frames, so it continues after a restart. A sealed one (method ``"sealed_segment"``) keeps only what a window
needs (``window.SegmentPart``: K cluster sums as unit directions in float16 (3 digits: enough to merge them)
times their lengths in float64, counts, norm sums, key map, timestamps): 0.12 MB per 5 minutes at 1 frame/s, K = 32, D = 896. A segment is sealed at the first chunk boundary after it spans ``segment_s`` seconds; then retention deletes
sealed segments that ended more than ``retention_s`` before the newest frame, and the oldest ones while
all of them take more than ``retention_bytes``. ``window`` builds a K-token memory for any span of media
time from these files alone (``window.py``), so any process that can read the folder can answer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor.errors import CompressorError, InvalidState
from compressor.serial import dumps, loads, pack_array, write_atomic
from compressor import state_check as check
from compressor.streaming import StreamingTokenDynamics
from compressor.window import SegmentPart, WindowMemory, build_window

log = logging.getLogger(__name__)

OPEN = "open.seg"
SUFFIX = ".seg"


class WindowOutOfRange(CompressorError):
    """A window asked for media time that no segment holds (deleted by retention, or not seen yet)."""


def segment_config(config: CompressorConfig) -> CompressorConfig:
    """The config of a segment's compressor: the stream's K, no decay, no recent window, its whole key map."""
    return dataclasses.replace(config, method="token_dynamics", half_life_s=0.0, recent_window=0, keymap_frames=0)


def encode_segment(compressor: StreamingTokenDynamics, timestamps: np.ndarray) -> bytes:
    """A segment file's bytes: the compressor state and its frames' timestamps ``[T]`` float64."""
    return dumps("segment", {"compressor": compressor.to_bytes(), "timestamps": pack_array(timestamps)})


def decode_segment(data: bytes) -> tuple[StreamingTokenDynamics, np.ndarray]:
    """Inverse of ``encode_segment``.

    Raises:
        InvalidState: damaged or inconsistent bytes (the one error type of state files).
    """
    _, payload = loads(data, "segment")
    check.keys(payload, "segment", {"compressor", "timestamps"})
    check.expect(isinstance(payload["compressor"], bytes), "segment.compressor", "bytes", payload["compressor"])
    compressor = StreamingTokenDynamics.from_bytes(payload["compressor"])
    times = check.array(payload["timestamps"], "segment.timestamps", np.float64, (compressor.frames_seen,),
                        finite=True)
    check.expect(bool(np.all(np.diff(times) >= 0)) and (times.size == 0 or (
        times[0] == compressor.t_start and times[-1] == compressor.t_end)), "segment.timestamps",
        "non-decreasing times spanning the state's t_start..t_end", times[:3].tolist())
    return compressor, times


def segment_name(t_start: float, t_end: float) -> str:
    """File name of a sealed segment; fixed-width milliseconds, so names sort by time."""
    return f"{round(t_start * 1000):016d}_{round(t_end * 1000):016d}{SUFFIX}"


def encode_sealed(part: SegmentPart) -> bytes:
    """A sealed segment file's bytes."""
    sizes = np.linalg.norm(part.sums, axis=1)
    directions = (part.sums / np.maximum(sizes, 1e-12)[:, None]).astype(np.float16)
    return dumps("sealed_segment", {"directions": pack_array(directions), "sizes": pack_array(sizes),
                                    "counts": pack_array(part.counts), "norm_sums": pack_array(part.norm_sums),
                                    "key_map": pack_array(part.key_map), "timestamps": pack_array(part.timestamps)})


def decode_sealed(data: bytes) -> SegmentPart:
    """Inverse of ``encode_sealed``, checking every array against the others.

    Raises:
        InvalidState: damaged or inconsistent bytes.
    """
    _, payload = loads(data, "sealed_segment")
    check.keys(payload, "sealed segment", {"directions", "sizes", "counts", "norm_sums", "key_map", "timestamps"})
    directions = check.array(payload["directions"], "directions", np.float16, (-1, -1), finite=True)
    k = directions.shape[0]
    check.expect(1 <= k <= 4096 and directions.shape[1] >= 1, "directions", "[K, D] with 1 <= K <= 4096",
                 list(directions.shape))
    sizes = check.array(payload["sizes"], "sizes", np.float64, (k,), finite=True)
    sums = directions.astype(np.float64) * sizes[:, None]
    counts = check.array(payload["counts"], "counts", np.float64, (k,), finite=True)
    norm_sums = check.array(payload["norm_sums"], "norm_sums", np.float64, (k,), finite=True)
    check.expect(bool(np.all(counts > 0) and np.all(norm_sums >= 0)), "counts", "positive counts", counts[:4])
    key_map = check.array(payload["key_map"], "key_map", np.uint8 if k <= 256 else np.uint16, (-1, -1, -1))
    check.expect(key_map.shape[0] >= 1 and min(key_map.shape) >= 1, "key_map", "[T, H, W] with T >= 1",
                 list(key_map.shape))
    check.ids(key_map, "key_map", 0, k)
    times = check.array(payload["timestamps"], "timestamps", np.float64, (key_map.shape[0],), finite=True)
    check.expect(bool(np.all(np.diff(times) >= 0)), "timestamps", "non-decreasing", times[:3].tolist())
    return SegmentPart(sums, counts, norm_sums, key_map, times)


def parse_name(name: str) -> tuple[float, float] | None:
    """``(t_start, t_end)`` of a sealed segment's file name, None for anything else."""
    stem, _, rest = name.partition(SUFFIX)
    parts = stem.split("_")
    if rest or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]) / 1000, int(parts[1]) / 1000


def part_of(compressor: StreamingTokenDynamics, timestamps: np.ndarray) -> SegmentPart:
    """What a window needs of one segment (clusters in canonical order, key map, timestamps)."""
    order = compressor.canonical_slots()
    index = torch.from_numpy(order).to(compressor.sums.device)
    key_map = compressor.key_map()
    return SegmentPart(compressor.sums[index].double().cpu().numpy(), compressor.counts[order],
                       compressor.norm_sums[order], key_map.astype(np.uint8 if order.size <= 256 else np.uint16),
                       timestamps)


class SegmentStore:
    """The segments of one stream in ``folder``; ``update`` feeds the open segment and seals it when due.

    Restores ``open.seg`` if it is valid (a damaged one is kept aside as ``open.seg.bad`` and a new segment
    starts: the sealed ones are unaffected).
    """

    def __init__(self, folder: str | Path, config: CompressorConfig) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = config
        self._open: StreamingTokenDynamics | None = None
        self._times = np.zeros(0, dtype=np.float64)
        path = self.folder / OPEN
        if path.exists():
            try:
                self._open, self._times = decode_segment(path.read_bytes())
            except InvalidState as exc:
                log.error("segments %s: unreadable open segment (%s), starting a new one", self.folder, exc)
                os.replace(path, path.with_suffix(".seg.bad"))

    def update(self, tokens: np.ndarray | torch.Tensor, timestamps: np.ndarray) -> None:
        """Add a chunk ``[T_c, H, W, D]`` with ``timestamps [T_c]`` to the open segment; seal it when it spans
        ``segment_s``; write ``open.seg``. Bad input raises ``InvalidTokens`` and changes nothing."""
        if self._open is None:
            self._open = StreamingTokenDynamics(segment_config(self.config))
        self._open.update(tokens, timestamps)
        self._times = np.concatenate([self._times, np.asarray(timestamps, dtype=np.float64)])
        if self._open.t_end - self._open.t_start >= self.config.segment_s:
            self.seal()
        else:
            write_atomic(self.folder / OPEN, encode_segment(self._open, self._times))

    def seal(self) -> None:
        """Seal the open segment (if it holds anything) and apply retention."""
        if self._open is None or not self._open.frames_seen:
            return
        newest = self._open.t_end
        write_atomic(self.folder / segment_name(self._open.t_start, newest),
                     encode_sealed(part_of(self._open, self._times)))
        (self.folder / OPEN).unlink(missing_ok=True)
        self._open, self._times = None, np.zeros(0, dtype=np.float64)
        self._retain(newest)

    def sealed(self) -> list[tuple[float, float, Path]]:
        """Sealed segments ``(t_start, t_end, path)``, oldest first."""
        found = []
        for path in self.folder.iterdir():
            span = parse_name(path.name)
            if span is not None:
                found.append((*span, path))
        return sorted(found)

    def _retain(self, newest: float) -> None:
        segments = self.sealed()
        sizes = [path.stat().st_size for _, _, path in segments]
        total = sum(sizes)
        for (_, t_end, path), size in zip(segments, sizes):
            if t_end >= newest - self.config.retention_s and total <= self.config.retention_bytes:
                break  # oldest first: once one is kept, every newer one is too
            path.unlink(missing_ok=True)
            total -= size
            log.info("segments %s: retention deleted %s", self.folder, path.name)

    def nbytes(self) -> int:
        """Bytes of every segment file (sealed and open)."""
        return sum(path.stat().st_size for path in self.folder.glob(f"*{SUFFIX}"))

    def window(self, t_start: float, t_end: float, version: int = 0) -> WindowMemory:
        """A K-token memory of the frames in ``[t_start, t_end]`` media seconds (``t_end`` may be +inf: up to
        the newest frame; see ``window.py``).

        Raises:
            WindowOutOfRange: the window is empty, reversed, or holds no frame any segment still has (it names
                the span the segments do cover).
        """
        return window_from_folder(self.folder, t_start, t_end, self.config.base_budget, version)


def window_from_folder(folder: str | Path, t_start: float, t_end: float, k: int, version: int = 0) -> WindowMemory:
    """``SegmentStore.window`` for any reader of the folder (no store object, nothing written)."""
    if not (np.isfinite(t_start) and t_start <= t_end):  # t_end = +inf: up to the newest frame
        raise WindowOutOfRange(f"window: expected a finite t_start <= t_end, got [{t_start}, {t_end}]")
    folder = Path(folder).expanduser()
    paths = []
    held: list[float] = []
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            span = parse_name(path.name)
            if span is not None:
                held.extend(span)
                if span[1] >= t_start and span[0] <= t_end:
                    paths.append(path)
        if (folder / OPEN).exists():
            paths.append(folder / OPEN)
    parts = []
    for path in paths:
        try:
            data = path.read_bytes()
            parts.append(part_of(*decode_segment(data)) if path.name == OPEN else decode_sealed(data))
        except (InvalidState, FileNotFoundError) as exc:  # sealed/retained meanwhile, or damaged: skip it
            log.warning("segments %s: skipped %s (%s)", folder, path.name, exc)
    parts.sort(key=lambda p: float(p.timestamps[0]) if p.timestamps.size else 0.0)
    try:
        return build_window(parts, t_start, t_end, k, version)
    except ValueError:
        covered = f"[{min(held)}, {max(held)}] (plus the open segment)" if held else "only the open segment"
        raise WindowOutOfRange(f"window [{t_start}, {t_end}]: expected a span the segments hold, got none there; "
                               f"sealed segments cover {covered}") from None
