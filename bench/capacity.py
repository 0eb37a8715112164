"""The capacity model of bench/scale.py: streams one encoder replica sustains, and how that grows with replicas.

Plain arithmetic on measured figures and named assumptions (no torch, no Ray), so tests can check it and the
README can print it next to its assumptions.

    streams per replica = utilisation / (sample rate x encoder seconds per frame)

On a GPU the seconds per frame are FLOPs per frame / (peak bf16 FLOP/s x assumed model FLOP utilisation).
Replicas add up linearly: each has its own streams, whose sources and memories run on its node, and no frame
crosses to another replica. What does not grow with encoder replicas, and so caps the sum:
  - the node's CPU, which decodes every camera frame (sampling keeps 2 of 30) and runs every memory's update;
  - the node's network: camera bitrate in, every memory's snapshot out to every LLM replica;
  - the node's RAM: every stream runs two Python processes there (source and memory), whose private memory
    (measured) adds up; the shared libraries' pages are counted once per node and left out;
  - each LLM replica's network: it receives every stream's snapshot about once a second (the memory publishes
    on every chunk and re-publishes its newest after REPUBLISH_S idle), however many encoder replicas there are;
and, not a cap on streams but on how fast the cluster is managed: the one controller re-sends every stream's
wiring each round, so past the streams it re-wires in one round's period (from its measured call rate), rounds
(and re-wiring after a failure or a move) stretch in proportion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Assumption:
    """A number the model takes as given: its value, unit, and why that value (source or reasoning)."""

    name: str
    value: float
    unit: str
    basis: str


def vision_flops_per_frame(vision: Any, text_hidden: int) -> float:
    """FLOPs (2 x multiply-adds) for one frame through LLaVA-OneVision's vision path: SigLIP patch embedding,
    every encoder layer (q/k/v/o projections, attention scores and weighted sum, the MLP), the 2-layer
    projector to `text_hidden`. Norms, activations and the 2x2 pooling are left out (elementwise: < 1 %).

    vision: a SiglipVisionConfig (hidden_size, intermediate_size, num_hidden_layers, image_size, patch_size,
    num_channels) without the pooling head (`vision_use_head=False`, as LLaVA-OneVision runs it).
    """
    d, ff, layers = vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    n = (vision.image_size // vision.patch_size) ** 2  # patch tokens per frame: 729 at 384 px / 14 px
    patch_embed = n * vision.num_channels * vision.patch_size ** 2 * d
    per_layer = 4 * n * d * d + 2 * n * n * d + 2 * n * d * ff  # projections, QK^T and AV, MLP in + out
    projector = n * (d * text_hidden + text_hidden * text_hidden)
    return 2.0 * (patch_embed + layers * per_layer + projector)


def streams_per_replica(seconds_per_frame: float, rate_hz: float, utilisation: float) -> float:
    """Streams sampled at `rate_hz` one encoder keeps up with when busy `utilisation` of the time."""
    if seconds_per_frame <= 0 or rate_hz <= 0 or not 0 < utilisation <= 1:
        raise ValueError(f"expected seconds_per_frame > 0, rate_hz > 0, 0 < utilisation <= 1, got "
                         f"{seconds_per_frame}, {rate_hz}, {utilisation}")
    return utilisation / (rate_hz * seconds_per_frame)


def publishes_per_s(chunk_span_s: float, republish_s: float) -> float:
    """Snapshots one memory sends each LLM replica per second: one per chunk, plus the idle re-publishes that
    fall between two chunks (the memory re-sends its newest once `republish_s` has passed without one)."""
    return math.ceil(chunk_span_s / republish_s) / chunk_span_s


def gpu_model(flops: float, snapshot_bytes: int, compress_s_per_chunk: float, rate_hz: float, chunk_span_s: float,
              republish_s: float, a: dict[str, Assumption], controller_cap: float | None = None,
              stream_ram_bytes: float | None = None, decode_fraction: float = 1.0) -> dict[str, Any]:
    """Streams per GPU encoder replica and per cluster, with the limit that binds at each replica count.

    flops: per frame (vision_flops_per_frame); snapshot_bytes: one snapshot message on the wire;
    compress_s_per_chunk: CPU seconds of one memory update (with its checkpoint bytes and snapshot);
    `a`: the assumptions by name (GPU_ASSUMPTIONS); controller_cap: streams the one controller re-wires in one
    wiring round's period (None: not measured). It caps no stream (the data plane does not wait for it), but
    past it the round stretches in proportion, and so does every re-wiring after a failure or a move.
    stream_ram_bytes: private memory of one stream's source and memory processes (None: not measured, no limit).
    decode_fraction: a camera's decoding CPU as a share of decoding every frame (skip modes, stream/decode.py;
        bench/ingest.py measures it per camera set-up; 1.0 = full decoding).
    """
    u = a["utilisation"].value
    # CPU seconds per second one stream costs its node: every camera frame decoded, one update per chunk.
    if not 0 < decode_fraction <= 1:
        raise ValueError(f"decode_fraction: expected in (0, 1], got {decode_fraction}")
    cpu_core_s_per_stream = (a["decode_s_per_frame"].value * a["camera_fps"].value * decode_fraction
                             + compress_s_per_chunk / chunk_span_s)
    seconds_per_frame = flops / (a["peak_bf16_flops"].value * a["mfu"].value)
    encoder = streams_per_replica(seconds_per_frame, rate_hz, u)
    gpus = a["gpus_per_node"].value
    cpu_per_replica = a["cpu_cores_per_node"].value * u / cpu_core_s_per_stream / gpus
    nic = a["nic_bits_per_s"].value / 8 * u  # usable bytes/s of one node's service network
    llms = a["llm_replicas"].value
    snapshot_rate = snapshot_bytes * publishes_per_s(chunk_span_s, republish_s)  # bytes/s per stream per LLM
    per_stream_node_bytes = a["camera_bits_per_s"].value / 8 + llms * snapshot_rate  # in + out, one NIC
    net_per_replica = nic / per_stream_node_bytes / gpus
    limits = {"encoder GPU": encoder, "node CPU (decode + memory updates)": cpu_per_replica,
              "node network (camera in + snapshots out)": net_per_replica}
    ram_per_replica = None
    if stream_ram_bytes is not None:
        ram_per_replica = a["node_ram_bytes"].value * u / stream_ram_bytes / gpus
        limits["node RAM (two processes per stream)"] = ram_per_replica
    bound = min(limits, key=limits.get)
    per_replica = limits[bound]
    cap = nic / snapshot_rate  # streams whose snapshots fill one LLM replica's network
    growth = []
    for replicas in (1, 8, 64, 256, 1024):
        streams = math.floor(min(replicas * per_replica, cap))
        growth.append({"replicas": replicas, "streams": streams,
                       "limit": bound if replicas * per_replica <= cap else "LLM replica network (snapshot fan-out)",
                       "controller_round_periods": None if controller_cap is None else streams / controller_cap})
    return {
        "seconds_per_frame": seconds_per_frame, "frames_per_s": 1 / seconds_per_frame,
        "streams_per_replica": {"encoder": encoder, "node_cpu": cpu_per_replica, "node_network": net_per_replica,
                                "node_ram": ram_per_replica, "effective": per_replica, "bound_by": bound},
        "cpu_core_s_per_stream_s": cpu_core_s_per_stream, "snapshot_bytes_per_s_per_stream_per_llm": snapshot_rate,
        "linear_until_replicas": math.floor(cap / per_replica), "fanout_cap_streams": math.floor(cap),
        "controller_streams_per_round": None if controller_cap is None else math.floor(controller_cap),
        "growth": growth, "assumptions": [asdict(x) for x in a.values()],
    }


# Named GPU-side assumptions; every figure the GPU model uses that was not measured here.
GPU_ASSUMPTIONS = {x.name: x for x in (
    Assumption("peak_bf16_flops", 989e12, "FLOP/s", "H100 / H200 SXM dense bf16 tensor-core peak (NVIDIA data "
               "sheet, no sparsity); the H200 has the H100's compute and more memory"),
    Assumption("mfu", 0.4, "fraction", "sustained share of peak for a ViT forward in bf16 at >= 8 frames a batch "
               "(5,800+ tokens, SDPA attention); not measured: no GPU was lent to this work"),
    Assumption("utilisation", 0.7, "fraction", "busy share kept for every resource, leaving headroom for batching "
               "waits and bursts so lag stays under 2 s"),
    Assumption("gpus_per_node", 8, "GPUs", "an HGX H100/H200 node"),
    Assumption("cpu_cores_per_node", 112, "cores", "2 x 56-core Xeons, usual in HGX nodes"),
    Assumption("node_ram_bytes", 2e12, "B", "2 TB of DDR5, the usual memory of an HGX H100/H200 node"),
    Assumption("nic_bits_per_s", 25e9, "bit/s", "the node's Ethernet that ZeroMQ traffic uses (not InfiniBand)"),
    Assumption("camera_bits_per_s", 4e6, "bit/s", "one 1280x720 H.264 camera at 30 fps"),
    Assumption("camera_fps", 30, "frames/s", "the camera's own rate: the source decodes every frame to sample 2"),
    Assumption("decode_s_per_frame", 2.25e-3, "s", "bench/ingest.py here (README, 2026-12-01): 1280x720 H.264, "
               "decode only, one EPYC core; a server core is assumed no slower"),
    Assumption("llm_replicas", 2, "replicas", "LLM replicas each memory publishes to (sized by question rate)"),
)}


def measured_assumptions(peak_flops: float, vision_flops_per_s: float, card: str,
                         base: dict[str, Assumption] | None = None) -> dict[str, Assumption]:
    """`base` (default GPU_ASSUMPTIONS) with its two GPU figures replaced by what bench/gpu.py measured on `card`:
    the peak by the FLOP/s a large bf16 matrix product reached, the utilisation of it (mfu) by the vision path's
    FLOP/s over that peak. Their product is then the measured vision FLOP/s, so seconds per frame is measured."""
    a = dict(GPU_ASSUMPTIONS if base is None else base)
    a["peak_bf16_flops"] = Assumption("peak_bf16_flops", peak_flops, "FLOP/s",
                                      f"measured by bench/gpu.py: the best bf16 matrix product on {card}")
    a["mfu"] = Assumption("mfu", vision_flops_per_s / peak_flops, "fraction",
                          f"measured by bench/gpu.py: the vision path's FLOP/s over that peak on {card}")
    return a


def capacity_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """bench/gpu.py's JSON (a dict) -> gpu_model on its measurements: the vision path's best frames/s (FLOPs per
    frame x frames/s), the matmul peak, the memory actor's CPU ms per chunk and a snapshot's bytes; the other
    figures stay GPU_ASSUMPTIONS'. Raises KeyError / TypeError when the report lacks one of them."""
    vision, peak, memory = report["vision"], report["matmul_peak"]["flops_per_s"], report["compressor"]
    a = measured_assumptions(peak, vision["best"]["flops_per_s"], report["device"]["name"])
    model = gpu_model(vision["flops_per_frame"], memory["snapshot_bytes"], memory["memory_actor_cpu_ms"] / 1000,
                      memory["rate_hz"], memory["chunk_span_s"], memory["republish_s"], a)
    return {"device": report["device"]["name"], "batch": vision["best"]["batch"], **model}


def main() -> None:
    """`python bench/capacity.py out/gpu.json`: streams per GPU replica from a bench/gpu.py run's figures."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("report", type=Path, help="the JSON bench/gpu.py wrote (--json)")
    model = capacity_from_report(json.loads(parser.parse_args().report.read_text()))
    per = model["streams_per_replica"]
    print(f"{model['device']}: {1000 * model['seconds_per_frame']:.2f} ms/frame at batch {model['batch']} -> "
          f"{per['encoder']:.0f} streams per replica by the encoder, {per['node_cpu']:.0f} by the node CPU, "
          f"{per['node_network']:.0f} by the node network: {per['effective']:.0f} ({per['bound_by']})")


if __name__ == "__main__":
    main()
