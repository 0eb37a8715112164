"""Ingest benchmark: decode-and-sample rate of stream/ for a 1280x720 H.264 file and a live RTSP camera.

    python bench/ingest.py [--quick] [--json PATH] [--rtsp-seconds S] [--repeats R]

file   bigbuckbunny.mp4 (1280x720 H.264 25 fps, 5.3 s; generated 1280x720 H.264 if the sample is
       unavailable), read as fast as possible through open_source + chunks(rate 2 Hz, 4 frames, 384x384):
       decoded frames per wall second and media seconds per wall second (x realtime); also decode only
       (every frame converted to RGB, no sampling/resizing): sampling inside the source skips the RGB
       conversion of frames it does not keep. CPU ms/frame counts every thread of this process (FFmpeg's
       decoder threads included) and is steadier than wall-clock rates on a shared machine.
rtsp   a 640x480 30 fps H.264 camera (gst-rtsp-server on 127.0.0.1) through the same loop for S seconds:
       delivered frame rate (the camera's 30 fps is the ceiling), drops, time to first frame, CPU seconds
       this process spent per decoded frame and the realtime headroom that implies (1 / (cpu x fps)).
       The server's own H.264 encoding competes for the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(ROOT)

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


def bench_file(path: Path, sample: bool) -> dict:
    """One pass over ``path``: with sampling + resizing into chunks, or decode only."""
    source = open_source(str(path))
    started, cpu0 = time.perf_counter(), time.process_time()
    if sample:
        stamps = [t for c in chunks(source, RATE_HZ, FRAMES_PER_CHUNK, SIZE, "bench") for t in c.timestamps]
    else:
        stamps = [f.pts for f in source]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    status = source.status()
    media = status.decoded / (status.fps or 25)
    return {"decoded": status.decoded, "sampled": len(stamps), "wall_s": wall, "cpu_s": cpu,
            "cpu_ms_per_frame": cpu / status.decoded * 1000,
            "decoded_fps": status.decoded / wall, "x_realtime": media / wall}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one file pass, 8 s of RTSP (< 60 s)")
    parser.add_argument("--json", help="write results to this path")
    parser.add_argument("--repeats", type=int, help="file passes per mode (median reported)")
    parser.add_argument("--rtsp-seconds", type=float, help="steady-state seconds of RTSP to read")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    rtsp_seconds = args.rtsp_seconds or (8.0 if args.quick else 30.0)
    out: dict = {"bench": "ingest", "quick": args.quick, "rate_hz": RATE_HZ, "size": SIZE,
                 "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        path, label = hd_file(Path(tmp))
        out["file"] = {"clip": label}
        for mode, sample in (("decode_only", False), ("decode_and_sample", True)):
            runs = [bench_file(path, sample) for _ in range(repeats)]
            best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the median run
            out["file"][mode] = {**best, "runs_decoded_fps": [r["decoded_fps"] for r in runs]}
    available, why = rtsp_server_available()
    out["rtsp"] = bench_rtsp(rtsp_seconds) if available else {"skipped": why}

    print(f"{'source':44} {'decoded fps':>11} {'x realtime':>10} {'CPU ms/frame':>12} {'sampled':>8} {'dropped':>8}")
    for mode in ("decode_only", "decode_and_sample"):
        r = out["file"][mode]
        print(f"{'file 1280x720 H.264 ' + mode:44} {r['decoded_fps']:11.1f} {r['x_realtime']:10.2f} "
              f"{r['cpu_ms_per_frame']:12.2f} {r['sampled']:8d} {'-':>8}")
    r = out["rtsp"]
    if "skipped" in r:
        print(f"rtsp skipped: {r['skipped']}")
    else:
        print(f"{'rtsp 640x480 30 fps decode_and_sample':44} {r['decoded_fps']:11.1f} {'live':>10} "
              f"{r['cpu_ms_per_frame']:12.2f} {r['sampled']:8d} {r['dropped']:8d}")
        print(f"rtsp: first frame after {r['time_to_first_frame_s']:.2f} s, {r['cpu_ms_per_frame']:.2f} ms CPU per "
              f"frame here = {r['realtime_headroom']:.1f}x the 30 fps a camera needs")
    print(f"load average {out['machine']['load_avg'][0]:.1f} on {out['machine']['cpus']} CPUs; statistic: median "
          f"of {repeats} file pass(es)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
