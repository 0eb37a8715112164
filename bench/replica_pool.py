"""bench/scale.py's part 4: an encoder replica pool on a 2-node Ray cluster on this machine.

The cluster (ray.cluster_utils.Cluster on 127.0.0.1) has NODES nodes each declaring num_gpus=1; encoder
replicas reserve one GPU each, so two land one per node, and every model runs on the CPU; sockets bind the
node address (`transport.bind: node`). Streams are bench/pipeline.py's (a 640x480 30 fps H.264 file played live,
2 frames/s in chunks of 4), measured with its run_step and ramp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster
from ray.exceptions import RayError

from actors.client.client import PipelineClient
from actors.client.cluster import LOCAL_ONLY_ENV, LOOPBACK, join
from actors.config import AutoscaleConfig, EncoderConfig, PipelineConfig, RayConfig, TransportConfig
from actors.errors import PipelineUnavailable
from actors.client.pipeline import start_pipeline
from bench.common import print_table
from bench.pipeline import (SETTLE_S, STAGES, add_streams, print_steps, ramp, run_step, summary, wait_first_chunks,
                            write_clip)
from vlm import ModelConfig

NODES, CPUS_PER_NODE = 2, 4  # logical CPUs each node advertises (bench/pipeline.py's one node has 4)
NAMESPACE = "tokdyn-bench-scale"
OVERHEAD_TARGET = 1.05  # per-chunk time with 2 replicas / with 1
POOL_TIMEOUT_S = 180.0  # a scaled pool has its replicas up and every stream advancing again
CALL_TIMEOUT_S = 10.0  # an actor's where() call
CONTROL_PROBE_CALLS = 2000  # calls timed for the control-call rate
CAUGHT_UP_LAG_S = 1.0  # after a pool change, every stream back under this lag before a window
COLOCATE_TIMEOUT_S = 30.0  # after serving, for the controller to move streams to their replica's node


def local_cluster() -> Cluster:
    """NODES Ray nodes on this machine, on 127.0.0.1 only, each declaring one GPU (encoder replicas that reserve
    one land one per node; every model still runs on the CPU); this process joins it."""
    os.environ.update(LOCAL_ONLY_ENV)  # inherited by every Ray process the nodes start: see actors/client/cluster.py
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
    replica's node (the controller moves them there), until every stream's lag is under CAUGHT_UP_LAG_S, and
    settle as a new step does.
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
    # streams moved to another node restart from their checkpoints and catch up: not part of the steady state
    poll(lambda: all((client.stream_status(s).lag_s or 0.0) < CAUGHT_UP_LAG_S for s in ids), POOL_TIMEOUT_S)
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


def control_call_rate(client: PipelineClient, ids: list[str]) -> float:
    """Ray actor calls per second this process completes on the streams' source and memory actors (`where`:
    the size of the controller's wiring calls), all submitted at once, then awaited. A lower bound on what the
    controller's round can do: few target actors here, on cores the pipeline is using."""
    handles = [h for sid in ids for role, h in client.stream_handles(sid).items() if role in ("source", "memory")]
    started = time.perf_counter()
    ray.get([handles[i % len(handles)].where.remote() for i in range(CONTROL_PROBE_CALLS)])
    return CONTROL_PROBE_CALLS / (time.perf_counter() - started)


def stream_memory(handles: list[dict]) -> dict:
    """Resident memory of streams' source and memory processes (this machine's /proc): per role, the mean
    private (anonymous) MB, which each more stream adds, and the mean resident MB, which counts the shared
    libraries' pages too (shared by every process of a node). `handles`: per stream {"source", "memory"}."""
    out = {}
    for role in ("source", "memory"):
        rows = [_proc_status(ray.get(h[role].pid.remote(), timeout=CALL_TIMEOUT_S)) for h in handles]
        out[role] = {"private_mb": float(np.mean([r["RssAnon"] for r in rows])) / 1024,
                     "resident_mb": float(np.mean([r["VmRSS"] for r in rows])) / 1024}
    out["stream_private_bytes"] = (out["source"]["private_mb"] + out["memory"]["private_mb"]) * 2 ** 20
    return out


def _proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS, RssAnon, ...)."""
    with open(f"/proc/{pid}/status") as f:
        return {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in f)
                if value.strip().endswith("kB")}


def print_stream_memory(memory: dict) -> None:
    print("a stream's processes: " + ", ".join(
        f"{role} {memory[role]['private_mb']:.0f} MB private ({memory[role]['resident_mb']:.0f} MB resident)"
        for role in ("source", "memory")) + f"; {memory['stream_private_bytes'] / 2 ** 20:.0f} MB private per stream")


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
        calls_per_s = control_call_rate(client, ids)
        processes = stream_memory([client.stream_handles(sid) for sid in ids])
    finally:
        for sid in ids:
            client.remove_stream(sid)
    def mean(replicas: int, key: str) -> float:
        return float(np.mean([s[key] for s in steps if s["replicas"] == replicas]))

    for step in steps:  # the stages a replica's routing can touch (decode is in the source, before it)
        step["after_decode_s"] = step["per_chunk_s"] - step["stage_s"].get("decode", 0.0)
    ratio = mean(2, "per_chunk_s") / mean(1, "per_chunk_s")
    singles = [s["per_chunk_s"] for s in steps if s["replicas"] == 1]
    return {"streams": streams, "window_s": window_s, "first_chunks_s": first_chunks_s, "sides": steps,
            "control_calls_per_s": calls_per_s, "stream_memory": processes,
            "ratio": ratio, "ratio_after_decode": mean(2, "after_decode_s") / mean(1, "after_decode_s"),
            "noise": max(singles) / min(singles),  # the same layout measured again: what a ratio can resolve
            "target": OVERHEAD_TARGET,
            "pass": ratio <= OVERHEAD_TARGET and all(s["sustained"] and s["colocated"] for s in steps)}


def sustained(client: PipelineClient, clip: Path, steps: list[int], window_s: float) -> dict:
    """bench/pipeline.py's step search with 1 encoder replica, then with 2. A search the pipeline drops out of
    (its controller unavailable: Ray restarting it) is recorded as that error, without its steps (ramp returns
    them only at its end)."""
    out = {}
    for replicas in (1, 2):
        try:
            scale_encoders(client, replicas, [])  # the whole pool up before the first stream is placed
            plain, _ = ramp(client, clip, steps, window_s, None)
        except PipelineUnavailable as exc:
            out[replicas] = {"error": str(exc), "max_sustained_streams": None}
            print(f"  {replicas} encoder(s): {exc}", flush=True)
            continue
        out[replicas] = summary(plain)
        print_steps(f"{replicas} encoder(s)", plain)
    return out


@contextlib.contextmanager
def pool_pipeline(autoscale: AutoscaleConfig | None = None) -> Iterator[tuple[PipelineClient, Path, dict]]:
    """A fresh NODES-node cluster running a pipeline of `pool_config` (encoder autoscale as given), and
    bench/pipeline.py's clip: yields (client, clip, {"cluster_start_s", "pipeline_start_s"}). Everything started
    here is stopped on exit."""
    started = time.perf_counter()
    cluster = local_cluster()
    cluster_s = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory(prefix="tokdyn-bench-scale-") as tmp:
            clip = write_clip(Path(tmp))
            config = pool_config(str(Path(tmp) / "checkpoints"))
            if autoscale is not None:
                config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, autoscale=autoscale))
            started = time.perf_counter()
            client = start_pipeline(config)
            try:
                yield client, clip, {"cluster_start_s": round(cluster_s, 1),
                                     "pipeline_start_s": round(time.perf_counter() - started, 1)}
            finally:
                try:
                    client.shutdown()
                except PipelineUnavailable:  # a controller Ray is restarting: the cluster goes down below anyway
                    pass
    finally:
        ray.shutdown()
        cluster.shutdown()


def cluster_part(steps: list[int]) -> dict:
    """(a) and (b) on a fresh 2-node cluster."""
    with pool_pipeline() as (client, clip, startup):
        return {"nodes": NODES, **startup, "overhead": routing_overhead(client, clip, 4, 20.0, (1, 2, 1, 2, 1)),
                "sustained": sustained(client, clip, steps, 15.0)}


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
          f"{OVERHEAD_TARGET}; {overhead['ratio_after_decode']:.3f} after decode; the 1-replica sides differ by "
          f"{overhead['noise']:.3f} among themselves) -> "
          f"{'PASS' if overhead['pass'] else 'FAIL'}" + ("" if all(s["colocated"] for s in overhead["sides"])
                                                        else " (a stream's actors off its replica's node)"))
    print(f"control calls (actor `where`, {CONTROL_PROBE_CALLS} at once from this process): "
          f"{overhead['control_calls_per_s']:.0f}/s")
    print_stream_memory(overhead["stream_memory"])
    one, two = result["sustained"][1], result["sustained"][2]
    print(f"sustained streams: {one['max_sustained_streams']} with 1 encoder replica, "
          f"{two['max_sustained_streams']} with 2 (both nodes share this machine's {os.cpu_count()} cores)")
