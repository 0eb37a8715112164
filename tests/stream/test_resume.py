"""Resuming a stream: a source started again on a stream (crash, move) goes on after its memory's newest frame.

Files seek and skip (the same frames as a read from the start), looped files continue their clock, generated
video starts at the next frame, and the clock corrector steps from the resume point (a camera: by the wall
time of the outage). The live camera case runs against the real RTSP server in test_rtsp.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream.config import SourceConfig
from stream.sampling import chunks
from stream.sources import open_source
from stream.synthetic import SyntheticVideo, write_video
from stream.timestamps import ResumePoint, TimestampCorrector


def test_corrector_steps_from_the_resume_point_by_fps_or_by_wall_time() -> None:
    file_clock = TimestampCorrector(fps=10)
    file_clock.continue_after(100.0, arrival=0.0)
    assert file_clock.correct(0.0, arrival=5.0) == pytest.approx(100.1)  # a replayed PTS: one frame later
    assert file_clock.correct(0.1, arrival=5.1) == pytest.approx(100.2)  # and on from there
    camera = TimestampCorrector(fps=10, live=True)
    camera.continue_after(100.0, arrival=1000.0)
    assert camera.correct(3.0, arrival=1030.0) == pytest.approx(130.0)  # 30 s of outage count as media time
    assert camera.correct(3.1, arrival=1030.1) == pytest.approx(130.1)


def test_a_resumed_file_hands_out_exactly_the_frames_after_the_point(tmp_path) -> None:
    """Given a file with a keyframe every 10 frames, when it is resumed after 2.0 s, then it seeks (decodes far
    fewer frames than those before the point) and hands out the frames a full read has after 2.0 s, pixel for
    pixel, with the same timestamps."""
    video = SyntheticVideo(width=64, height=48, fps=10, seconds=6)
    path = tmp_path / "gop10.mp4"
    write_video(path, video.frames(), fps=10, options={"g": "10", "keyint_min": "10", "sc_threshold": "0"})
    full = list(open_source(str(path)))
    source = open_source(str(path), resume=ResumePoint(2.0))
    tail = list(source)
    expected = [f for f in full if f.pts > 2.0]
    assert [f.pts for f in tail] == pytest.approx([f.pts for f in expected])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(tail, expected))
    assert source.status().decoded < len(full) - 10  # sought: at most one GOP decoded before the point


def test_a_resumed_looped_file_continues_its_clock_from_within_the_loop(tmp_path) -> None:
    """A 2 s looped file resumed at 5.05 s (2.5 loops in): timestamps go on after 5.05 s, the frames come
    from about 1 s into the file, and no earlier loop is decoded."""
    video = SyntheticVideo(width=64, height=48, fps=10, seconds=2)
    path = tmp_path / "loop.mp4"
    write_video(path, video.frames(), fps=10, options={"g": "5", "keyint_min": "5", "sc_threshold": "0"})
    full = list(open_source(str(path)))
    source = open_source(str(path), SourceConfig(loop=True), resume=ResumePoint(5.05))
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 15:
            break
    source.close()
    pts = [f.pts for f in frames]
    assert 5.05 < pts[0] <= 5.05 + 0.1 and all(b > a for a, b in zip(pts, pts[1:]))
    first = [i for i, f in enumerate(full) if np.array_equal(f.image, frames[0].image)]
    assert first and 0.5 <= full[first[0]].pts <= 1.05  # the keyframe at or before 1.05 s of the file
    assert source.status().decoded == 15  # the two loops before were never decoded


def test_generated_video_resumes_on_the_next_frame() -> None:
    video = SyntheticVideo(width=64, height=48, fps=10, seconds=4)
    source = open_source("synthetic://?width=64&height=48&fps=10&seconds=4", resume=ResumePoint(1.0))
    frames = list(source)
    assert frames[0].pts == pytest.approx(1.1) and len(frames) == 40 - 11
    assert np.array_equal(frames[0].image, video.frame(11)[0])


def test_chunks_of_a_resumed_stream_go_on_counting_on_the_same_grid() -> None:
    source = open_source("synthetic://?width=64&height=48&fps=10&seconds=4", resume=ResumePoint(1.0, seq=7))
    got = list(chunks(source, rate_hz=2.0, frames_per_chunk=2, size=32))
    assert [c.seq for c in got] == [7, 8, 9]  # numbered on from the memory's next
    assert np.concatenate([c.timestamps for c in got]) == pytest.approx([1.5, 2.0, 2.5, 3.0, 3.5])  # the grid
