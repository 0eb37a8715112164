"""A user's labelled footage as JSONL -> training examples, through the pipeline's own decode and sampler.

One JSON object per line: {"video": path or URL, "question": str, "answer": str, "t_start"?: s, "t_end"?: s}.
The memory covers [t_start, t_end] of the video (default: all of it, up to data.max_frames sampled frames)
and the question is asked at its end. Blank lines are ignored; a bad row raises BadRow naming the row number
(1-based line) and the field, or is skipped and counted, per `data.on_bad_row`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.sampling import chunks
from stream.sources import SourceError
from train.config import DataConfig
from train.formats import MemoryFormat
from train.memory import memory_inputs
from train.objective import Example
from vlm.llava_onevision import LlavaOnevision

log = logging.getLogger(__name__)


class BadRow(ValueError):
    """A JSONL row that cannot be used; the message names the file, the row number and the field."""


@dataclass(frozen=True)
class Row:
    """One validated row: video (a local path or a URL), question, answer, and the span (media s) or None."""

    number: int
    video: str
    question: str
    answer: str
    t_start: float | None
    t_end: float | None


def _is_url(video: str) -> bool:
    return "://" in video and not video.startswith("file://")


def parse_row(line: str, number: int, base: Path) -> Row:
    """One JSONL line -> Row; relative video paths are taken relative to the JSONL file's folder `base`.

    Raises BadRow naming the row and the field for bad JSON, a missing or mistyped field, a missing file or a
    span that is not 0 <= t_start < t_end.
    """
    where = f"row {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadRow(f"{where}: expected a JSON object, got invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise BadRow(f"{where}: expected a JSON object, got {type(data).__name__}")
    for name in ("video", "question", "answer"):
        if name not in data:
            raise BadRow(f"{where}: field {name!r} is missing (expected a string)")
        if not isinstance(data[name], str) or not data[name].strip():
            raise BadRow(f"{where}: field {name!r}: expected a non-empty string, got {data[name]!r:.60}")
    span = []
    for name in ("t_start", "t_end"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadRow(f"{where}: field {name!r}: expected a number of seconds or null, got {value!r:.60}")
        span.append(None if value is None else float(value))
    t_start, t_end = span
    if (t_start is not None and t_start < 0) or (t_start is not None and t_end is not None and t_end <= t_start):
        raise BadRow(f"{where}: fields 't_start'/'t_end': expected 0 <= t_start < t_end, got {t_start}/{t_end}")
    video = data["video"]
    if not _is_url(video):
        path = Path(video.removeprefix("file://")).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise BadRow(f"{where}: field 'video': file {video!r} not found")
        video = str(path)
    return Row(number, video, data["question"], data["answer"], t_start, t_end)


def read_rows(path: str | Path, on_bad_row: str = "stop", report: Callable[[str], None] = log.warning) -> tuple[
        list[Row], int]:
    """All valid rows of a JSONL file and the number skipped ("skip": each reported; "stop": BadRow raised)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadRow(f"data.jsonl: expected a JSONL file, got {str(path)!r} (not found)")
    rows, skipped = [], 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(parse_row(line, number, path.parent))
        except BadRow as exc:
            if on_bad_row == "stop":
                raise BadRow(f"{path.name}: {exc}") from None
            skipped += 1
            report(f"{path.name}: skipped {exc}")
    return rows, skipped


def sampled_video(row: Row, data: DataConfig, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode `row.video` with the pipeline's sampler -> (frames uint8 [T, S, S, 3], media times [T]) inside the
    row's span. Raises BadRow when the video cannot be opened or holds no frame in the span."""
    frames, times = [], []
    try:
        for chunk in chunks(row.video, data.sample_rate_hz, data.frames_per_chunk, image_size, policy="wait"):
            keep = np.ones(len(chunk.timestamps), bool)
            if row.t_start is not None:
                keep &= chunk.timestamps >= row.t_start
            if row.t_end is not None:
                keep &= chunk.timestamps <= row.t_end
            frames.append(chunk.frames[keep])
            times.append(chunk.timestamps[keep])
            if sum(len(t) for t in times) >= data.max_frames or (
                    row.t_end is not None and chunk.timestamps[-1] > row.t_end):
                break
    except (SourceError, ValueError, OSError) as exc:
        raise BadRow(f"row {row.number}: field 'video': cannot decode {row.video!r} ({exc})") from None
    count = sum(len(t) for t in times)
    if not count:
        raise BadRow(f"row {row.number}: fields 't_start'/'t_end': no sampled frame of {row.video!r} in "
                     f"[{row.t_start}, {row.t_end}] s")
    return np.concatenate(frames)[:data.max_frames], np.concatenate(times)[:data.max_frames]


def row_examples(vlm: LlavaOnevision, row: Row, formats: Sequence[MemoryFormat], data: DataConfig, seed: int,
                 live: bool = False) -> list[list[Example]]:
    """One row -> one example per format (memory over the whole span, question asked at its end); `live`:
    keep the frames to rebuild the memory with grad every step (trainable vision path)."""
    frames, times = sampled_video(row, data, vlm.image_size)
    last = -(-len(times) // data.frames_per_chunk) - 1
    inputs = memory_inputs(vlm, frames, times, formats, data.frames_per_chunk, [last], seed, live)
    return [[Example.of(per_format[0], row.question, row.answer, fmt)] for fmt, per_format in zip(formats, inputs)]
