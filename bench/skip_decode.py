"""CPU per camera-second of a source sampled at 2 Hz, by decode mode (stream/decode.py), for bench/ingest.py.

Cameras: real footage (bigbuckbunny.mp4's frames, else generated moving video) re-encoded with libx264
(preset veryfast, as a camera's hardware encoder) at 30 fps in 1280x720 and 1920x1080, three ways an IP
camera is set up: no B-frames with a keyframe every 1 s (the common default), no B-frames with a keyframe
every 0.5 s (the sampling rate: keyframes can carry the samples), and 3 B-frames with a keyframe every 2 s
(x264's defaults; B-frames are what ``nonref`` skips). Each file is read by the product's source and
sampler (open_source + chunks at 2 Hz, 4-frame chunks, 384 px) once per mode, modes interleaved pass by
pass; CPU time of this process (decoder threads included) per second of media.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from stream.config import SourceConfig
from stream.samples import SampleUnavailable, sample_path
from stream.sampling import chunks
from stream.sources import open_source
from stream.synthetic import SyntheticVideo

FPS, RATE_HZ, FRAMES_PER_CHUNK, SIZE = 30, 2.0, 4, 384
MODES = ("full", "nonref", "auto", "nonkey")
PROFILES = {"no B, key 1 s": {"g": "30", "bf": "0"}, "no B, key 0.5 s": {"g": "15", "bf": "0"},
            "3 B, key 2 s": {"g": "60", "bf": "3"}}
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def _footage(width: int, height: int, frames: int) -> Iterator[np.ndarray]:
    """``frames`` images of real footage (looped) scaled to width x height, or generated video."""
    try:
        with av.open(str(sample_path("bigbuckbunny"))) as container:
            source = [f.to_ndarray(format="rgb24", width=width, height=height) for f in container.decode(video=0)]
    except SampleUnavailable:
        video = SyntheticVideo(width=width, height=height, fps=FPS, seconds=frames / FPS)
        source = [image for image, _ in video.frames()]
    for i in range(frames):
        yield source[i % len(source)]


def write_camera(path: Path, size: str, profile: str, seconds: float) -> Path:
    """Encode ``seconds`` of footage as an H.264 camera of ``size`` and ``profile`` (PROFILES) at FPS."""
    width, height = SIZES[size]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        stream.options = {"preset": "veryfast", "sc_threshold": "0", "keyint_min": PROFILES[profile]["g"],
                          **PROFILES[profile]}
        for i, image in enumerate(_footage(width, height, int(seconds * FPS))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def read_once(path: Path, mode: str) -> dict:
    """One pass of the source and sampler over ``path`` in decode ``mode``: CPU, frames decoded and sampled."""
    source = open_source(str(path), SourceConfig(decode=mode, hwaccel="none"))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    times = [float(t) for chunk in chunks(source, RATE_HZ, FRAMES_PER_CHUNK, SIZE, "bench") for t in chunk.timestamps]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    status = source.status()
    media_s = status.decoded and (times[-1] + 1 / FPS if times else 0.0)
    return {"cpu_s": cpu, "wall_s": wall, "decoded": status.decoded, "sampled": len(times), "times": times,
            "media_s": media_s, "packets": dict(source.planner.counts) if source.planner else {}}


def bench_modes(tmp: Path, seconds: float, repeats: int, sizes: tuple[str, ...] = tuple(SIZES)) -> dict:
    """Per size and profile: each mode's median CPU ms per camera-second, its ratio to full decoding (same
    run), frames decoded, and whether it sampled exactly the frames full decoding sampled."""
    out: dict = {}
    for size in sizes:
        for profile in PROFILES:
            path = write_camera(tmp / f"{size}-{profile.replace(' ', '_').replace(',', '')}.mp4", size, profile,
                                seconds)
            passes: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for _ in range(repeats):
                for mode in MODES:
                    passes[mode].append(read_once(path, mode))
            media_s = seconds
            rows = {}
            for mode, runs in passes.items():
                median = sorted(runs, key=lambda r: r["cpu_s"])[len(runs) // 2]
                rows[mode] = {"cpu_ms_per_camera_s": median["cpu_s"] / media_s * 1000, "decoded": median["decoded"],
                              "sampled": median["sampled"], "packets": median["packets"],
                              "same_frames_as_full": median["times"] == passes["full"][0]["times"],
                              "runs_cpu_s": [r["cpu_s"] for r in runs]}
            for mode in MODES:
                rows[mode]["x_full"] = rows[mode]["cpu_ms_per_camera_s"] / rows["full"]["cpu_ms_per_camera_s"]
            out[f"{size} {profile}"] = rows
    return out
