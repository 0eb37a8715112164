"""Sampling by timestamp, timestamp repair, resizing, chunking and the chunks() loop."""

from __future__ import annotations

import numpy as np
import pytest

from stream.frames import Frame
from stream.sampling import Chunker, Sampler, chunks, resize_frames
from stream.sources import open_source
from stream.timestamps import TimestampCorrector

from .helpers import reference_selection


def run_sampler(timestamps, rate_hz):
    sampler = Sampler(rate_hz)
    return [t for t in timestamps if sampler.keep(t)]


@pytest.mark.parametrize("fps, rate", [(30, 2), (30, 4), (25, 3), (10, 2), (30, 30), (10, 60)])
def test_sampler_constant_rate_hits_the_grid(fps, rate):
    stamps = [i / fps for i in range(10 * fps)]
    kept = run_sampler(stamps, rate)
    assert kept == reference_selection(stamps, rate)
    if rate <= fps and fps % rate == 0:  # the grid falls on frames: exactly k / rate
        assert np.allclose(kept, np.arange(len(kept)) / rate, atol=1e-9)
    if rate >= fps:
        assert kept == stamps


def test_sampler_variable_frame_rate_and_gaps():
    """Irregular spacing (VFR) and a 3 s hole: one frame per grid point, no burst after the hole."""
    rng = np.random.default_rng(0)
    stamps = list(np.cumsum(rng.uniform(0.01, 0.08, 200)))
    stamps = [t for t in stamps if not 4.0 < t < 7.0]
    kept = run_sampler(stamps, 2.0)
    assert kept == reference_selection(stamps, 2.0)
    cells = [int((t - stamps[0]) // 0.5) for t in kept]
    assert len(set(cells)) == len(cells)  # one frame per grid cell: no catch-up burst after the hole
    assert any(t > 7.0 for t in kept)


def test_sampler_rejects_bad_rate():
    with pytest.raises(ValueError, match="rate_hz: expected > 0, got 0"):
        Sampler(0)


def test_corrector_keeps_good_timestamps_and_fills_missing():
    clock = TimestampCorrector(fps=10)
    out = [clock.correct(t, 0.0) for t in (5.0, 5.1, None, 5.3)]
    assert out == pytest.approx([5.0, 5.1, 5.2, 5.3]) and clock.missing == 1


def test_corrector_reset_continues_the_clock():
    """A camera reboot (PTS back to 0) or a looped file: time keeps increasing by one frame step."""
    clock = TimestampCorrector(fps=10)
    out = [clock.correct(t, 0.0) for t in (8.0, 8.1, 0.0, 0.1, 0.2)]
    assert out == pytest.approx([8.0, 8.1, 8.2, 8.3, 8.4]) and clock.discontinuities == 1


def test_corrector_live_uses_wall_clock_across_jumps():
    clock = TimestampCorrector(fps=10, live=True, max_jump_s=5)
    assert clock.correct(1.0, 100.0) == 1.0
    assert clock.correct(1.1, 100.1) == pytest.approx(1.1)
    # raw clock leaps an hour ahead while 0.1 s passed: a discontinuity, measured by arrival time
    assert clock.correct(3601.2, 100.2) == pytest.approx(1.2)
    assert clock.correct(3601.3, 100.3) == pytest.approx(1.3)
    # a reconnect 2 s later restarts the raw clock at 0: corrected time follows the wall clock
    assert clock.correct(0.0, 102.3) == pytest.approx(3.3)
    assert clock.discontinuities == 2


def test_corrector_strictly_increasing_on_duplicates():
    clock = TimestampCorrector(fps=25)
    out = [clock.correct(t, 0.0) for t in (1.0, 1.0, 1.0, 1.04)]
    assert all(b > a for a, b in zip(out, out[1:]))


def test_resize_frames_shapes_and_content():
    frames = np.zeros((3, 120, 160, 3), np.uint8)
    frames[:, :, :, 0] = 200
    out = resize_frames(frames, 32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8 and (out[..., 0] == 200).all()
    assert resize_frames(frames, (24, 40)).shape == (3, 24, 40, 3)
    assert resize_frames(frames, (120, 160)) is frames
    with pytest.raises(ValueError, match=r"expected uint8 \[T, H, W, 3\]"):
        resize_frames(frames[..., 0], 32)


def frame(i: int, shape=(8, 8, 3)) -> Frame:
    return Frame(np.full(shape, i, np.uint8), i / 10, 1000 + i / 10, i)


def test_chunker_groups_and_flushes():
    chunker = Chunker(3, "cam", size=4)
    out = [c for c in (chunker.push(frame(i)) for i in range(7)) if c is not None]
    tail = chunker.flush()
    assert [c.seq for c in out] == [0, 1] and tail.seq == 2 and len(tail.timestamps) == 1
    assert out[1].frames.shape == (3, 4, 4, 3) and np.allclose(out[1].timestamps, [0.3, 0.4, 0.5])
    assert chunker.flush() is None
    with pytest.raises(ValueError, match="frames_per_chunk"):
        Chunker(0, "cam")


def test_chunks_from_synthetic_exact_grid_and_counters():
    """Synthetic video at 30 fps sampled at 4 Hz: every kept timestamp is the first frame at or after
    k / 4 s, i.e. frame ceil(k * 30 / 4) / 30 exactly."""
    source = open_source("synthetic://?width=64&height=48&fps=30&seconds=3")
    got = list(chunks(source, rate_hz=4, frames_per_chunk=4, size=32, stream_id="syn"))
    stamps = np.concatenate([c.timestamps for c in got])
    expected = np.ceil(np.arange(12) * 30 / 4 - 1e-9) / 30
    np.testing.assert_array_equal(stamps, expected)
    assert [c.seq for c in got] == [0, 1, 2] and got[0].frames.shape == (4, 32, 32, 3)
    status = source.status()
    assert (status.decoded, status.sampled, status.state.value) == (90, 12, "ended")


def test_set_sampler_before_iterating_only():
    source = open_source("synthetic://?width=64&height=48&fps=10&seconds=2")
    source.set_sampler(Sampler(1.0).keep)
    with pytest.raises(RuntimeError, match="set_sampler must be called once"):
        source.set_sampler(Sampler(2.0).keep)
    assert [f.index for f in source] == [0, 10]  # decode indices of the kept frames
    assert (source.status().decoded, source.status().sampled) == (20, 2)


def test_chunks_from_url_and_policy_checks():
    got = list(chunks("synthetic://?width=64&height=48&fps=10&seconds=1", 2, 4, policy="wait"))
    assert [len(c.timestamps) for c in got] == [2]  # short final chunk flushed
    source = open_source("synthetic://?width=64&height=48&fps=10&seconds=1")
    with pytest.raises(ValueError, match="opened with wait"):
        next(chunks(source, 2, 4, policy="drop_oldest"))
