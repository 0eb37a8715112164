"""Transport benchmark: a chunk of visual tokens over ZeroMQ (tcp loopback, PUSH -> PULL, two processes).

    python bench/transport.py [--quick] [--json PATH] [--count N] [--repeats R]

Variants, same payload, same sockets, same run, interleaved across repeats:
  bare     one raw ZeroMQ frame of the array's bytes, zero-copy both ways (the ceiling)
  codec    stream.codec Message via stream.transport.Socket: msgpack header + zero-copy buffer, validated
  msgpack  the array packed as bytes inside one msgpack map (one copy each way + packing)

Payloads: tokens 16x196x896 float16 (the encoder's chunk, 5.6 MB; target: codec >= 0.8 of bare) and
frames 4x384x384x3 uint8 (a sampled chunk on its way to the encoder, 1.8 MB).
The receiver runs in a child process, times the last ``count`` of ``count + WARMUP`` messages and reports back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.codec import Kind, Message, decode  # noqa: E402
from stream.transport import Socket  # noqa: E402

WARMUP = 10
VARIANTS = ("bare", "codec", "msgpack")
PAYLOADS = {"tokens 16x196x896 f16": ((16, 196, 896), np.float16),
            "frames 4x384x384x3 u8": ((4, 384, 384, 3), np.uint8)}
TARGET_RATIO = 0.8


def receive(endpoint: str, ack: str, variant: str, total: int) -> None:
    """Child process: receive ``total`` messages, turn each into a numpy array, report timing."""
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.connect(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(ack)
    push.send_json({"ready": True})
    started = 0.0
    checksum = 0
    for i in range(total):
        if i == WARMUP:
            started = time.perf_counter()
        if variant == "bare":
            frame = pull.recv(copy=False)
            arr = np.frombuffer(frame.buffer, np.uint8)
        elif variant == "codec":
            arr = next(iter(decode(pull.recv_multipart(copy=False)).arrays.values()))
        else:
            packed = msgpack.unpackb(pull.recv(), raw=False)
            arr = np.frombuffer(packed["x"], np.uint8)
        checksum += int(arr.reshape(-1).view(np.uint8)[-1])  # touch the data: nothing is optimised away
    elapsed = time.perf_counter() - started
    push.send_json({"elapsed": elapsed, "checksum": checksum})
    pull.close(linger=0)
    push.close(linger=1000)


def run_variant(variant: str, payload: np.ndarray, count: int) -> float:
    """Send ``count + WARMUP`` messages to a fresh receiver process; returns bytes/s over the timed part."""
    total = count + WARMUP
    data = Socket.open("push+bind:tcp://127.0.0.1:*")  # HWM 16, as in the pipeline
    acks = Socket.open("pull+bind:tcp://127.0.0.1:*")
    child = subprocess.Popen([sys.executable, __file__, "--role", "recv", "--endpoint", data.endpoint, "--ack",
                              acks.endpoint, "--variant", variant, "--total", str(total)], cwd=ROOT)
    try:
        raw_ack = acks._sock
        if not raw_ack.poll(30_000):
            raise RuntimeError("receiver did not start")
        raw_ack.recv_json()
        msg = Message(Kind.TOKENS, "bench", 0, {"timestamps": [0.0] * 16}, {"x": payload})
        packed_meta = {"kind": "tokens", "stream": "bench", "dtype": str(payload.dtype), "shape": list(payload.shape)}
        for seq in range(total):
            if variant == "bare":
                data._sock.send(memoryview(payload.reshape(-1).view(np.uint8)), copy=False)
            elif variant == "codec":
                data.send(Message(msg.kind, msg.stream_id, seq, msg.meta, msg.arrays))
            else:
                data._sock.send(msgpack.packb({**packed_meta, "seq": seq, "x": payload.tobytes()}))
        if not raw_ack.poll(120_000):
            raise RuntimeError("receiver did not finish")
        result = raw_ack.recv_json()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        data.close()
        acks.close()
    return count * payload.nbytes / result["elapsed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats (< 60 s)")
    parser.add_argument("--json", help="write results to this path")
    parser.add_argument("--count", type=int, help="timed messages per run")
    parser.add_argument("--repeats", type=int, help="runs per variant (median reported)")
    parser.add_argument("--role", default="send", choices=("send", "recv"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--ack", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "recv":
        receive(args.endpoint, args.ack, args.variant, args.total)
        return 0
    count = args.count or (100 if args.quick else 400)
    repeats = args.repeats or (3 if args.quick else 5)
    rng = np.random.default_rng(0)
    rows = []
    for name, (shape, dtype) in PAYLOADS.items():
        payload = (rng.standard_normal(shape).astype(dtype) if dtype == np.float16
                   else rng.integers(0, 256, shape, dtype=np.uint8))
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):  # interleaved, so machine noise hits every variant alike
            for variant in VARIANTS:
                rates[variant].append(run_variant(variant, payload, count))
        bare = statistics.median(rates["bare"])
        for variant in VARIANTS:
            rate = statistics.median(rates[variant])
            rows.append({"payload": name, "variant": variant, "bytes": payload.nbytes, "count": count,
                         "repeats": repeats, "gb_per_s": rate / 1e9, "msg_per_s": rate / payload.nbytes,
                         "ratio_to_bare": rate / bare, "runs_gb_per_s": [r / 1e9 for r in rates[variant]]})
    print(f"{'payload':24} {'variant':8} {'GB/s':>7} {'msg/s':>8} {'vs bare':>8}")
    for r in rows:
        print(f"{r['payload']:24} {r['variant']:8} {r['gb_per_s']:7.2f} {r['msg_per_s']:8.0f} "
              f"{r['ratio_to_bare']:8.2f}")
    codec = next(r for r in rows if r["variant"] == "codec")
    verdict = "meets" if codec["ratio_to_bare"] >= TARGET_RATIO else "MISSES"
    print(f"codec / bare for the token chunk: {codec['ratio_to_bare']:.2f} ({verdict} the >= {TARGET_RATIO} target)")
    if args.json:
        out = {"bench": "transport", "quick": args.quick, "machine": {"platform": platform.platform(),
               "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, "target_ratio": TARGET_RATIO, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
