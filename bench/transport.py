"""Transport benchmark: a chunk of visual tokens over ZeroMQ (tcp loopback, PUSH -> PULL, two processes).

    python bench/transport.py [--quick] [--json PATH] [--batch N] [--rounds R]

Variants, same payload, same sockets, same run, interleaved batch by batch (each round sends one batch of
every variant, so a load spike from other processes hits all of them alike):
  bare     one raw ZeroMQ frame of the array's bytes, zero-copy both ways (the ceiling)
  codec    stream.codec Message via stream.transport.Socket: msgpack header + zero-copy buffer, validated
  msgpack  the array packed as bytes inside one msgpack map (one copy each way + packing)
  curve    codec over a CURVE socket pair (stream.curve: authenticated + encrypted, as the pipeline runs)

Payloads: tokens 16x196x896 float16 (the encoder's chunk, 5.6 MB; target: codec >= 0.8 of bare), tokens
4x196x896 float16 (a chunk at the shipped configs' frames_per_chunk 4, 1.4 MB; target: curve costs <= 1.1x
codec's time), frames 4x384x384x3 uint8 (a sampled chunk on its way to the encoder, 1.8 MB) and a snapshot
64x896 float32 (the 0.5B config's K = 64 memory on its way to the LLM, 229 KB).
The receiver runs in a child process; a batch is timed from its first send until the receiver acknowledges
the last message; 'vs bare' is the median over rounds of (variant rate / bare rate in the same round).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(ROOT)

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from stream.codec import Kind, Message, decode  # noqa: E402
from stream.curve import CurveKeys, secure  # noqa: E402
from stream.transport import Socket  # noqa: E402

VARIANTS = ("bare", "codec", "curve", "msgpack")
PAYLOADS = {"tokens 16x196x896 f16": ((16, 196, 896), np.float16),
            "tokens 4x196x896 f16": ((4, 196, 896), np.float16),
            "frames 4x384x384x3 u8": ((4, 384, 384, 3), np.uint8),
            "snapshot 64x896 f32": ((64, 896), np.float32)}
TARGET_RATIO = 0.8
CURVE_CHUNK = "tokens 4x196x896 f16"  # the pipeline's chunk: CURVE's cost target applies to it
CURVE_TARGET = 1.1  # curve time per message / codec time per message
CHUNK_PERIOD_S = 2.0  # media seconds in one such chunk (4 frames sampled at 2 Hz, configs/default.yaml)


def receive(data_ep: str, curve_ep: str, ctl_ep: str, ack_ep: str) -> None:
    """Child process: for each batch announced on ``ctl``, receive it as its variant says, turn every
    message into a numpy array, then acknowledge with the CPU seconds it spent. The CURVE keys come on stdin
    (never on the command line)."""
    keys = CurveKeys(*(line.strip().encode() for line in sys.stdin.readlines()[:4]))
    ctx = zmq.Context.instance()
    data, curve, ctl, ack = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL), ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    secure(curve, keys, server=False)
    for sock, ep in ((data, data_ep), (curve, curve_ep), (ctl, ctl_ep), (ack, ack_ep)):
        sock.connect(ep)
    ack.send_json({"ready": True})
    while (batch := ctl.recv_json())["variant"] != "stop":
        checksum, cpu = 0, time.process_time()
        for _ in range(batch["count"]):
            if batch["variant"] == "bare":
                arr = np.frombuffer(data.recv(copy=False).buffer, np.uint8)
            elif batch["variant"] in ("codec", "curve"):
                sock = curve if batch["variant"] == "curve" else data
                arr = next(iter(decode(sock.recv_multipart(copy=False)).arrays.values()))
            else:
                arr = np.frombuffer(msgpack.unpackb(data.recv(), raw=False)["x"], np.uint8)
            checksum += int(arr.reshape(-1).view(np.uint8)[-1])  # touch the data: nothing is optimised away
        ack.send_json({"cpu": time.process_time() - cpu, "checksum": checksum})
    for sock in (data, curve, ctl, ack):
        sock.close(linger=1000)


class Sender:
    """The parent's side: sockets (bound, ephemeral ports) and one receiver child process."""

    def __init__(self) -> None:
        keys = CurveKeys.generate()
        self.data = Socket.open("push+bind:tcp://127.0.0.1:*")  # HWM 16, as in the pipeline
        self.curve = Socket.open("push+bind:tcp://127.0.0.1:*", keys=keys)
        self.ctl = Socket.open("push+bind:tcp://127.0.0.1:*")
        self.ack = Socket.open("pull+bind:tcp://127.0.0.1:*")
        self.child = subprocess.Popen([sys.executable, __file__, "--role", "recv", "--data", self.data.endpoint,
                                       "--curve", self.curve.endpoint, "--ctl", self.ctl.endpoint,
                                       "--ack", self.ack.endpoint], cwd=ROOT, stdin=subprocess.PIPE)
        self.child.stdin.write(b"\n".join(keys.__getstate__()) + b"\n")
        self.child.stdin.close()
        self._ack_json()

    def _ack_json(self) -> dict:
        if not self.ack.raw.poll(60_000):
            raise RuntimeError("the receiver process did not answer within 60 s")
        return self.ack.raw.recv_json()

    def batch(self, variant: str, payload: np.ndarray, count: int) -> tuple[float, float]:
        """Send ``count`` messages of ``variant``. Returns (bytes/s from the first send until the receiver
        has decoded the last one, CPU seconds per message of both processes, ZeroMQ I/O threads included)."""
        self.ctl.raw.send_json({"variant": variant, "count": count})
        cpu, started = time.process_time(), time.perf_counter()
        raw = self.data.raw
        flat = memoryview(payload.reshape(-1).view(np.uint8))
        meta = {"timestamps": [0.0] * payload.shape[0]}
        for seq in range(count):
            if variant == "bare":
                raw.send(flat, copy=False)
            elif variant in ("codec", "curve"):
                sock = self.curve if variant == "curve" else self.data
                sock.send(Message(Kind.TOKENS, "bench", seq, meta, {"x": payload}))
            else:
                raw.send(msgpack.packb({"kind": "tokens", "stream": "bench", "seq": seq, "dtype": str(payload.dtype),
                                        "shape": list(payload.shape), "meta": meta, "x": payload.tobytes()}))
        sender_cpu = time.process_time() - cpu
        result = self._ack_json()
        elapsed = time.perf_counter() - started  # includes one small ack's latency (~0.1 ms)
        return count * payload.nbytes / elapsed, (sender_cpu + result["cpu"]) / count

    def close(self) -> None:
        self.ctl.raw.send_json({"variant": "stop"})
        try:
            self.child.wait(30)
        finally:
            if self.child.poll() is None:
                self.child.kill()
            for sock in (self.data, self.curve, self.ctl, self.ack):
                sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer messages and repeats (< 60 s)")
    parser.add_argument("--batch", type=int, help="messages per variant per round")
    parser.add_argument("--rounds", type=int, help="rounds; each sends one batch of every variant")
    parser.add_argument("--role", default="send", choices=("send", "recv"), help=argparse.SUPPRESS)
    for hidden in ("--data", "--curve", "--ctl", "--ack"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "recv":
        receive(args.data, args.curve, args.ctl, args.ack)
        return 0
    run = BenchRun("transport", args.quick)
    batch = args.batch or 10
    rounds = args.rounds or (40 if args.quick else 150)
    rng = np.random.default_rng(0)
    rows = []
    sender = Sender()
    try:
        for name, (shape, dtype) in PAYLOADS.items():
            payload = (rng.standard_normal(shape).astype(dtype) if dtype != np.uint8
                       else rng.integers(0, 256, shape, dtype=np.uint8))
            rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(rounds):  # variants interleaved batch by batch: machine noise hits them alike
                for variant in VARIANTS:
                    rate, cpu = sender.batch(variant, payload, batch)
                    rates[variant].append(rate)
                    cpus[variant].append(cpu)
            for variant in VARIANTS:
                ratios = [r / b for r, b in zip(rates[variant], rates["bare"])]  # same round, same conditions
                costs = [c / r for r, c in zip(rates[variant], rates["codec"])]  # time per message vs codec
                rows.append({"time_vs_codec": statistics.median(costs),
                             "ms_per_msg": payload.nbytes / statistics.median(rates[variant]) * 1000,
                             "payload": name, "variant": variant, "bytes": payload.nbytes, "batch": batch,
                             "rounds": rounds, "gb_per_s": statistics.median(rates[variant]) / 1e9,
                             "best_gb_per_s": max(rates[variant]) / 1e9,
                             "msg_per_s": statistics.median(rates[variant]) / payload.nbytes,
                             "ratio_to_bare": statistics.median(ratios),
                             "best_ratio_to_bare": max(rates[variant]) / max(rates["bare"]),
                             "cpu_ms_per_msg": statistics.median(cpus[variant]) * 1000,
                             "runs_gb_per_s": [round(r / 1e9, 3) for r in rates[variant]]})
    finally:
        sender.close()
    print_table([("payload", ""), ("variant", ""), ("GB/s", ".2f"), ("msg/s", ".0f"), ("ms/msg", ".3f"),
                 ("vs bare", ".2f"), ("time vs codec", ".2f"), ("best GB/s", ".2f"), ("CPU ms/msg", ".2f")],
                [[r["payload"], r["variant"], r["gb_per_s"], r["msg_per_s"], r["ms_per_msg"], r["ratio_to_bare"],
                  r["time_vs_codec"], r["best_gb_per_s"], r["cpu_ms_per_msg"]] for r in rows])
    print(f"medians over {rounds} rounds of {batch} messages per variant; 'vs bare' = median of per-round ratios")
    codec = next(r for r in rows if r["variant"] == "codec")
    verdict = "meets" if codec["ratio_to_bare"] >= TARGET_RATIO else "MISSES"
    print(f"codec / bare for the token chunk: {codec['ratio_to_bare']:.2f} median of rounds, "
          f"{codec['best_ratio_to_bare']:.2f} best vs best ({verdict} the >= {TARGET_RATIO} target)")
    curve = {r["payload"]: r["time_vs_codec"] for r in rows if r["variant"] == "curve"}
    verdict = "meets" if curve[CURVE_CHUNK] <= CURVE_TARGET else "MISSES"
    print("CURVE / plain codec, time per message: " + ", ".join(f"{p} {c:.2f}x" for p, c in curve.items())
          + f" ({verdict} the <= {CURVE_TARGET}x target for the pipeline's chunk, {CURVE_CHUNK})")
    ms = {r["variant"]: r["ms_per_msg"] for r in rows if r["payload"] == CURVE_CHUNK}
    added_ms = ms["curve"] - ms["codec"]
    share = added_ms / (CHUNK_PERIOD_S * 1000)
    print(f"CURVE adds {added_ms:.2f} ms per {CURVE_CHUNK} chunk: {share:.2%} of the {CHUNK_PERIOD_S:g} s of media one "
          "such chunk carries at the default 2 Hz (the pipeline's time per chunk with CURVE: "
          f"{1 + share:.3f}x of plain)")
    run.finish({"target_ratio": TARGET_RATIO, "curve_target": CURVE_TARGET, "curve_time_vs_codec": curve,
                "curve_added_ms_per_chunk": added_ms, "curve_pipeline_time_per_chunk": 1 + share, "rows": rows},
               args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
