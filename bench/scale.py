"""Scaling the encoder: its per-frame cost at real size, the capacity model built on it, and what a replica pool
costs and gives on a 2-node local Ray cluster.

1. Encoder cost: LLaVA-OneVision's real vision path at real size (transformers' own classes, random weights,
   no download): SigLIP-so400m-patch14-384 as LLaVA-OneVision runs it (transformers' LlavaOnevisionConfig
   default: hidden 1152, 26 layers = so400m's 27 without the last, 16 heads, MLP 4304, 384 px in 14 px
   patches -> 729 tokens, no pooling head) + the projector to Qwen2-0.5B's width (896) + 2x2 pooling, timed
   through the product's own `LlavaOnevision.encode_frames` (preprocess included) on 384x384 frames, batch 1
   and batch 8, in float32 and in the dtype `dtype: auto` picks here. Seconds per frame = call time / batch.
2. Memory cost: the streaming compressor at that width (K=32, chunks of 4 x 14 x 14 x 896): CPU seconds per
   chunk (update + checkpoint bytes + snapshot, what the memory actor runs) and one snapshot's bytes on the
   wire (what every LLM replica receives from every stream).
3. Capacity model (bench/capacity.py): streams per replica = utilisation / (2 frames/s x seconds per frame),
   on this CPU (measured) and on a GPU (FLOPs per frame from the shapes, named assumptions), and how it grows
   with replicas until a limit that replicas do not lift.
4. Replica pool (bench/replica_pool.py) on a 2-node Ray cluster on this machine (127.0.0.1 only, each node
   declaring num_gpus=1, every model on the CPU; encoder replicas reserve one GPU each, so two land one per
   node; sockets bind the node address, `transport.bind: node`), the tiny model, streams as in
   bench/pipeline.py (a 640x480 30 fps H.264 file played live, 2 frames/s in chunks of 4):
   (a) routing and placement overhead: at a light load one encoder sustains, the mean time per chunk from the
       source to the memory (the stages the pipeline's telemetry measures in the actors: decode, encode,
       compress, transport incl. queueing) with 2 encoder replicas / with 1, the pool scaled at run time on
       the same streams, 1 -> 2 -> 1 -> 2 -> 1 (each figure the mean of its sides, so drift cancels; the
       1-replica sides' spread is the noise floor a ratio can resolve); target <= 1.05.
   (b) sustained streams (bench/pipeline.py's step search and criteria: lag < 2 s, pace, no drops) with 1 and
       with 2 encoder replicas. Both nodes share this machine's 2 cores: a second replica adds no compute, so
       (b) shows what the pool costs or saves in scheduling, not a doubling.
   (c) Ray actor calls per second from one process: the controller's wiring round makes CONTROL_CALLS per
       stream every RECONCILE_S, so the capacity model says how many round periods a round takes at each size.
   (d) the memory of a stream's two processes (source and memory actors, /proc): private MB each adds, which
       the capacity model turns into the node-RAM limit. --quick measures (c) and (d) on one real stream's
       actors on a one-node cluster.
5. The autoscaler under a load curve (bench/load_curve.py) on the same kind of cluster: 2 -> 24 -> 2 streams with
   `encoder.autoscale` on; when it adds and removes a replica, and the worst lag before and after. Full run only.

    .venv/bin/python bench/scale.py --quick --json out/bench-scale.json   # --only encoder|cluster|autoscale: one part
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # --quick's 60 s budget counts the imports too
# Idle OpenMP threads sleep instead of spinning: on cores shared with other busy processes, spinning threads
# waiting for a descheduled sibling inflate every forward (bench/query.py measured 3-12x). Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LlavaOnevisionConfig, Qwen2Config  # noqa: E402

from actors.control.controller import RECONCILE_S  # noqa: E402
from actors.workers.memory import REPUBLISH_S  # noqa: E402
from actors.control.wiring import FULL_WIRE_S  # noqa: E402
from bench.capacity import GPU_ASSUMPTIONS, gpu_model, streams_per_replica, vision_flops_per_frame  # noqa: E402
from bench.common import BenchRun, bench_parser, print_table, random_llava_onevision  # noqa: E402
from bench.load_curve import load_curve_part, print_load_curve  # noqa: E402
from bench.pipeline import FRAMES_PER_CHUNK, FULL_STEPS, RATE_HZ  # noqa: E402
from bench.replica_pool import (CONTROL_PROBE_CALLS, cluster_part, print_cluster, print_stream_memory,  # noqa: E402
                                stream_memory)
from compressor.config import CompressorConfig  # noqa: E402
from compressor.registry import make_stream_compressor  # noqa: E402
from stream.codec import Kind, Message, encode  # noqa: E402
from vlm.config import resolve_dtype  # noqa: E402
from vlm.llava_onevision import LlavaOnevision  # noqa: E402
from vlm.tokenizer import byte_level_tokenizer  # noqa: E402

CHUNK_SPAN_S = FRAMES_PER_CHUNK / RATE_HZ  # media seconds per chunk (bench/pipeline.py's sampling)
TEXT_HIDDEN = 896  # Qwen2-0.5B's width: the projector's output
BUDGET = 32
UTILISATION = GPU_ASSUMPTIONS["utilisation"].value  # the same headroom on the CPU as on a GPU
MEMORY_CHUNKS, MEMORY_WARMUP = 40, 10  # memory updates timed, after this many untimed ones
# Ray calls the controller makes per stream per wiring round (actors/control/wiring.py): a quiet round asks where its
# memory and source run (2); every FULL_WIRE_S it re-sends both their addresses (2 more).
CONTROL_CALLS = 2 + 2 * RECONCILE_S / FULL_WIRE_S


def real_size_encoder(dtype: torch.dtype) -> LlavaOnevision:
    """LLaVA-OneVision with the real vision tower and projector, random weights, and a one-layer language model of
    the projector's width (encode_frames never runs it): what an encoder replica holds, less the unused LLM."""
    tokenizer = byte_level_tokenizer()
    video_id = tokenizer.convert_tokens_to_ids("<video>")
    text = Qwen2Config(hidden_size=TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=1, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=len(tokenizer))
    config = LlavaOnevisionConfig(text_config=text, image_token_index=video_id - 1, video_token_index=video_id,
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    model = random_llava_onevision(config, dtype)
    return LlavaOnevision(model, tokenizer, name="llava-onevision-vision-random", meaningful=False)


def encoder_cost(dtype: str, plan: tuple[tuple[int, int], ...]) -> dict:
    """Seconds per `encode_frames` call on random 384x384 frames: one untimed call at batch 1 first (allocations,
    kernel choice), then per (batch, calls) in `plan` that many timed calls. Per-frame figures use the fastest
    call (the one other processes on the shared cores disturbed least) and the median."""
    started = time.perf_counter()
    model = real_size_encoder(getattr(torch, dtype))
    build_s = time.perf_counter() - started
    frames = np.random.default_rng(0).integers(0, 256, (max(b for b, _ in plan), 384, 384, 3), dtype=np.uint8)
    model.encode_frames(frames[:1])
    rows = []
    for batch, calls in plan:
        runs = []
        for _ in range(calls):
            started = time.perf_counter()
            model.encode_frames(frames[:batch])
            runs.append(time.perf_counter() - started)
        rows.append({"dtype": dtype, "batch": batch, "runs_s": [round(r, 3) for r in runs],
                     "s_per_frame_min": min(runs) / batch, "s_per_frame_median": float(np.median(runs)) / batch})
    vision = model.model.config.vision_config
    return {"build_s": round(build_s, 1), "rows": rows, "vision": {
        k: getattr(vision, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                        "intermediate_size", "image_size", "patch_size")},
        "parameters": sum(p.numel() for p in model.model.model.vision_tower.parameters())
        + sum(p.numel() for p in model.model.model.multi_modal_projector.parameters())}


def memory_cost(dim: int) -> dict:
    """The memory actor's CPU per chunk at width `dim` (compressor update + checkpoint bytes + snapshot, median
    of MEMORY_CHUNKS after MEMORY_WARMUP) and the bytes of one snapshot message on the wire, on random tokens."""
    rng = np.random.default_rng(0)
    compressor = make_stream_compressor(CompressorConfig(budget=BUDGET))
    times = []
    for i in range(MEMORY_WARMUP + MEMORY_CHUNKS):
        tokens = rng.standard_normal((FRAMES_PER_CHUNK, 14, 14, dim), dtype=np.float32)  # [T, gh, gw, D]
        stamps = i * CHUNK_SPAN_S + np.arange(FRAMES_PER_CHUNK) / RATE_HZ
        started = time.perf_counter()
        compressor.update(tokens, stamps)
        compressor.to_bytes()
        snapshot = compressor.snapshot()
        times.append(time.perf_counter() - started)
    meta, arrays = snapshot.to_wire()
    wire = encode(Message(Kind.SNAPSHOT, "cam", snapshot.version, meta, arrays))
    return {"dim": dim, "budget": BUDGET, "compress_s_per_chunk": float(np.median(times[MEMORY_WARMUP:])),
            "snapshot_bytes": sum(memoryview(part).nbytes for part in wire)}


def capacity(encoder: dict, memory: dict, control_calls_per_s: float | None, stream_ram_bytes: float | None,
             ) -> dict:
    """The capacity model on this CPU (measured, dtype auto, the largest batch) and on a GPU (assumed); with the
    measured control-call rate, the controller's wiring round caps the cluster too; with the measured private
    memory of a stream's processes, the node's RAM caps it too."""
    auto = [r for r in encoder["rows"] if r["dtype"] == encoder["dtype_auto"]]
    cpu_row = max(auto, key=lambda r: r["batch"])
    cpu = {"dtype": cpu_row["dtype"], "batch": cpu_row["batch"], "seconds_per_frame": cpu_row["s_per_frame_min"],
           "streams_per_replica": streams_per_replica(cpu_row["s_per_frame_min"], RATE_HZ, UTILISATION),
           "replica": f"this machine ({os.cpu_count()} cores)"}
    config = LlavaOnevisionConfig()
    flops = vision_flops_per_frame(config.vision_config, TEXT_HIDDEN)
    controller_cap = None if control_calls_per_s is None else control_calls_per_s * RECONCILE_S / CONTROL_CALLS
    gpu = gpu_model(flops, memory["snapshot_bytes"], memory["compress_s_per_chunk"], RATE_HZ, CHUNK_SPAN_S,
                    REPUBLISH_S, GPU_ASSUMPTIONS, controller_cap, stream_ram_bytes)
    return {"rate_hz": RATE_HZ, "utilisation": UTILISATION, "flops_per_frame": flops,
            "control_calls_per_s": control_calls_per_s, "control_calls_per_stream_round": CONTROL_CALLS,
            "cpu_effective_flops": flops / cpu["seconds_per_frame"], "cpu": cpu, "gpu": gpu}


def print_capacity(encoder: dict, memory: dict, model: dict) -> None:
    print_table([("dtype", ""), ("batch", "d"), ("calls", "d"), ("s/frame min", ".2f"), ("s/frame median", ".2f"),
                 ("streams/replica @2fps", ".3f")],
                [[r["dtype"], r["batch"], len(r["runs_s"]), r["s_per_frame_min"], r["s_per_frame_median"],
                  streams_per_replica(r["s_per_frame_min"], RATE_HZ, UTILISATION)] for r in encoder["rows"]])
    cpu, gpu = model["cpu"], model["gpu"]
    print(f"\nvision path {model['flops_per_frame'] / 1e9:.0f} GFLOP/frame; this CPU ({cpu['dtype']}, batch "
          f"{cpu['batch']}): {cpu['seconds_per_frame']:.2f} s/frame = {model['cpu_effective_flops'] / 1e9:.0f} "
          f"GFLOP/s -> {cpu['streams_per_replica']:.3f} streams per replica at {UTILISATION:.0%} busy "
          f"(one stream needs {1 / cpu['streams_per_replica']:.0f} such replicas)")
    print(f"memory at D={memory['dim']}: {memory['compress_s_per_chunk'] * 1000:.1f} ms CPU per chunk, snapshot "
          f"{memory['snapshot_bytes'] / 1000:.0f} kB on the wire")
    per = gpu["streams_per_replica"]
    print(f"GPU (assumed): {gpu['seconds_per_frame'] * 1000:.2f} ms/frame -> {per['encoder']:.0f} streams per "
          f"replica by the encoder, {per['node_cpu']:.0f} by the node CPU, {per['node_network']:.0f} by the node "
          f"network, {'(not measured)' if per['node_ram'] is None else format(per['node_ram'], '.0f')} by the node "
          f"RAM: {per['effective']:.0f} ({per['bound_by']}); linear up to {gpu['linear_until_replicas']} "
          f"replicas, then capped at {gpu['fanout_cap_streams']} streams by the snapshot fan-out; the controller "
          f"re-wires {gpu['controller_streams_per_round'] or '(not measured)'} streams per round period")
    print_table([("GPU replicas", "d"), ("streams", "d"), ("bound by", ""), ("controller round / period", ".1f")],
                [[g["replicas"], g["streams"], g["limit"], g["controller_round_periods"]] for g in gpu["growth"]])


def quick_cluster() -> tuple[float, dict]:
    """(c) and the stream processes' memory for --quick, on a fresh local cluster (127.0.0.1) holding one
    stream's real source and memory actors (a synthetic camera, no encoder): Ray actor calls per second from
    this process to them (all submitted at once, then awaited), and their resident memory."""
    import tempfile

    import ray

    from actors.client.cluster import start_local
    from actors.config import StreamSpec, TransportConfig
    from actors.workers.remote import MemoryActor, SourceActor

    start_local(2, "tokdyn-bench-scale", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tokdyn-bench-scale-") as tmp:
            spec = StreamSpec("probe", "synthetic://?width=64&height=48&fps=4", live=True)
            memory = MemoryActor.options(num_cpus=0).remote(spec, tmp, TransportConfig())
            handles = [memory, SourceActor.options(num_cpus=0).remote(spec, 32, TransportConfig(), None, memory)]
            ray.get([h.where.remote() for h in handles])  # started
            started = time.perf_counter()
            ray.get([handles[i % 2].where.remote() for i in range(CONTROL_PROBE_CALLS)])
            calls = CONTROL_PROBE_CALLS / (time.perf_counter() - started)
            processes = stream_memory([{"source": handles[1], "memory": memory}])
            for handle in handles:
                ray.kill(handle, no_restart=True)
        return calls, processes
    finally:
        ray.shutdown()


def main() -> int:
    parser = bench_parser(__doc__, "encoder at batch 1 (dtype auto, one timed call) and the Ray call rate on a local "
                                   "cluster; (a) and (b) only in the full run (< 60 s)")
    parser.add_argument("--only", choices=("encoder", "cluster", "autoscale"),
                        help="run one part: 1-3 (encoder), 4 (cluster) or 5 (autoscale)")
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                        help="stream counts for (b), comma-separated (default: bench/pipeline.py's)")
    args = parser.parse_args()
    if args.quick and args.only == "autoscale":
        parser.error("--only autoscale: part 5 runs minutes, so it has no --quick form")
    run = BenchRun("scale", args.quick, started=STARTED)
    results = {}
    if args.only in (None, "encoder"):
        dtype_auto = resolve_dtype("cpu")[0]
        dtypes = [dtype_auto] if args.quick else sorted({"float32", dtype_auto})
        plan = ((1, 1),) if args.quick else ((1, 2), (8, 1))  # (batch, timed calls): batch 8 takes 45-80 s here
        encoder = {"dtype_auto": dtype_auto, "torch_threads": torch.get_num_threads(), "rows": []}
        for dtype in dtypes:
            measured = encoder_cost(dtype, plan)
            encoder["rows"] += measured.pop("rows")
            encoder.update(measured)
        results.update(encoder=encoder, memory=memory_cost(TEXT_HIDDEN))
    calls, processes = None, None
    if args.only != "encoder":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away cluster on 127.0.0.1
    if args.only in (None, "cluster"):
        if args.quick:  # a 2-node cluster and a pipeline alone take 40-70 s here: (a) and (b) are full-run only
            calls, processes = quick_cluster()
            results.update(control_calls_per_s=calls, stream_memory=processes)
            print(f"control calls (actor `where`, {CONTROL_PROBE_CALLS} at once, local cluster): {calls:.0f}/s; "
                  "(a) and (b) run without --quick")
            print_stream_memory(processes)
            print()
        else:
            results["cluster"] = cluster_part(args.steps or list(FULL_STEPS))
            calls = results["cluster"]["overhead"]["control_calls_per_s"]
            processes = results["cluster"]["overhead"]["stream_memory"]
            print_cluster(results["cluster"])
            print()
    if args.only in (None, "autoscale") and not args.quick:
        results["load_curve"] = load_curve_part()
        print_load_curve(results["load_curve"])
        print()
    if "encoder" in results:
        results["capacity"] = capacity(results["encoder"], results["memory"], calls,
                                       processes["stream_private_bytes"] if processes else None)
        print_capacity(results["encoder"], results["memory"], results["capacity"])
    run.finish(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
