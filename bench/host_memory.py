"""Private memory per additional stream in one stream host (actors/workers/host.py), against one stream's
process pair as the pipeline runs it today.

    python bench/host_memory.py [--quick] [--json PATH] [--streams N]

In a fresh interpreter (as a Ray worker is): a StreamHost; one stream added (a 1280x720 30 fps H.264 camera
file looped and paced live through the source, decode auto, pushing to a sink that drains it, and a memory
fed 196 tokens x D=896 per frame in 4-frame chunks, as the capacity model's real-size encoder sends); warmed
up; then N - 1 more streams of the same kind. Private memory = the process's `RssAnon` (/proc), read after
each step has run 20 s (5 s with --quick). Per additional stream = (RssAnon with N - RssAnon with 1) / (N - 1);
the one-stream process's own RssAnon is the floor a stream paid when it had processes of its own (twice: a source and a
memory process, plus Ray's worker, which this leaves out). Measured twice in one run: with glibc's default
malloc settings, and with the ones a host actor is started with (actors/workers/host_remote.py HOST_ENV).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402

SETTLE_S = 20.0       # seconds each step runs before RssAnon is read (every memory past its first chunk)
QUICK_SETTLE_S = 5.0  # --quick: both variants inside a minute
CHILD = r'''
import json, sys, time, threading
import numpy as np
sys.path.insert(0, ROOT)
from actors.config import StreamSpec, TransportConfig
from actors.workers.host import StreamHost
from stream.codec import Kind, Message
from stream.transport import Socket

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

transport = TransportConfig(hwm=4)
host = StreamHost(CKPT, transport)
sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=64, keys=transport.keys)
stop = threading.Event()

def drain():
    while not stop.is_set():
        sink.recv(50)

threading.Thread(target=drain, daemon=True).start()
pushes = []
seq = {}

def add(i):
    sid = f"cam{i}"
    spec = StreamSpec(sid, VIDEO, sample_rate_hz=2.0, frames_per_chunk=4, live=True, loop=True)
    tokens = host.add_memory(spec)["tokens"]
    host.add_source(spec, 384, f"push+connect:{sink.endpoint}")
    pushes.append((sid, Socket.open(tokens, hwm=4, keys=transport.keys)))

def feed(seconds):
    end = time.monotonic() + seconds
    rng = np.random.default_rng(0)
    while time.monotonic() < end:
        for sid, push in pushes:
            n = seq.get(sid, 0)
            msg = Message(Kind.TOKENS, sid, n, {"sent_at": time.time()},
                          {"tokens": rng.standard_normal((4, 14, 14, 896)).astype(np.float16),
                           "timestamps": np.arange(4, dtype=np.float64) * 0.5 + n * 2.0})
            if push.send(msg, timeout_ms=1000):
                seq[sid] = n + 1
        time.sleep(0.5)

out = {"before": rss_anon()}
add(0)
feed(SETTLE)
out["one"] = rss_anon()
for i in range(1, N):
    add(i)
feed(SETTLE)
out["all"] = rss_anon()
out["chunks"] = {sid: host.call(sid, "memory", "status").chunks for sid, _ in pushes}
out["sources"] = {sid: host.call(sid, "source", "status").chunks_sent for sid, _ in pushes}
stop.set()
host.close()
print(json.dumps(out))
'''


def measure(streams: int, video: Path, checkpoint_dir: Path, env: dict[str, str], settle_s: float) -> dict:
    """RssAnon (bytes) of a fresh host process started with ``env`` added to ours: empty, with one stream, with
    ``streams``."""
    code = CHILD.replace("ROOT", repr(str(ROOT))).replace("CKPT", repr(str(checkpoint_dir))) \
        .replace("VIDEO", repr(str(video))).replace("SETTLE", repr(settle_s)).replace("N)", f"{streams})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"host process failed (exit {done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["per_additional_stream"] = (out["all"] - out["one"]) / (streams - 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "5 streams, 3-s camera clip (< 60 s)")
    parser.add_argument("--streams", type=int, help="streams in the host at the end (>= 2)")
    args = parser.parse_args(argv)
    streams = args.streams or (5 if args.quick else 12)
    run = BenchRun("host_memory", args.quick)
    from bench.skip_decode import write_camera

    from actors.workers.host_remote import HOST_ENV

    variants = {"glibc defaults": {}, "as hosts run (HOST_ENV)": HOST_ENV}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_camera(Path(tmp) / "cam.mp4", "720p", "no B, key 0.5 s", 3.0)
        settle_s = QUICK_SETTLE_S if args.quick else SETTLE_S
        out = {name: measure(streams, video, Path(tmp) / f"ckpt{i}", env, settle_s)
               for i, (name, env) in enumerate(variants.items())}
    mb = 1 / 2**20
    print_table([("host process, RssAnon MB", "")] + [(name, ".1f") for name in out],
                [["empty (interpreter + imports)"] + [o["before"] * mb for o in out.values()],
                 ["1 stream"] + [o["one"] * mb for o in out.values()],
                 [f"{streams} streams"] + [o["all"] * mb for o in out.values()],
                 ["per additional stream"] + [o["per_additional_stream"] * mb for o in out.values()]])
    for name, o in out.items():
        print(f"{name}: chunks applied per memory {o['chunks']}; chunks sent per source {o['sources']}")
    run.finish({"streams": streams, "host_env": HOST_ENV, "variants": out}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
