"""Ingest benchmark: decode, RGB conversion and decode-and-sample cost of stream/ (1280x720 H.264, RTSP camera).

    python bench/ingest.py [--quick] [--json PATH] [--rtsp-seconds S] [--repeats R]

file   bigbuckbunny.mp4 (1280x720 H.264 25 fps, 5.3 s; generated 1280x720 H.264 if the sample is
       unavailable), read as fast as possible, three ways:
       decode only        open_source with a sampler that keeps no frame: every frame decoded (FFmpeg frame
                          threads, as in the pipeline), none converted to RGB
       RGB conversion     frame.to_ndarray("rgb24") alone, on each frame right after it is decoded (decoder
                          single-threaded in this pass, so nothing else runs while a conversion is timed)
       decode + sample    open_source + chunks(rate 2 Hz, 4 frames, 384x384): every frame decoded, the kept
                          ones converted and resized, as the pipeline's sources do
       CPU ms/frame counts every thread of this process (FFmpeg's decoder and swscale threads included) and
       is steadier than wall-clock rates on a shared machine; per decoded (or converted) frame.
rtsp   a 640x480 30 fps H.264 camera (gst-rtsp-server on 127.0.0.1) through the same loop for S seconds:
       delivered frame rate (the camera's 30 fps is the ceiling), drops, time to first frame, CPU seconds
       this process spent per decoded frame and the realtime headroom that implies (1 / (cpu x fps)).
       The server's own H.264 encoding competes for the same cores.
modes  CPU ms per camera-second at 2 Hz by decode mode (full, nonref, auto, nonkey: stream/decode.py) on
       720p and 1080p 30 fps H.264 cameras of three keyframe/B-frame set-ups, modes interleaved in one run,
       each as a ratio of full decoding and with whether it sampled the same frames (bench/skip_decode.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(ROOT)

import av  # noqa: E402

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from bench.skip_decode import bench_modes  # noqa: E402
from stream.config import SourceConfig  # noqa: E402
from testkit.rtsp_server import RtspServer, rtsp_server_available  # noqa: E402
from stream.samples import SampleUnavailable, sample_path  # noqa: E402
from stream.sampling import chunks  # noqa: E402
from stream.sources import open_source  # noqa: E402
from stream.synthetic import SyntheticVideo, write_video  # noqa: E402

RATE_HZ, FRAMES_PER_CHUNK, SIZE = 2.0, 4, 384


def hd_file(tmp: Path) -> tuple[Path, str]:
    """The 1280x720 H.264 clip to decode: the real sample if it can be had, else a generated one."""
    try:
        return sample_path("bigbuckbunny"), "bigbuckbunny.mp4 (real)"
    except SampleUnavailable:
        path = tmp / "synthetic_720p.mp4"
        write_video(path, SyntheticVideo(width=1280, height=720, fps=25, seconds=5.3).frames(), "libx264", fps=25)
        return path, "synthetic 1280x720 H.264 (sample unavailable)"


def bench_decode(path: Path, sample: bool) -> dict:
    """One pass over ``path`` through the product's source: decode only (a sampler that keeps nothing, so no
    frame is converted), or decode + sample + resize into chunks."""
    source = open_source(str(path))
    started, cpu0 = time.perf_counter(), time.process_time()
    if sample:
        kept = sum(len(c.timestamps) for c in chunks(source, RATE_HZ, FRAMES_PER_CHUNK, SIZE, "bench"))
    else:
        source.set_sampler(lambda pts: False)
        kept = len(list(source))  # 0: every frame decoded, none handed out
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    status = source.status()
    media = status.decoded / (status.fps or 25)
    return {"frames": status.decoded, "sampled": kept, "wall_s": wall, "cpu_s": cpu,
            "cpu_ms_per_frame": cpu / status.decoded * 1000, "fps": status.decoded / wall, "x_realtime": media / wall}


def bench_rgb(path: Path) -> dict:
    """RGB conversion alone: every frame of ``path`` converted right after it is decoded (frame in cache, as in
    the source), only the conversions timed; the decoder runs single-threaded, so no decoder thread works
    while a conversion is timed, and swscale's own threads are counted."""
    wall = cpu = 0.0
    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        for frame in container.decode(stream):
            started, cpu0 = time.perf_counter(), time.process_time()
            frame.to_ndarray(format="rgb24")
            wall, cpu = wall + time.perf_counter() - started, cpu + time.process_time() - cpu0
            frames += 1
    return {"frames": frames, "sampled": None, "wall_s": wall, "cpu_s": cpu, "cpu_ms_per_frame": cpu / frames * 1000,
            "fps": frames / wall, "x_realtime": None}


def bench_rtsp(seconds: float) -> dict:
    """Read a 640x480 30 fps loopback camera through open_source + chunks for ``seconds``."""
    with RtspServer(width=640, height=480, fps=30) as server:
        source = open_source(server.url, SourceConfig(read_timeout_s=5.0))
        started = time.time()
        first_frame_s = None
        n_chunks = 0
        cpu0 = decoded0 = t0 = None
        for chunk in chunks(source, RATE_HZ, FRAMES_PER_CHUNK, SIZE, "cam"):
            n_chunks += 1
            if first_frame_s is None:  # measure the steady state from the first chunk on
                first_frame_s = chunk.arrivals[0] - started  # the sampler keeps the first frame
                cpu0, t0 = time.process_time(), time.perf_counter()
                decoded0, sampled0 = source.status().decoded, source.status().sampled
            if time.perf_counter() - t0 >= seconds:
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        status = source.status()
        source.close()
    decoded = status.decoded - decoded0
    cpu_per_frame = cpu / max(decoded, 1)
    return {"seconds": wall, "decoded": decoded, "decoded_fps": decoded / wall, "sampled": status.sampled - sampled0,
            "dropped": status.dropped, "reconnects": status.reconnects, "time_to_first_frame_s": first_frame_s,
            "cpu_ms_per_frame": cpu_per_frame * 1000, "realtime_headroom": 1 / (cpu_per_frame * 30)}


FILE_MODES = {"decode_only": lambda path: bench_decode(path, sample=False), "rgb_conversion": bench_rgb,
              "decode_and_sample": lambda path: bench_decode(path, sample=True)}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "one file pass per mode, 5 s of RTSP, 720p modes on 3 s clips (< 60 s)")
    parser.add_argument("--repeats", type=int, help="file passes per mode (median reported)")
    parser.add_argument("--rtsp-seconds", type=float, help="steady-state seconds of RTSP to read")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    rtsp_seconds = args.rtsp_seconds or (5.0 if args.quick else 30.0)
    run = BenchRun("ingest", args.quick)
    out: dict = {"rate_hz": RATE_HZ, "size": SIZE}
    with tempfile.TemporaryDirectory() as tmp:
        path, label = hd_file(Path(tmp))
        out["file"] = {"clip": label}
        runs: dict[str, list[dict]] = {mode: [] for mode in FILE_MODES}
        for _ in range(repeats):  # modes interleaved pass by pass: load drift hits them alike
            for mode, bench in FILE_MODES.items():
                runs[mode].append(bench(path))
        for mode, passes in runs.items():
            median = sorted(passes, key=lambda r: r["cpu_s"])[len(passes) // 2]
            out["file"][mode] = {**median, "runs_cpu_ms_per_frame": [r["cpu_ms_per_frame"] for r in passes]}
        out["modes"] = bench_modes(Path(tmp), seconds=3.0 if args.quick else 10.0, repeats=repeats,
                                   sizes=("720p",) if args.quick else ("720p", "1080p"))
    available, why = rtsp_server_available()
    out["rtsp"] = bench_rtsp(rtsp_seconds) if available else {"skipped": why}

    rows = [[f"file 1280x720 H.264 {mode}", r["fps"], r["x_realtime"], r["cpu_ms_per_frame"], r["sampled"], None]
            for mode, r in ((m, out["file"][m]) for m in FILE_MODES)]
    r = out["rtsp"]
    if "skipped" not in r:
        rows.append(["rtsp 640x480 30 fps decode_and_sample", r["decoded_fps"], "live", r["cpu_ms_per_frame"],
                     r["sampled"], r["dropped"]])
    print_table([("source", ""), ("frames/s", ".1f"), ("x realtime", ".2f"), ("CPU ms/frame", ".2f"),
                 ("sampled", "d"), ("dropped", "d")], rows)
    print("frames/s: decoded (decode modes) or converted (rgb_conversion) per wall second; median of "
          f"{repeats} pass(es) by CPU time")
    if "skipped" in r:
        print(f"rtsp skipped: {r['skipped']}")
    else:
        print(f"rtsp: first frame after {r['time_to_first_frame_s']:.2f} s, {r['cpu_ms_per_frame']:.2f} ms CPU per "
              f"frame here = {r['realtime_headroom']:.1f}x the 30 fps a camera needs")
    print_table([("camera 30 fps, sampled at 2 Hz", ""), ("mode", ""), ("CPU ms/camera-s", ".1f"), ("x full", ".2f"),
                 ("decoded", "d"), ("sampled", "d"), ("same frames", "")],
                [[camera, mode, r["cpu_ms_per_camera_s"], r["x_full"], r["decoded"], r["sampled"],
                  "yes" if r["same_frames_as_full"] else "no"]
                 for camera, rows in out["modes"].items() for mode, r in rows.items()])
    run.finish(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
