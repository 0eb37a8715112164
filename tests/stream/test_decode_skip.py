"""Decode only what the sampler keeps (stream/decode.py): the sampled frames and timestamps of every skip
mode against full decoding, on files written here with exact timestamps, and on the loopback RTSP camera."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stream.config import SourceConfig
from stream.decode import DecodeMode, SkipPlanner, hwaccel_for
from stream.sampling import Sampler, chunks
from stream.sources import open_source
from testkit.rtsp_server import RtspServer, rtsp_server_available

FPS, RATE_HZ = 30, 2.0


def write_h264(path: Path, frames: int = 90, gop: int = 250, bframes: int = 3, vfr: bool = False) -> Path:
    """A small H.264 file of moving content: keyframe every ``gop`` frames, ``bframes`` B-frames (x264's
    pyramid: some of them references), timestamps exactly i / FPS, or irregular steps when ``vfr``."""
    rng = np.random.default_rng(0)
    base = Fraction(1, 1000) if vfr else Fraction(1, FPS)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "yuv420p"
        stream.codec_context.time_base = base
        stream.options = {"g": str(gop), "bf": str(bframes), "keyint_min": str(min(gop, 25)), "sc_threshold": "0"}
        pts = 0
        for i in range(frames):
            image = np.full((128, 160, 3), (i * 3) % 256, np.uint8)
            image[(i * 5) % 108:(i * 5) % 108 + 20, (i * 7) % 140:(i * 7) % 140 + 20] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, base
            pts += int(rng.choice([20, 33, 50, 90])) if vfr else 1
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def sampled(path: Path, mode: str) -> tuple[list[tuple[float, np.ndarray]], dict[str, int], int]:
    """(media time, image) of every frame sampled at RATE_HZ, the planner's packet counts, frames decoded."""
    source = open_source(str(path), SourceConfig(decode=mode, hwaccel="none"))
    kept = [(float(t), chunk.frames[i]) for chunk in chunks(source, RATE_HZ, 4, None, "s")
            for i, t in enumerate(chunk.timestamps)]
    return kept, source.planner.counts, source.status().decoded


FILES = {"long_gop": {}, "short_gop": {"gop": 15, "bframes": 0}, "b_frames": {"gop": 30, "bframes": 3},
         "vfr": {"vfr": True}, "no_b_frames": {"bframes": 0}, "keyframes_only": {"gop": 1, "bframes": 0}}


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("mode", ["auto", "nonref"])
def test_exact_modes_sample_the_same_frames_as_full_decoding(tmp_path, name, mode):
    # given a file, decoded in full
    path = write_h264(tmp_path / f"{name}.mp4", **FILES[name])
    full, _, decoded_full = sampled(path, "full")
    # when the same file is decoded skipping what the sampler drops
    kept, counts, decoded = sampled(path, mode)
    # then the sampled frames are the same frames, pixel for pixel, at the same times
    assert [t for t, _ in kept] == [t for t, _ in full] and len(full) >= 6
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(kept, full))
    assert decoded <= decoded_full
    if name in ("long_gop", "b_frames", "vfr"):  # non-reference B-frames the sampler drops are not decoded
        assert counts["nonref"] > 0 and decoded < decoded_full
    if name == "short_gop" and mode == "auto":  # the grid falls on keyframes: keyframes only, still exact
        assert counts["nonkey"] > 0 and decoded < decoded_full / 2


def test_keyframes_only_samples_the_first_keyframe_at_or_after_each_grid_point(tmp_path):
    path = write_h264(tmp_path / "bf.mp4", gop=30, bframes=3)  # keyframes at 0, 1, 2 s
    kept, counts, decoded = sampled(path, "nonkey")
    assert [t for t, _ in kept] == [0.0, 1.0, 2.0] and decoded == 3
    on_grid = write_h264(tmp_path / "short.mp4", gop=15, bframes=0)  # keyframes every 0.5 s: on the grid
    assert [t for t, _ in sampled(on_grid, "nonkey")[0]] == [t for t, _ in sampled(on_grid, "full")[0]]


@pytest.mark.parametrize("mode", [m.value for m in DecodeMode])
def test_keyframe_only_stream_works_in_every_mode(tmp_path, mode):
    path = write_h264(tmp_path / "intra.mp4", gop=1, bframes=0)
    assert [t for t, _ in sampled(path, mode)[0]] == [t for t, _ in sampled(path, "full")[0]]


def test_planner_decodes_fully_around_unknown_or_jumping_timestamps():
    sampler = Sampler(RATE_HZ)
    sampler.keep(0.0)
    planner = SkipPlanner("nonref", sampler.would_keep, FPS, 1 / RATE_HZ)
    assert planner.setting(0.0, True, 0.0) == "DEFAULT"  # no predecessor known: decoded
    assert planner.setting(0.1, False, 0.0) == "NONREF"  # same grid cell as 0.0: dropped by the sampler
    assert planner.setting(0.5, False, 0.0) == "DEFAULT"  # the first frame of the next cell
    assert planner.setting(None, False, 0.0) == "DEFAULT"  # no timestamp: decode, and a while after it
    assert planner.setting(0.6, False, 0.0) == "DEFAULT"
    assert SkipPlanner("full", sampler.would_keep, FPS, 0.5).setting(0.1, False, 0.0) == "DEFAULT"
    assert SkipPlanner("nonref", None, FPS, 0.5).setting(0.1, False, 0.0) == "DEFAULT"  # no sampler: all


def test_config_names_the_bad_decode_mode():
    with pytest.raises(ValueError, match="decode: expected one of"):
        SourceConfig(decode="fast")
    with pytest.raises(ValueError, match="hwaccel: expected one of"):
        SourceConfig(hwaccel="gpu")


def test_hardware_decoding_falls_back_to_software_with_one_log_line(tmp_path, caplog):
    if Path("/dev/nvidia0").exists():
        pytest.skip("this node has an NVIDIA device: auto decodes on it")
    caplog.set_level(logging.INFO, logger="stream.decode")
    assert hwaccel_for("auto") is None and hwaccel_for("auto") is None and hwaccel_for("none") is None
    assert len([r for r in caplog.records if "decoding in software" in r.getMessage()]) <= 1
    path = write_h264(tmp_path / "hw.mp4", frames=30)
    assert len(sampled(path, "auto")[0]) >= 1  # cuda, auto or none: it decodes


AVAILABLE, WHY = rtsp_server_available()


@pytest.mark.rtsp
@pytest.mark.skipif(not AVAILABLE, reason=WHY or "no RTSP server")
@pytest.mark.parametrize("mode", ["full", "nonref", "auto"])
def test_loopback_camera_samples_on_the_grid_in_every_exact_mode(mode):
    # the camera (x264, no B-frames) at 30 fps; every kept frame is the first at or after its grid point
    with RtspServer(fps=FPS) as server:
        source = open_source(server.url, SourceConfig(decode=mode, hwaccel="none"))
        times: list[float] = []
        try:
            for chunk in chunks(source, RATE_HZ, 2, 32, "cam"):
                times += [float(t) for t in chunk.timestamps]
                if len(times) >= 6:
                    break
        finally:
            source.close()
    assert source.status().decoded > 0 and source.planner is not None
    period, t0 = 1 / RATE_HZ, times[0]
    late = [((t - t0) % period) for t in times[1:]]
    assert all(x < 1.5 / FPS or period - x < 1e-3 for x in late), late


@pytest.mark.parametrize("realtime, threads, expected", [(True, 0, 1), (False, 0, 0), (True, 3, 3)])
def test_decoder_threads_one_for_a_live_source_unless_set(tmp_path, realtime, threads, expected):
    # A live camera needs a small share of one core; each frame thread would hold frame buffers of its own.
    path = write_h264(tmp_path / "b.mp4", frames=30, gop=30, bframes=3)

    def sampled_times(config: SourceConfig) -> tuple[list[float], int | None]:
        source = open_source(str(path), config)
        times = [float(t) for chunk in chunks(source, 10.0, 4, None, "s") for t in chunk.timestamps]
        return times, source.status().decoder_threads

    times, used = sampled_times(SourceConfig(realtime=realtime, decoder_threads=threads, hwaccel="none"))
    assert used == expected
    assert times == sampled_times(SourceConfig(decoder_threads=1, hwaccel="none"))[0]  # the same frames
    assert len(times) == 10


def test_config_names_bad_decoder_threads():
    with pytest.raises(ValueError, match="decoder_threads"):
        SourceConfig(decoder_threads=-1)
