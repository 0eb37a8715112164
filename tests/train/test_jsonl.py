"""User datasets as JSONL: bad rows are named (row number + field), skipped and counted or stopped at; good
rows become one example per memory format through the real decoder, sampler and streaming compressor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_video
from train.config import DataConfig, ModelInit, SceneData
from train.formats import MemoryFormat
from train.jsonl import BadRow, read_rows, row_examples
from train.model import load_model


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("jsonl") / "clip.mp4", seconds=6.0)


def _jsonl(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _good(video: Path, **extra) -> dict:
    return {"video": str(video), "question": "What moves?", "answer": "squares", **extra}


@pytest.mark.parametrize("bad, message", [
    ({"video": "missing.mp4", "question": "q", "answer": "a"}, r"row 2: field 'video': file 'missing.mp4' not found"),
    ({"question": "q", "answer": "a"}, r"row 2: field 'video' is missing"),
    ("VIDEO", r"row 2: field 'question' is missing"),
    ("ANSWER_INT", r"row 2: field 'answer': expected a non-empty string, got 3"),
    ("T_START_STR", r"row 2: field 't_start': expected a number of seconds"),
    ("SPAN", r"row 2: fields 't_start'/'t_end': expected 0 <= t_start < t_end"),
    ("{not json", r"row 2: expected a JSON object, got invalid JSON"),
])
def test_bad_row_stops_naming_row_and_field(tmp_path, video, bad, message):
    special = {"VIDEO": {"video": str(video), "answer": "a"},
               "ANSWER_INT": _good(video, answer=3),
               "T_START_STR": _good(video, t_start="2"),
               "SPAN": _good(video, t_start=4.0, t_end=2.0)}
    row = special.get(bad, bad) if isinstance(bad, str) else bad
    path = _jsonl(tmp_path, [_good(video), row])
    with pytest.raises(BadRow, match=message):
        read_rows(path, on_bad_row="stop")


def test_bad_rows_skipped_and_counted(tmp_path, video):
    path = _jsonl(tmp_path, [_good(video), {"question": "q", "answer": "a"}, "", _good(video, answer=1),
                             _good(video, t_start=1.0, t_end=4.0)])
    reported: list[str] = []
    rows, skipped = read_rows(path, on_bad_row="skip", report=reported.append)
    assert [r.number for r in rows] == [1, 5] and skipped == 2
    assert "row 2" in reported[0] and "row 4" in reported[1]


def test_relative_video_paths_resolve_next_to_the_file(tmp_path, video):
    (tmp_path / "clip.mp4").write_bytes(video.read_bytes())
    rows, _ = read_rows(_jsonl(tmp_path, [_good(Path("clip.mp4"))]))
    assert rows[0].video == str(tmp_path / "clip.mp4")


def test_row_becomes_memories_over_its_span(tmp_path, video):
    rows, _ = read_rows(_jsonl(tmp_path, [_good(video, t_start=1.0, t_end=4.0)]))
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    data = DataConfig(scenes=SceneData(count=0), jsonl="unused")
    formats = (MemoryFormat(budget=16), MemoryFormat(method="uniform", budget=8), MemoryFormat(method="full", frames=4))
    per_format = row_examples(vlm, rows[0], formats, data, seed=0)
    (td,), (uni,), (full,) = per_format
    assert td.memory.base.shape == (16, vlm.hidden_size) and td.memory.motion.shape[1] > 0 and td.fused
    assert uni.memory.base.shape[0] <= 8 and not uni.fused
    assert full.memory.base.shape == (4 * 196, vlm.hidden_size)
    # sampled at 2 frames/s inside [1, 4] s: the memory covers exactly that span
    assert (td.memory.t_start, td.memory.t_end) == (1.0, 4.0)
    assert td.question == "What moves?" and td.answer == "squares"


def test_undecodable_video_is_a_bad_row(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    rows, _ = read_rows(_jsonl(tmp_path, [_good(broken)]))
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    data = DataConfig(scenes=SceneData(count=0), jsonl="unused")
    with pytest.raises(BadRow, match="row 1: field 'video': cannot decode"):
        row_examples(vlm, rows[0], (MemoryFormat(),), data, seed=0)
