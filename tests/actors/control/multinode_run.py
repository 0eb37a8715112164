"""Run by test_multinode.py in its own process (one Ray cluster per process): two Ray nodes on this machine,
the encoder pinned to node B, the sources, memories and LLM to node A; sockets bind the node IP (tcp).

Prints one JSON line with what the test checks.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from actors.config import EncoderConfig, LLMConfig, PipelineConfig, RayConfig, TransportConfig
from actors.client.pipeline import start_pipeline
from vlm import ModelConfig
from tests.helpers import wait_for, write_video


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"node_a": 1},
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources={"node_b": 1})
    try:
        ray.init(address=cluster.address, namespace="tokdyn", log_to_driver=False)
        with tempfile.TemporaryDirectory() as tmp:
            video = write_video(Path(tmp) / "v.mp4", seconds=4.0)
            config = PipelineConfig(
                ray=RayConfig(address="auto"), transport=TransportConfig(bind="node"),
                model=ModelConfig(path="tiny", max_new_tokens=4),
                encoder=EncoderConfig(resources={"node_b": 0.01}), llm=LLMConfig(resources={"node_a": 0.01}),
                stream_resources={"node_a": 0.01}, checkpoint_dir=tmp)
            client = start_pipeline(config)
            try:
                client.add_stream({"stream_id": "far", "url": str(video), "live": False})
                status = wait_for(lambda: (s := client.stream_status("far")).chunks_compressed == 2 and s, 240,
                                  "2 chunks across nodes")
                handles = client.stream_handles("far")
                encoder = client.encoder()
                llm = client.llm()
                where = {name: ray.get(h.where.remote()) for name, h in
                         (("source", handles["source"]), ("memory", handles["memory"]), ("encoder", encoder),
                          ("llm", llm))}
                done = list(client.ask("far", "What moves?", max_tokens=4))[-1]
                print(json.dumps({
                    "nodes": len({w["node_id"] for w in where.values()}),
                    "encoder_node_differs": where["encoder"]["node_id"] != where["source"]["node_id"],
                    "memory_endpoint": ray.get(handles["memory"].endpoints.remote())["tokens"],
                    "frames_endpoint": ray.get(encoder.info.remote())["frames_endpoint"],
                    "ip": where["encoder"]["ip"], "tokens_seen": status.tokens_seen,
                    "span": done["span"], "transport_s": status.stage_s.get("transport"),
                }), flush=True)
            finally:
                client.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
