"""Run by test_pools.py in its own process (one Ray cluster per process): a 3-node cluster on this machine
(a head without GPUs, nodes A and B with `num_gpus=1` each; the models run on CPU), `encoder.replicas: auto`
and two LLM replicas; six live streams. Then, in order: both LLM replicas answer concurrent questions; node B
is killed (its streams move to A and keep advancing, restored from their checkpoints); node C joins (B's
replica, restarting, lands there and takes half the streams back); the controller's process is killed (the
streams go on; a restarted controller lists and manages them all).

Prints one JSON line per phase ({"phase": ..., ...}) with what the test checks and the times measured.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any

import ray
from ray.cluster_utils import Cluster

from actors.client.cluster import local_only
from actors.config import EncoderConfig, LLMConfig, PipelineConfig, RayConfig, TransportConfig
from actors.control.controller import CONTROLLER_NAME
from actors.errors import PipelineUnavailable
from actors.client.pipeline import start_pipeline
from tests.helpers import wait_for
from vlm import ModelConfig

STREAMS = [f"cam{i}" for i in range(6)]
LONG_S = 300.0  # actor start-ups on a busy 2-core machine
NODE_ARGS = {"num_cpus": 2, "num_gpus": 1}


def report(phase: str, **fields: Any) -> None:
    print(json.dumps({"phase": phase, **fields}), flush=True)


def where(handle: Any) -> str:
    return ray.get(handle.where.remote(), timeout=60)["node_id"]


def tokens_seen(client: Any, refresh: bool = True) -> dict[str, int]:
    """Stream id -> tokens seen, straight from each memory actor: the controller's current handles (`refresh`),
    or the last known ones (while the controller is down) (-1: the actor does not answer)."""
    out = {}
    for sid in list(HANDLES):
        if refresh:
            try:
                HANDLES[sid] = client.stream_handles(sid)
            except PipelineUnavailable:
                pass  # the controller is busy: the last known handles
        handles = HANDLES[sid]
        try:
            out[sid] = ray.get(handles["memory"].status.remote(), timeout=10).tokens_seen
        except Exception:  # restarting: not advancing now
            out[sid] = -1
    return out


HANDLES: dict[str, dict[str, Any]] = {}


def placement(client: Any) -> dict[str, Any]:
    """Per stream: its replica, the replica's node and the nodes of its source and memory."""
    replicas = {r.name: r.node_id for r in client.replicas() if r.role == "encoder"}
    out = {}
    for sid, replica in client.assignments().items():
        HANDLES[sid] = client.stream_handles(sid)
        out[sid] = {"replica": replica, "replica_node": replicas.get(replica),
                    "source_node": where(HANDLES[sid]["source"]), "memory_node": where(HANDLES[sid]["memory"])}
    return out


def colocated(client: Any) -> dict[str, Any] | None:
    try:
        p = placement(client)
    except Exception as exc:
        print("placement:", repr(exc), file=sys.stderr, flush=True)
        return None
    print("placement:", json.dumps(p), file=sys.stderr, flush=True)
    ok = all(v["replica_node"] is not None and v["replica_node"] == v["source_node"] == v["memory_node"]
             for v in p.values())
    return p if ok and len(p) == len(STREAMS) else None


def advanced_past(client: Any, before: dict[str, int], refresh: bool = True) -> bool:
    now = tokens_seen(client, refresh)
    return all(now[sid] > before[sid] for sid in before)


def main() -> None:
    local_only()  # every node of the test cluster on 127.0.0.1
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(**NODE_ARGS, resources={"node_a": 1})
    node_b = cluster.add_node(**NODE_ARGS, resources={"node_b": 1})
    ids = {}
    try:
        ray.init(address=cluster.address, namespace="tokdyn", log_to_driver=False)
        ids = {_label(n): n["NodeID"] for n in ray.nodes() if n["Alive"]}
        with tempfile.TemporaryDirectory() as tmp:
            config = PipelineConfig(
                ray=RayConfig(address="auto"), transport=TransportConfig(bind="node"),
                model=ModelConfig(path="tiny", max_new_tokens=4, device="cpu"),
                encoder=EncoderConfig(replicas="auto", num_gpus=1), llm=LLMConfig(replicas=2),
                checkpoint_dir=tmp)
            client = start_pipeline(config)
            try:
                run(cluster, client, ids, node_b)
            finally:
                client.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


def run(cluster: Cluster, client: Any, ids: dict[str, str], node_b: Any) -> None:
    encoders = [r for r in client.replicas() if r.role == "encoder"]
    report("start", encoder_nodes=sorted(r.node_id for r in encoders), gpu_nodes=sorted([ids["A"], ids["B"]]),
           llms=len([r for r in client.replicas() if r.role == "llm"]),
           controller_on_head=where(client.controller) == ids["head"])

    for sid in STREAMS:
        client.add_stream({"stream_id": sid, "url": "synthetic://?width=64&height=48&fps=4", "live": True,
                           "sample_rate_hz": 2.0, "frames_per_chunk": 2})
    spread = wait_for(lambda: colocated(client), LONG_S, "six streams co-located with their replicas")
    per_replica: dict[str, int] = {}
    for v in spread.values():
        per_replica[v["replica"]] = per_replica.get(v["replica"], 0) + 1
    wait_for(lambda: all(n > 0 for n in tokens_seen(client).values()), LONG_S, "every stream compressing")
    report("spread", per_replica=per_replica, colocated=True)

    # Two LLM replicas share concurrent questions.
    llms = {r.name for r in client.replicas() if r.role == "llm"}
    wait_for(lambda: all(_llm_stats(client, n)["streams"] == len(STREAMS) for n in llms), LONG_S,
             "both LLM replicas holding every stream's snapshot")
    before = {n: _llm_stats(client, n)["answers"] for n in llms}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        finals = list(pool.map(lambda i: list(client.ask(STREAMS[i % 6], "What moves?", max_tokens=3))[-1],
                               range(16)))
    answered = {n: _llm_stats(client, n)["answers"] - before[n] for n in llms}
    report("llm_share", answered=answered, ok=sum(f["type"] == "done" for f in finals))

    # Node B dies: its streams go to A's replica and keep advancing from their checkpoints.
    on_b = sorted(sid for sid, v in placement(client).items() if v["replica_node"] == ids["B"])
    seen = tokens_seen(client)
    killed_at, killed_wall = time.monotonic(), time.time()
    cluster.remove_node(node_b)
    wait_for(lambda: advanced_past(client, seen), LONG_S, "every stream advancing after node B died")
    advancing_s = time.monotonic() - killed_at
    moved = wait_for(lambda: colocated(client), LONG_S, "streams co-located again on the survivors")
    statuses = {sid: client.stream_status(sid) for sid in STREAMS}
    events = [e for e in client.scale_events() if e.at >= killed_wall]
    report("node_lost", on_b=on_b, advancing_s=advancing_s, colocated_s=time.monotonic() - killed_at,
           # when the controller called B's replica lost (its streams re-assigned) and restarted the last of them
           reassigned_s=min((e.at - killed_wall for e in events if e.action == "reassign"), default=None),
           restarted_s=max((e.at - killed_wall for e in events if e.action == "move"), default=None),
           refused={sid: statuses[sid].bad_messages for sid in on_b},  # chunks sent again from media time 0
           replicas_used=sorted({v["replica_node"] for v in moved.values()}),
           restored={sid: statuses[sid].restored for sid in on_b},
           kept={sid: statuses[sid].tokens_seen >= seen[sid] for sid in STREAMS})

    # Node C joins: B's replica (restarting, waiting for a GPU) starts there and takes streams back.
    joined_at = time.monotonic()
    cluster.add_node(**NODE_ARGS, resources={"node_c": 1})
    ids["C"] = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("node_c"))
    balanced = wait_for(lambda: (p := colocated(client)) and len({v["replica"] for v in p.values()}) == 2 and p,
                        LONG_S, "streams rebalanced onto the new node")
    counts: dict[str, int] = {}
    for v in balanced.values():
        counts[v["replica_node"]] = counts.get(v["replica_node"], 0) + 1
    report("node_added", rebalance_s=time.monotonic() - joined_at, per_node=counts, new_node=ids["C"])

    # The controller's process dies: streams go on; the restarted controller manages them all.
    controller = ray.get_actor(CONTROLLER_NAME, namespace="tokdyn")
    old_pid = ray.get(controller.pid.remote())
    seen = tokens_seen(client)
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    listed = wait_for(lambda: _listed(client), LONG_S, "the restarted controller listing the streams")
    back_s = time.monotonic() - killed_at
    # every stream advanced meanwhile, on the actors it had before (none was started again)
    advanced = bool(wait_for(lambda: advanced_past(client, seen, refresh=False), LONG_S, "streams advancing"))
    client.remove_stream("cam5")
    client.add_stream({"stream_id": "cam6", "url": "synthetic://?width=64&height=48&fps=4", "live": True,
                       "sample_rate_hz": 2.0, "frames_per_chunk": 2})
    report("controller_restarted", new_pid=ray.get(controller.pid.remote()) != old_pid, listed=listed,
           management_s=back_s, advanced=advanced, after=sorted(s.stream_id for s in client.list_streams()))


def _label(node: dict[str, Any]) -> str:
    for label in ("A", "B", "C"):
        if node["Resources"].get(f"node_{label.lower()}"):
            return label
    return "head"


def _llm_stats(client: Any, name: str) -> dict[str, Any]:
    return ray.get(ray.get_actor(name, namespace="tokdyn").stats.remote(), timeout=30)


def _listed(client: Any) -> list[str] | None:
    try:
        return sorted(s.stream_id for s in client.list_streams()) or None
    except PipelineUnavailable:
        return None


if __name__ == "__main__":
    sys.exit(main())
