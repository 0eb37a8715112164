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
4. Replica pool on a 2-node Ray cluster on this machine (ray.cluster_utils.Cluster on 127.0.0.1, each node
   declaring num_gpus=1, every model on the CPU; encoder replicas reserve one GPU each, so two land one per
   node; sockets bind the node address, `transport.bind: node`), the tiny model, streams as in
   bench/pipeline.py (a 640x480 30 fps H.264 file played live, 2 frames/s in chunks of 4):
   (a) routing and placement overhead: at a light load one encoder sustains, the mean time per chunk from the
       source to the memory (the stages the pipeline's telemetry measures in the actors: decode, encode,
       compress, transport incl. queueing) with 2 encoder replicas / with 1, the pool scaled at run time on
       the same streams, 1 -> 2 -> 1 (the 1-replica figure is the mean of both sides, so drift cancels);
       target <= 1.05.
   (b) sustained streams (bench/pipeline.py's step search and criteria: lag < 2 s, pace, no drops) with 1 and
       with 2 encoder replicas. Both nodes share this machine's 2 cores: a second replica adds no compute, so
       (b) shows what the pool costs or saves in scheduling, not a doubling.

    .venv/bin/python bench/scale.py --quick --json out/bench-scale.json   # --only encoder|cluster: one half
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

STARTED = time.perf_counter()  # --quick's 60 s budget counts the imports too
# Idle OpenMP threads sleep instead of spinning: on cores shared with other busy processes, spinning threads
# waiting for a descheduled sibling inflate every forward (bench/query.py measured 3-12x). Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import tempfile  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.exceptions import RayError  # noqa: E402
from transformers import LlavaOnevisionConfig, Qwen2Config  # noqa: E402

from actors.client import PipelineClient  # noqa: E402
from actors.cluster import LOCAL_ONLY_ENV, LOOPBACK, join  # noqa: E402
from actors.config import EncoderConfig, PipelineConfig, RayConfig, TransportConfig  # noqa: E402
from actors.memory import REPUBLISH_S  # noqa: E402
from actors.pipeline import start_pipeline  # noqa: E402
from bench.capacity import GPU_ASSUMPTIONS, gpu_model, streams_per_replica, vision_flops_per_frame  # noqa: E402
from bench.common import BenchRun, bench_parser, print_table, random_llava_onevision  # noqa: E402
from bench.pipeline import (FRAMES_PER_CHUNK, FULL_STEPS, RATE_HZ, SETTLE_S, STAGES, add_streams,  # noqa: E402
                            print_steps, ramp, run_step, summary, wait_first_chunks, write_clip)
from compressor.config import CompressorConfig  # noqa: E402
from compressor.registry import make_stream_compressor  # noqa: E402
from stream.codec import Kind, Message, encode  # noqa: E402
from vlm.config import resolve_dtype  # noqa: E402
from vlm.llava_onevision import LlavaOnevision  # noqa: E402
from vlm import ModelConfig  # noqa: E402
from vlm.tokenizer import byte_level_tokenizer  # noqa: E402

CHUNK_SPAN_S = FRAMES_PER_CHUNK / RATE_HZ  # media seconds per chunk (bench/pipeline.py's sampling)
TEXT_HIDDEN = 896  # Qwen2-0.5B's width: the projector's output
BUDGET = 32
UTILISATION = GPU_ASSUMPTIONS["utilisation"].value  # the same headroom on the CPU as on a GPU
MEMORY_CHUNKS, MEMORY_WARMUP = 40, 10  # memory updates timed, after this many untimed ones
NODES, CPUS_PER_NODE = 2, 4  # logical CPUs each node advertises (bench/pipeline.py's one node has 4)
NAMESPACE = "tokdyn-bench-scale"
OVERHEAD_TARGET = 1.05  # per-chunk time with 2 replicas / with 1
POOL_TIMEOUT_S = 180.0  # a scaled pool has its replicas up and every stream advancing again
CALL_TIMEOUT_S = 10.0  # an actor's where() call
COLOCATE_TIMEOUT_S = 30.0  # after serving, for the controller to move streams to their replica's node


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


def capacity(encoder: dict, memory: dict) -> dict:
    """The capacity model on this CPU (measured, dtype auto, the largest batch) and on a GPU (assumed)."""
    auto = [r for r in encoder["rows"] if r["dtype"] == encoder["dtype_auto"]]
    cpu_row = max(auto, key=lambda r: r["batch"])
    cpu = {"dtype": cpu_row["dtype"], "batch": cpu_row["batch"], "seconds_per_frame": cpu_row["s_per_frame_min"],
           "streams_per_replica": streams_per_replica(cpu_row["s_per_frame_min"], RATE_HZ, UTILISATION),
           "replica": f"this machine ({os.cpu_count()} cores)"}
    config = LlavaOnevisionConfig()
    flops = vision_flops_per_frame(config.vision_config, TEXT_HIDDEN)
    gpu = gpu_model(flops, memory["snapshot_bytes"], memory["compress_s_per_chunk"], RATE_HZ, CHUNK_SPAN_S,
                    REPUBLISH_S, GPU_ASSUMPTIONS)
    return {"rate_hz": RATE_HZ, "utilisation": UTILISATION, "flops_per_frame": flops,
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
          f"network: {per['effective']:.0f} ({per['bound_by']}); linear up to {gpu['linear_until_replicas']} "
          f"replicas, then capped at {gpu['fanout_cap_streams']} streams by the snapshot fan-out")
    print_table([("GPU replicas", "d"), ("streams", "d"), ("bound by", "")],
                [[g["replicas"], g["streams"], g["limit"]] for g in gpu["growth"]])


def local_cluster() -> Cluster:
    """NODES Ray nodes on this machine, on 127.0.0.1 only, each declaring one GPU (encoder replicas that reserve
    one land one per node; every model still runs on the CPU); this process joins it."""
    os.environ.update(LOCAL_ONLY_ENV)  # inherited by every Ray process the nodes start: see actors/cluster.py
    node = {"num_cpus": CPUS_PER_NODE, "num_gpus": 1, "node_ip_address": LOOPBACK}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(NODES - 1):
        cluster.add_node(**node)
    join(cluster.address, NAMESPACE, log_to_driver=False)
    return cluster


def pool_config(checkpoint_dir: str) -> PipelineConfig:
    """One encoder replica to start with, one GPU each (so the pool can take both nodes), node-address sockets."""
    return PipelineConfig(ray=RayConfig(address="auto", namespace=NAMESPACE),
                          transport=TransportConfig(bind="node", hwm=4, send_timeout_ms=200),
                          model=ModelConfig(path="tiny", device="cpu"),
                          encoder=EncoderConfig(replicas=1, num_gpus=1, batch_frames=32), checkpoint_dir=checkpoint_dir)


def scale_encoders(client: PipelineClient, replicas: int, ids: list[str]) -> tuple[list[dict], float, float | None]:
    """Set the encoder pool to `replicas`; wait until that many are alive, each serving a share of `ids` (none
    idle when there are streams for it), and every stream has taken a new chunk since (raises TimeoutError after
    POOL_TIMEOUT_S); then up to COLOCATE_TIMEOUT_S more until every stream's source and memory run on its
    replica's node (the controller moves them there); then settle as a new step does.
    Returns (the encoder replicas' status, seconds until they served, seconds until co-located or None)."""
    started = time.monotonic()
    client.scale("encoder", replicas)
    before = {s: client.stream_status(s).chunks_compressed or 0 for s in ids}

    def encoders() -> list[dict]:
        return [r.to_dict() for r in client.replicas() if r.role == "encoder" and r.state == "alive"]

    def serving() -> bool:
        pool = encoders()
        return len(pool) == replicas and all(r["streams"] >= 1 for r in pool[:len(ids)]) \
            and all((client.stream_status(s).chunks_compressed or 0) > before[s] for s in ids)

    if not poll(serving, POOL_TIMEOUT_S):
        raise TimeoutError(f"expected {replicas} encoder replica(s) serving streams {ids} within "
                           f"{POOL_TIMEOUT_S} s, got {encoders()}")
    serving_s = time.monotonic() - started
    together = poll(lambda: colocated(client, ids, encoders()), COLOCATE_TIMEOUT_S)
    colocated_s = time.monotonic() - started if together else None
    time.sleep(SETTLE_S)
    return encoders(), serving_s, colocated_s


def poll(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether `condition()` became true within `timeout_s` (checked every half second)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)  # polling a condition, with the deadline above
    return True


def colocated(client: PipelineClient, ids: list[str], encoders: list[dict]) -> bool:
    """Whether each replica's node runs exactly as many of the streams' sources and memories as it serves."""
    nodes = Counter()
    for sid in ids:
        handles = client.stream_handles(sid)
        try:
            where = {role: ray.get(handles[role].where.remote(), timeout=CALL_TIMEOUT_S)["node_id"]
                     for role in ("source", "memory")}
        except RayError:  # a stream being moved: its actors are stopping or starting (GetTimeoutError is one)
            return False
        nodes[where["source"] if where["source"] == where["memory"] else None] += 1
    return nodes == Counter({r["node_id"]: r["streams"] for r in encoders if r["streams"]})


def per_chunk_s(step: dict) -> float:
    """Source-to-memory seconds per chunk: the sum of the stage means (decode, encode, compress, transport)."""
    return sum(step["stage_s"].get(stage, 0.0) for stage in STAGES)


def routing_overhead(client: PipelineClient, clip: Path, streams: int, window_s: float, sides: tuple[int, ...],
                     ) -> dict:
    """Per-chunk time of `streams` light streams with 1 then 2 (then 1 again) encoder replicas as `sides` says
    (same streams, pool scaled at run time); ratio = the 2-replica figure / the mean of the 1-replica ones."""
    ids = [f"cam{i}" for i in range(streams)]
    add_streams(client, clip, ids)
    steps = []
    try:
        started = time.monotonic()
        wait_first_chunks(client, ids)
        first_chunks_s = time.monotonic() - started - SETTLE_S
        for replicas in sides:
            encoders, serving_s, colocated_s = scale_encoders(client, replicas, ids)
            step = run_step(client, ids, window_s, None)
            step.update(replicas=replicas, per_chunk_s=per_chunk_s(step), encoders=encoders, serving_s=serving_s,
                        colocated_s=colocated_s, colocated=colocated(client, ids, encoders))  # after the window
            steps.append(step)
            print(f"  {replicas} encoder replica(s), serving {serving_s:.1f} s after the scale call: "
                  f"{step['per_chunk_s'] * 1000:.1f} ms per chunk, max lag "
                  f"{step['max_lag_s']:.2f} s, sustained {step['sustained']}, co-located {step['colocated']}",
                  flush=True)
    finally:
        for sid in ids:
            client.remove_stream(sid)
    one = np.mean([s["per_chunk_s"] for s in steps if s["replicas"] == 1])
    ratio = float(np.mean([s["per_chunk_s"] for s in steps if s["replicas"] == 2]) / one)
    return {"streams": streams, "window_s": window_s, "first_chunks_s": first_chunks_s, "sides": steps,
            "ratio": ratio, "target": OVERHEAD_TARGET,
            "pass": ratio <= OVERHEAD_TARGET and all(s["sustained"] and s["colocated"] for s in steps)}


def sustained(client: PipelineClient, clip: Path, steps: list[int], window_s: float) -> dict:
    """bench/pipeline.py's step search with 1 encoder replica, then with 2."""
    out = {}
    for replicas in (1, 2):
        scale_encoders(client, replicas, [])  # the whole pool up before the first stream is placed
        plain, _ = ramp(client, clip, steps, window_s, None)
        out[replicas] = summary(plain)
        print_steps(f"{replicas} encoder(s)", plain)
    return out


def cluster_part(quick: bool, steps: list[int]) -> dict:
    """(a) and, unless quick, (b) on a fresh 2-node cluster; everything started here is stopped here."""
    started = time.perf_counter()
    cluster = local_cluster()
    cluster_s = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory(prefix="tokdyn-bench-scale-") as tmp:
            clip = write_clip(Path(tmp))
            started = time.perf_counter()
            client = start_pipeline(pool_config(str(Path(tmp) / "checkpoints")))
            out = {"nodes": NODES, "cluster_start_s": round(cluster_s, 1),
                   "pipeline_start_s": round(time.perf_counter() - started, 1)}
            try:
                out["overhead"] = (routing_overhead(client, clip, 2, 4.0, (1, 2)) if quick
                                   else routing_overhead(client, clip, 4, 20.0, (1, 2, 1)))
                if not quick:
                    out["sustained"] = sustained(client, clip, steps, 15.0)
            finally:
                client.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


def print_cluster(result: dict) -> None:
    overhead = result["overhead"]
    print(f"{result['nodes']}-node cluster started in {result['cluster_start_s']:.1f} s, pipeline in "
          f"{result['pipeline_start_s']:.1f} s, first chunks of {overhead['streams']} streams "
          f"{overhead['first_chunks_s']:.1f} s later; each pool change serving again after "
          + ", ".join(f"{s['serving_s']:.1f} s ({s['replicas']} replicas)" for s in overhead["sides"])
          + "; co-located after " + ", ".join("never" if s["colocated_s"] is None else f"{s['colocated_s']:.1f} s"
                                             for s in overhead["sides"]))
    print_table([("encoder replicas", "d"), ("streams", "d"), ("chunks", "d"), ("per chunk ms", ".1f"),
                 *((f"{k} ms", ".1f") for k in STAGES), ("max lag s", ".2f"), ("co-located", "")],
                [[s["replicas"], s["streams"], s["chunks"], s["per_chunk_s"] * 1000,
                  *(s["stage_s"][k] * 1000 if k in s["stage_s"] else None for k in STAGES), s["max_lag_s"],
                  "yes" if s["colocated"] else "no"] for s in overhead["sides"]])
    print(f"routing + placement overhead: {overhead['ratio']:.3f} per chunk with 2 replicas vs 1 (target <= "
          f"{OVERHEAD_TARGET}) -> {'PASS' if overhead['pass'] else 'FAIL'}")
    if "sustained" in result:
        one, two = result["sustained"][1], result["sustained"][2]
        print(f"sustained streams: {one['max_sustained_streams']} with 1 encoder replica, "
              f"{two['max_sustained_streams']} with 2 (both nodes share this machine's {os.cpu_count()} cores)")


def main() -> int:
    parser = bench_parser(__doc__, "encoder at batch 1 (dtype auto, one timed call) and (a) only, 2 streams (< 60 s)")
    parser.add_argument("--only", choices=("encoder", "cluster"), help="run one half: parts 1-3 or part 4")
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                        help="stream counts for (b), comma-separated (default: bench/pipeline.py's)")
    args = parser.parse_args()
    run = BenchRun("scale", args.quick, started=STARTED)
    results = {}
    if args.only != "cluster":
        dtype_auto = resolve_dtype("cpu")[0]
        dtypes = [dtype_auto] if args.quick else sorted({"float32", dtype_auto})
        plan = ((1, 1),) if args.quick else ((1, 2), (8, 1))  # (batch, timed calls): batch 8 takes 45-80 s here
        encoder = {"dtype_auto": dtype_auto, "torch_threads": torch.get_num_threads(), "rows": []}
        for dtype in dtypes:
            measured = encoder_cost(dtype, plan)
            encoder["rows"] += measured.pop("rows")
            encoder.update(measured)
        memory = memory_cost(TEXT_HIDDEN)
        results.update(encoder=encoder, memory=memory, capacity=capacity(encoder, memory))
        print_capacity(encoder, memory, results["capacity"])
    if args.only != "encoder":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away cluster on 127.0.0.1
        results["cluster"] = cluster_part(args.quick, args.steps or list(FULL_STEPS))
        print()
        print_cluster(results["cluster"])
    run.finish(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
