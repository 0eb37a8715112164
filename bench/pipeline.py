"""How many concurrent live streams this machine sustains, where the time goes per stage, and what polling
the web console's frame route costs.

Every stream plays a real H.264 file (640x480 at 30 fps, written once with PyAV from the synthetic squares
video, looped) paced like a live camera, sampled at 2 fps in chunks of 4 frames, through the whole pipeline
on a local Ray cluster with the tiny model (source -> encoder -> memory -> LLM snapshots, over ZeroMQ).
Streams are added in steps (1, 2, 4, 6, ...); each step runs for a window, and a step is *sustained* when,
for every stream,
  - lag < 2 s: wall clock from the decode of a chunk's newest frame to that chunk being in the memory, and
  - the memory keeps pace with live: its media time advanced by >= 80 % of the window (less one chunk,
    since it grows a chunk at a time), and
  - the sources dropped no frame in the window (a live source drops the oldest when the pipeline lags).
Per-stage time, mean seconds per chunk over the step's window, measured in the actors during the run (the
pipeline's own telemetry): decode (inside the H.264 decoder, in each stream's source actor: the 60 frames
of 30 fps video behind a chunk, kept or not), encode (vision tower share of the batch), compress (Token
Dynamics update + snapshot), transport (ZeroMQ hops source -> encoder -> memory, queueing included).

--console watches every step twice, back to back on the same streams: once as above, once with a client
thread per stream polling GET /v1/streams/{id}/frame.jpg of the HTTP API (started as `tokdyn serve` starts
it) at the stream's sample rate, the console's default refresh (which window goes first alternates from step
to step, so a backlog or a load swing does not always hit the same side). The ramp goes on while either side
is sustained. Target: sustained streams with polling >= 90 % of those without; >= 90 % of the polls in the
windows must get a frame for the comparison to count.

--streams-per-host 0,16 runs the ramp once per value on a fresh pipeline in the same run (0: a source and a
memory actor per stream; N: stream hosts of up to N streams, `streams_per_host`) and reports each one's
sustained streams and their ratio.

    .venv/bin/python bench/pipeline.py --quick --console --json out/bench-pipeline.json
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

STARTED = time.perf_counter()  # --quick's 60 s budget counts the imports too
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import ray  # noqa: E402

from actors.client.client import PipelineClient  # noqa: E402
from actors.config import ApiConfig, EncoderConfig, PipelineConfig, RayConfig, TransportConfig  # noqa: E402
from actors.client.pipeline import start_pipeline  # noqa: E402
from bench.common import BenchRun, bench_parser, load_average, print_table  # noqa: E402
from stream.synthetic import SyntheticVideo, write_video  # noqa: E402
from vlm import ModelConfig  # noqa: E402

WIDTH, HEIGHT, FPS, CLIP_S = 640, 480, 30, 10.0
RATE_HZ, FRAMES_PER_CHUNK = 2.0, 4
LAG_LIMIT_S, PACE_MIN = 2.0, 0.8
CHUNK_SPAN_S = FRAMES_PER_CHUNK / RATE_HZ  # media seconds per chunk
SAMPLE_S = 1.0  # telemetry poll period during a window
FIRST_CHUNK_TIMEOUT_S = 180.0  # new source + memory actors on a busy 2-core machine
SETTLE_S = 5.0  # after a step's new streams produced their first chunk, before its first window
CONSOLE_TARGET = 0.9  # sustained streams with the console polling / without
MIN_SERVED = 0.9  # share of the polls in the windows that must get a frame (HTTP 200) for the comparison to count
FULL_STEPS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
STAGES = ("decode", "encode", "compress", "transport")


def write_clip(folder: Path) -> Path:
    """The H.264 file every stream plays: 10 s of 640x480 at 30 fps (its encoding is not timed)."""
    path = folder / "camera.mp4"
    write_video(path, SyntheticVideo(width=WIDTH, height=HEIGHT, fps=FPS, seconds=CLIP_S).frames(), "libx264",
                fps=FPS)
    return path


class FramePoller:
    """The console's live views: for every stream added, a client thread that GETs
    /v1/streams/{id}/frame.jpg every 1/rate_hz seconds (the image refresh) over one keep-alive connection
    while `active` is set, and counts the answers by HTTP status ("OSError" etc. when no answer came)."""

    def __init__(self, base_url: str, rate_hz: float, query: str = "") -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.period_s = 1.0 / rate_hz
        self.query = query
        self.stop_event = threading.Event()
        self.active = threading.Event()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._latency_s = 0.0
        self._threads: list[threading.Thread] = []

    def add(self, stream_id: str) -> None:
        thread = threading.Thread(target=self._poll, args=(stream_id,), name=f"console-{stream_id}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def totals(self) -> tuple[Counter[str], float]:
        """(answers by status so far, seconds spent waiting for them)."""
        with self._lock:
            return Counter(self._counts), self._latency_s

    def _poll(self, stream_id: str) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        path = f"/v1/streams/{stream_id}/frame.jpg{self.query}"
        due = time.monotonic()
        while not self.stop_event.is_set():
            if not self.active.wait(0.1):  # a window without the console
                due = time.monotonic()
                continue
            started = time.monotonic()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                outcome = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                conn.close()  # the next request reconnects
            with self._lock:
                self._counts[outcome] += 1
                self._latency_s += time.monotonic() - started
            due = max(due + self.period_s, time.monotonic())  # behind schedule: no catch-up burst
            self.stop_event.wait(due - time.monotonic())  # the console's refresh period
        conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.active.set()  # wakes idle threads so they see the stop
        for thread in self._threads:
            thread.join(15)


def add_streams(client: PipelineClient, clip: Path, ids: list[str]) -> None:
    """Add streams `ids`, each playing `clip` live and looped at RATE_HZ in chunks of FRAMES_PER_CHUNK."""
    specs = [{"stream_id": sid, "url": str(clip), "sample_rate_hz": RATE_HZ,
              "frames_per_chunk": FRAMES_PER_CHUNK, "live": True, "loop": True} for sid in ids]
    with ThreadPoolExecutor(max(1, len(specs))) as pool:  # concurrently: actor start-ups overlap
        list(pool.map(client.add_stream, specs))


def wait_first_chunks(client: PipelineClient, ids: list[str]) -> None:
    """Block until every stream in `ids` has a chunk in its memory, then let the start-up settle: new actors
    go on importing and warming up for a while, and that must not land on one side of a comparison."""
    deadline = time.monotonic() + FIRST_CHUNK_TIMEOUT_S
    while not all((client.stream_status(s).chunks_compressed or 0) >= 1 for s in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"streams {ids}: expected a first chunk within {FIRST_CHUNK_TIMEOUT_S} s")
        time.sleep(0.2)  # polling a condition, with the deadline above
    time.sleep(SETTLE_S)


def run_step(client: PipelineClient, ids: list[str], window_s: float, poller: FramePoller | None) -> dict:
    """Watch streams `ids` for `window_s`; lag, pace, stage times and, with a poller, the frame requests
    answered in the window."""
    first = {s: client.stream_status(s) for s in ids}
    polls_before = poller.totals() if poller else None
    start = time.monotonic()
    lags: dict[str, list[float]] = {s: [] for s in ids}
    while time.monotonic() - start < window_s:
        time.sleep(SAMPLE_S)  # telemetry sampling period
        for s in ids:
            lag = client.stream_status(s).lag_s
            if lag is not None:
                lags[s].append(lag)
    elapsed = time.monotonic() - start
    last = {s: client.stream_status(s) for s in ids}
    # media time added to each memory per wall second; it grows in whole chunks, so allow one chunk of slack
    pace = {s: (last[s].t_end - first[s].t_end) / elapsed for s in ids}
    keeps_pace = all(p * elapsed + CHUNK_SPAN_S >= PACE_MIN * elapsed for p in pace.values())
    dropped = sum((last[s].dropped or 0) - (first[s].dropped or 0) for s in ids)
    worst_lag = max((max(v) for v in lags.values() if v), default=float("inf"))
    stages: dict[str, list[float]] = {}  # stage -> [seconds, chunks] summed over streams, this window only
    decode_ms: dict[str, float | None] = {}  # each stream's own decoder time per chunk, this window
    for s in ids:
        before = first[s].stage_totals or {}
        for stage, (seconds, count) in (last[s].stage_totals or {}).items():
            prev = before.get(stage, (0.0, 0))
            acc = stages.setdefault(stage, [0.0, 0])
            acc[0] += seconds - prev[0]
            acc[1] += count - prev[1]
            if stage == "decode":
                decode_ms[s] = round((seconds - prev[0]) / (count - prev[1]) * 1000, 1) if count > prev[1] else None
    step = {
        "streams": len(ids), "window_s": round(elapsed, 1), "max_lag_s": round(worst_lag, 3),
        "min_pace": round(min(pace.values()), 3), "dropped": dropped,
        "sustained": worst_lag < LAG_LIMIT_S and keeps_pace and dropped == 0,
        "chunks": max((v[1] for v in stages.values()), default=0),
        "stage_s": {k: round(v[0] / v[1], 4) for k, v in stages.items() if v[1]}, "decode_ms_by_stream": decode_ms,
        "load_avg_1m": load_average()[0],
    }
    if poller is not None:
        counts, latency_s = poller.totals()
        counts.subtract(polls_before[0])
        answered = sum(counts.values())
        step["console"] = {"requests": answered, "requests_per_s": round(answered / elapsed, 2),
                           "target_per_s": round(len(ids) * RATE_HZ, 2), "by_status": dict(+counts),
                           "mean_latency_ms": round((latency_s - polls_before[1]) / max(answered, 1) * 1000, 1)}
    return step


def ramp(client: PipelineClient, clip: Path, steps: list[int], window_s: float,
         poller: FramePoller | None) -> tuple[list[dict], list[dict]]:
    """Add streams step by step, watching each step without the console and, with a poller, with it too;
    stop after a step where no side is sustained, then remove the streams. Returns (plain, polled) results."""
    ids: list[str] = []
    plain: list[dict] = []
    polled: list[dict] = []
    try:
        for index, n in enumerate(steps):
            new = [f"cam{i}" for i in range(len(ids), n)]
            add_streams(client, clip, new)
            ids += new
            wait_first_chunks(client, ids)
            sides = [False] if poller is None else [False, True] if index % 2 == 0 else [True, False]
            for console in sides:
                if console:
                    for sid in new:
                        poller.add(sid)  # idle until active
                    poller.active.set()
                step = run_step(client, ids, window_s, poller if console else None)
                if console:
                    poller.active.clear()
                (polled if console else plain).append(step)
                print(f"  {n} stream(s), {'console polling' if console else 'no console':15}: max lag "
                      f"{step['max_lag_s']:.2f} s, pace {step['min_pace']:.2f}, sustained {step['sustained']}",
                      flush=True)
            if not any(r["sustained"] for r in (plain[-1:] + polled[-1:])):
                break
    finally:
        if poller is not None:
            poller.stop()
        for sid in ids:
            client.remove_stream(sid)
    return plain, polled


def summary(results: list[dict]) -> dict:
    """Largest sustained step and the largest step tried."""
    return {"max_sustained_streams": max((r["streams"] for r in results if r["sustained"]), default=0),
            "tested_up_to": results[-1]["streams"] if results else 0, "steps": results}


def print_steps(name: str, results: list[dict]) -> None:
    rows = []
    for r in results:
        console = r.get("console")
        rows.append([name, r["streams"], r["max_lag_s"], r["min_pace"], r["dropped"],
                     "yes" if r["sustained"] else "no", r["load_avg_1m"],
                     *(r["stage_s"][k] * 1000 if k in r["stage_s"] else None for k in STAGES),
                     f"{console['requests_per_s']:.1f}/{console['target_per_s']:.0f}" if console else None])
    print_table([("run", ""), ("streams", "d"), ("max lag s", ".2f"), ("pace", ".2f"), ("drops", "d"), ("ok", ""),
                 ("load", ".1f"), *((f"{k} ms", ".1f") for k in STAGES), ("frame GETs/s", "")], rows)


def bench_config(tmp: Path, streams_per_host: int) -> PipelineConfig:
    """The pipeline every ramp runs: a local cluster, the tiny model, small queues."""
    return PipelineConfig(ray=RayConfig(num_cpus=4), transport=TransportConfig(hwm=4, send_timeout_ms=200),
                          model=ModelConfig(path="tiny"), encoder=EncoderConfig(batch_frames=32),
                          checkpoint_dir=str(tmp / "checkpoints"), streams_per_host=streams_per_host)


def steps_of(args) -> list[int]:
    return args.steps or ([2] if args.quick else list(FULL_STEPS))


def compare_hosts(args, steps: list[int], window: float) -> int:
    """One ramp per `streams_per_host` value, each on a fresh pipeline, in this run; sustained streams per value
    and the ratio of each to the first."""
    run = BenchRun("pipeline_hosts", args.quick, started=STARTED)
    modes = {}
    with tempfile.TemporaryDirectory(prefix="tokdyn-bench-") as tmp:
        clip = write_clip(Path(tmp))
        for per_host in args.streams_per_host:
            print(f"streams_per_host={per_host}:", flush=True)
            client = start_pipeline(bench_config(Path(tmp) / f"hosts{per_host}", per_host))
            try:
                plain, _ = ramp(client, clip, steps, window, None)
            finally:
                client.shutdown()
                ray.shutdown()
            modes[per_host] = summary(plain)
            print_steps(f"per_host={per_host}", plain)
    base = max(modes[args.streams_per_host[0]]["max_sustained_streams"], 1)
    results = {"modes": {str(k): v for k, v in modes.items()},
               "ratio_to_first": {str(k): round(v["max_sustained_streams"] / base, 3) for k, v in modes.items()}}
    print("sustained streams by streams_per_host:",
          {k: v["max_sustained_streams"] for k, v in modes.items()}, "ratio:", results["ratio_to_first"])
    run.finish(results, args.json)
    return 0


def main() -> int:
    parser = bench_parser(__doc__, "one step of 2 streams, short window (< 60 s without --console)")
    parser.add_argument("--console", action="store_true",
                        help="run the ramp without and then with the console's frame route polled for every stream")
    parser.add_argument("--overlay", action="store_true", help="with --console: poll frame.jpg?overlay=keymap")
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                        help="stream counts to try, comma-separated (default 1,2,4,...,24; 2 with --quick)")
    parser.add_argument("--window", type=float, default=None, help="seconds watched per step")
    parser.add_argument("--streams-per-host", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                        help="streams_per_host values, comma-separated: one ramp each, in this run (default 0)")
    args = parser.parse_args()
    if len(args.streams_per_host) > 1:
        if args.console:
            parser.error("--streams-per-host with several values: run without --console")
        return compare_hosts(args, steps_of(args), args.window or (4.0 if args.quick else 15.0))
    steps = steps_of(args)
    window = args.window or (4.0 if args.quick else 15.0)
    run = BenchRun("pipeline", args.quick, started=STARTED)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local cluster on 127.0.0.1

    with tempfile.TemporaryDirectory(prefix="tokdyn-bench-") as tmp:
        clip = write_clip(Path(tmp))
        config = bench_config(Path(tmp), args.streams_per_host[0])
        t0 = time.perf_counter()
        client = start_pipeline(config)
        startup_s = time.perf_counter() - t0
        api = None
        try:
            poller = None
            if args.console:
                from frontends.api.server import start_api  # the API process is only needed here

                api, url = start_api(ApiConfig(port=0), namespace=config.ray.namespace)
                poller = FramePoller(url, RATE_HZ, "?overlay=keymap" if args.overlay else "")
            plain, polled = ramp(client, clip, steps, window, poller)
        finally:
            if api is not None:
                ray.kill(api, no_restart=True)
            client.shutdown()
            ray.shutdown()

    results = {"model": "tiny-llava-onevision",
               "stream": f"{WIDTH}x{HEIGHT}@{FPS}fps H.264 file played live (looped), {RATE_HZ:g} fps sampled, "
                         f"{FRAMES_PER_CHUNK} frames/chunk", "lag_limit_s": LAG_LIMIT_S,
               "startup_s": round(startup_s, 1), **summary(plain)}
    print()
    print_steps("plain", plain)
    print(f"\nsustained: {results['max_sustained_streams']} stream(s) (tested up to {results['tested_up_to']}); "
          f"start-up {startup_s:.1f} s; stage times: mean per chunk in the window, measured in the actors")
    if args.console:
        console = summary(polled)
        statuses = Counter()
        for step in polled:
            statuses.update(step["console"]["by_status"])
        # the comparison holds only if the route really served frames, not errors, during the windows
        served = statuses.get("200", 0) / max(sum(statuses.values()), 1)
        ratio = console["max_sustained_streams"] / max(results["max_sustained_streams"], 1)
        results["console"] = {"route": "GET /v1/streams/{id}/frame.jpg" + ("?overlay=keymap" if args.overlay else ""),
                              "poll_hz_per_stream": RATE_HZ, "answers_by_status": dict(statuses),
                              "served_fraction": round(served, 3), "ratio": round(ratio, 3), "target": CONSOLE_TARGET,
                              "pass": served >= MIN_SERVED and ratio >= CONSOLE_TARGET, **console}
        print_steps("console", polled)
        verdict = ("PASS" if ratio >= CONSOLE_TARGET else "FAIL") if served >= MIN_SERVED else \
            f"NOT MEASURED: {served:.0%} of the polls got a frame (answers by status: {dict(statuses)})"
        print(f"\nwith the console polling: {console['max_sustained_streams']} sustained vs "
              f"{results['max_sustained_streams']} without = {ratio:.2f} (target >= {CONSOLE_TARGET}) -> {verdict}")
    run.finish(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
