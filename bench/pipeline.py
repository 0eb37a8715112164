"""How many concurrent live streams this machine sustains, and where the time goes per stage.

Synthetic live cameras (640x480 at 30 fps, paced like a camera) are sampled at 2 fps in chunks of 4
frames and run through the whole pipeline on a local Ray cluster with the tiny model (source -> encoder
-> compressor -> LLM snapshots, over ZeroMQ). Streams are added in steps (1, 2, 4, ...); each step runs
for a window, and a step is *sustained* when, for every stream,
  - lag < 2 s: wall clock from the decode of a chunk's newest frame to that chunk being in the memory, and
  - the memory keeps pace with live: its media time advanced by >= 80 % of the window (less one chunk,
    since it grows a chunk at a time), and
  - the sources dropped no frame in the window (a live source drops the oldest when the pipeline lags).
Per-stage time (mean seconds per chunk over the step's window, from the pipeline's own telemetry): encode (vision tower share of
the batch), compress (Token Dynamics update + snapshot), transport (ZeroMQ hops source -> encoder ->
memory, queueing included). Decode (decode + sample + resize of one chunk's worth of 30 fps video) is
measured in-process on the same source code, because in the live pipeline it overlaps camera pacing.

    .venv/bin/python bench/pipeline.py --quick --json out/bench-pipeline.json
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

STARTED = time.perf_counter()  # --quick's 60 s budget counts the imports too
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import ray

from actors.config import EncoderConfig, PipelineConfig, RayConfig, StreamSpec, TransportConfig
from actors.pipeline import start_pipeline, stop_pipeline
from vlm import ModelConfig
from stream.config import SourceConfig
from stream.sampling import chunks
from stream.sources import open_source

URL = "synthetic://?width=640&height=480&fps=30&seed={seed}"
RATE_HZ, FRAMES_PER_CHUNK = 2.0, 4
LAG_LIMIT_S, PACE_MIN = 2.0, 0.8
CHUNK_SPAN_S = FRAMES_PER_CHUNK / RATE_HZ  # media seconds per chunk
SAMPLE_S = 1.0  # telemetry poll period during a window


def measure_decode(image_size: int, n_chunks: int = 4) -> float:
    """Seconds to decode + sample + resize one chunk (4 sampled frames = 2 s of 30 fps video), unpaced."""
    source = open_source(URL.format(seed=99) + "&seconds=60", SourceConfig(realtime=False))
    start = time.perf_counter()
    got = 0
    for _ in chunks(source, RATE_HZ, FRAMES_PER_CHUNK, image_size, "decode-bench"):
        got += 1
        if got == n_chunks:
            break
    source.close()
    return (time.perf_counter() - start) / got


def run_step(controller, ids: list[str], window_s: float) -> dict:
    """Watch streams `ids` for `window_s` after each produced a first chunk; lag, pace and stage times."""
    status = lambda sid: ray.get(controller.stream_status.remote(sid))  # noqa: E731
    deadline = time.monotonic() + 120
    while not all((status(s)["chunks_compressed"] or 0) >= 1 for s in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"streams {ids}: expected a first chunk within 120 s")
        time.sleep(0.2)  # polling a condition, with the deadline above
    first = {s: status(s) for s in ids}
    start = time.monotonic()
    lags: dict[str, list[float]] = {s: [] for s in ids}
    while time.monotonic() - start < window_s:
        time.sleep(SAMPLE_S)  # telemetry sampling period
        for s in ids:
            lag = status(s)["lag_s"]
            if lag is not None:
                lags[s].append(lag)
    elapsed = time.monotonic() - start
    last = {s: status(s) for s in ids}
    # media time added to each memory per wall second; it grows in whole chunks, so allow one chunk of slack
    pace = {s: (last[s]["t_end"] - first[s]["t_end"]) / elapsed for s in ids}
    keeps_pace = all(p * elapsed + CHUNK_SPAN_S >= PACE_MIN * elapsed for p in pace.values())
    dropped = sum((last[s]["dropped"] or 0) - (first[s]["dropped"] or 0) for s in ids)
    worst_lag = max((max(v) for v in lags.values() if v), default=float("inf"))
    stages: dict[str, list[float]] = {}  # stage -> [seconds, chunks] summed over streams, this window only
    for s in ids:
        before = first[s]["stage_totals"] or {}
        for stage, (seconds, count) in (last[s]["stage_totals"] or {}).items():
            prev = before.get(stage, (0.0, 0))
            acc = stages.setdefault(stage, [0.0, 0])
            acc[0] += seconds - prev[0]
            acc[1] += count - prev[1]
    return {
        "streams": len(ids), "window_s": round(elapsed, 1), "max_lag_s": round(worst_lag, 3),
        "min_pace": round(min(pace.values()), 3),
        "dropped": dropped,
        "sustained": worst_lag < LAG_LIMIT_S and keeps_pace and dropped == 0,
        "chunks": max((v[1] for v in stages.values()), default=0),
        "stage_s": {k: round(v[0] / v[1], 4) for k, v in stages.items() if v[1]},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one step of 2 streams, short window (< 60 s)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--max-streams", type=int, default=24)
    parser.add_argument("--window", type=float, default=None, help="seconds watched per step")
    args = parser.parse_args()
    steps = [2] if args.quick else [n for n in (1, 2, 4, 8, 12, 16, 20, 24) if n <= args.max_streams]
    window = args.window or (4.0 if args.quick else 15.0)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local cluster
    with tempfile.TemporaryDirectory(prefix="tokdyn-bench-") as ckpt:
        config = PipelineConfig(ray=RayConfig(num_cpus=4), transport=TransportConfig(hwm=4, send_timeout_ms=200),
                                model=ModelConfig(path="tiny"), encoder=EncoderConfig(batch_frames=32),
                                checkpoint_dir=ckpt)
        t0 = time.perf_counter()
        controller = start_pipeline(config)
        startup_s = time.perf_counter() - t0
        image_size = ray.get(ray.get(controller.encoder_handle.remote()).info.remote())["image_size"]
        decode_s = measure_decode(image_size)
        results, ids = [], []
        try:
            for n in steps:
                new = [f"cam{i}" for i in range(len(ids), n)]
                ray.get([controller.add_stream.remote(StreamSpec(sid, URL.format(seed=i + len(ids)), RATE_HZ,
                                                                 FRAMES_PER_CHUNK, live=True))
                         for i, sid in enumerate(new)])  # concurrently: actor start-up overlaps
                ids += new
                step = run_step(controller, ids, window)
                step["stage_s"]["decode"] = round(decode_s, 4)
                results.append(step)
                print(f"  {n} stream(s): max lag {step['max_lag_s']:.2f} s, pace {step['min_pace']:.2f}, "
                      f"sustained {step['sustained']}", flush=True)
                if not step["sustained"]:
                    break
        finally:
            stop_pipeline(controller)
            ray.shutdown()
    sustained = max((r["streams"] for r in results if r["sustained"]), default=0)
    report = {
        "bench": "pipeline", "quick": args.quick, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0], "model": "tiny-llava-onevision", "stream": "640x480@30fps live, 2 fps "
        "sampled, 4 frames/chunk", "lag_limit_s": LAG_LIMIT_S, "startup_s": round(startup_s, 1),
        "max_sustained_streams": sustained, "tested_up_to": results[-1]["streams"] if results else 0, "steps": results,
        "total_s": round(time.perf_counter() - STARTED, 1),
    }
    print(f"\n{'streams':>7} {'max lag s':>9} {'pace':>5} {'drops':>5} {'ok':>3} {'load':>5}  "
          f"{'decode':>8} {'encode':>8} {'compress':>8} {'transport':>9}  (ms per chunk)")
    for r in results:
        st = r["stage_s"]
        ms = lambda k: f"{st.get(k, float('nan')) * 1000:8.1f}"  # noqa: E731
        print(f"{r['streams']:>7} {r['max_lag_s']:>9.2f} {r['min_pace']:>5.2f} {r['dropped']:>5} "
              f"{'yes' if r['sustained'] else 'no':>3} {r['load_avg_1m']:>5.1f}  {ms('decode')} {ms('encode')} {ms('compress')} "
              f"{ms('transport'):>9}")
    print(f"\nsustained: {sustained} stream(s) (tested up to {report['tested_up_to']}); start-up {startup_s:.1f} s; "
          f"total {report['total_s']} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
