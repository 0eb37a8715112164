"""Benchmark of the Token Dynamics compressor: update cost vs stream length, cost vs a plain matmul, state
size per stream-hour, and reconstruction fidelity of every method on real clips.

    python bench/compressor.py [--quick] [--json PATH] [--threads N]

Token conventions: every clip is encoded at 196 tokens per frame (14x14 grid at 224x224, 16x16 patches), the
pooled LLaVA-OneVision convention; compression ratios are against 196 tokens/frame.

Update-cost tokens: a stream whose content keeps changing (bench/long_stream.py: real clips and scenes in
5-minute episodes, each in its own view) as 16x16 RGB pixel patches (768 values) lifted to D=896 by a fixed
semi-orthogonal matrix (inner products, hence cosines, unchanged), 4 frames x 196 tokens per chunk, K=32.
The history lengths are reached by real updates on that content (nothing replayed, nothing extrapolated).

Long stream: see bench/long_stream.py (2 hours of media at 1 frame/s in the full run, 6 minutes in --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from compressor.baselines import reduce_clip  # noqa: E402
from compressor.config import ADAPTIVE_RULES, CompressorConfig  # noqa: E402
from compressor.metrics import fidelity, fidelity_keymap, token_counts  # noqa: E402
from testkit.token_sources import TinySiglip, lift, pixel_patch_tokens  # noqa: E402
from compressor.streaming import StreamingTokenDynamics  # noqa: E402
from stream.samples import sample_path  # noqa: E402
from bench.common import BenchRun  # noqa: E402
from bench.long_stream import Content, bench_long_stream, long_stream_lines, tokens_of  # noqa: E402

FRAMES_PER_CHUNK = 4
TOKENS_PER_FRAME = 196
D_LLM = 896
K = 32
CLIP_METHODS = ("offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")


def decode(path: Path, rate_hz: float, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` with PyAV, keeping the first frame at or after every 1/rate_hz seconds of media time.

    Returns ``[T, H, W, 3]`` uint8 RGB and ``[T]`` float64 timestamps (seconds).
    """
    frames, times, next_t = [], [], 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else len(times) / rate_hz
            if t + 1e-9 < next_t:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
            next_t = t + 1.0 / rate_hz
            if len(frames) >= max_frames:
                break
    return np.stack(frames), np.asarray(times)


def bench_updates(checkpoints: list[int], window: int) -> dict:
    """Per-chunk update time after each number of chunks in ``checkpoints``, the assignment matmul timed in
    the same run, and the state size after one stream-hour.

    One stream is advanced by real updates; at every checkpoint a copy of its state is kept (``from_bytes``
    of ``to_bytes``: restore-then-continue equals uninterrupted, as the tests check). Then the copies are
    updated round-robin, each update followed by one matmul of the assignment shape on the same chunk, so all
    history lengths and the matmul are measured under the same machine load (this machine is shared).
    Times are thread CPU time (``time.thread_time``: with one torch thread all compute runs on the calling
    thread, so other processes do not count) and wall time; figures are medians over ``window`` rounds.
    """
    content = Content(episode_s=300)

    def chunk_at(i: int) -> torch.Tensor:  # chunk i of the changing stream, [4, 14, 14, 896]
        return lift(tokens_of(content, i * FRAMES_PER_CHUNK, FRAMES_PER_CHUNK), D_LLM)

    # 1 fps, one hour: reached by real updates in a full run; --quick stops at its last checkpoint and scales
    # the state's bytes to an hour (marked "extrapolated"): fresh content costs a lift per chunk
    hour_chunks = 3600 // FRAMES_PER_CHUNK if checkpoints[-1] >= 3600 // FRAMES_PER_CHUNK else checkpoints[-1]
    stream = StreamingTokenDynamics(CompressorConfig(budget=K))
    copies: dict[int, StreamingTokenDynamics] = {}
    hour: dict = {}
    start = time.perf_counter()
    for done in range(max(checkpoints[-1], hour_chunks)):
        stream.update(chunk_at(done), done * FRAMES_PER_CHUNK + np.arange(FRAMES_PER_CHUNK, dtype=float))
        if done + 1 in checkpoints:
            copies[done + 1] = StreamingTokenDynamics.from_bytes(stream.to_bytes())
        if done + 1 == hour_chunks:
            scale = 3600 / stream.frames_seen
            hour.update(bytes=len(stream.to_bytes()) * scale, live_bytes=stream.state_nbytes() * scale,
                        frames=stream.frames_seen, extrapolated=scale != 1)
    advance_s = time.perf_counter() - start
    centroids = torch.randn(D_LLM, K)
    samples = {target: [] for target in checkpoints}                           # rows of (cpu, wall, mm cpu, mm wall)
    counters = {target: (c.new_clusters, c.merges) for target, c in copies.items()}
    for r in range(window):
        for target, compressor in copies.items():
            done = target + r
            chunk = chunk_at(done)
            ts = done * FRAMES_PER_CHUNK + np.arange(FRAMES_PER_CHUNK, dtype=np.float64)
            cpu, wall = time.thread_time(), time.perf_counter()
            compressor.update(chunk, ts)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            mm_cpu, mm_wall = time.thread_time(), time.perf_counter()
            chunk.reshape(-1, D_LLM) @ centroids
            samples[target].append((cpu, wall, time.thread_time() - mm_cpu, time.perf_counter() - mm_wall))
    per_checkpoint = {}
    for target, rows in samples.items():
        med = np.median(np.array(rows), axis=0)
        seeded, merged = counters[target]
        per_checkpoint[target] = {
            "cpu_ms": 1e3 * med[0], "wall_ms": 1e3 * med[1],
            "p90_cpu_ms": 1e3 * float(np.percentile(np.array(rows)[:, 0], 90)),
            "matmul_cpu_ms": 1e3 * med[2], "matmul_wall_ms": 1e3 * med[3], "update_over_matmul_cpu": med[0] / med[2],
            "new_clusters_per_chunk": (copies[target].new_clusters - seeded) / window,
            "merges_per_chunk": (copies[target].merges - merged) / window,
        }
    first, last = per_checkpoint[checkpoints[0]], per_checkpoint[checkpoints[-1]]
    all_cpu = np.array([row[0] for rows in samples.values() for row in rows])
    all_mm = np.array([row[2] for rows in samples.values() for row in rows])
    return {
        "tokens": "changing content (clips + scenes, 5-min episodes) as pixel patches 16x16 at 224x224 lifted to D=896",
        "chunk_shape": [FRAMES_PER_CHUNK, 14, 14, D_LLM], "k": K, "window_updates_timed": window,
        "history": {str(k): v for k, v in per_checkpoint.items()},
        "advance_updates": stream.chunks, "advance_s": advance_s,
        "advance_frames_per_s_wall": stream.frames_seen / advance_s,
        "last_over_first_cpu": last["cpu_ms"] / first["cpu_ms"],
        "last_over_first_wall": last["wall_ms"] / first["wall_ms"],
        "matmul_shape": [[FRAMES_PER_CHUNK * TOKENS_PER_FRAME, D_LLM], [D_LLM, K]],
        "matmul_cpu_ms": 1e3 * float(np.median(all_mm)),
        "update_over_matmul_cpu": float(np.median(all_cpu) / np.median(all_mm)),
        "frames_per_s_cpu": FRAMES_PER_CHUNK / float(np.median(all_cpu)),
        "frames_per_s_wall": FRAMES_PER_CHUNK / (last["wall_ms"] / 1e3),
        "new_clusters_total": stream.new_clusters, "merges_total": stream.merges,
        "state_per_stream_hour": {**hour, "mb": hour["bytes"] / 1e6,
                                  "full_fp16_gb": 3600 * TOKENS_PER_FRAME * D_LLM * 2 / 1e9},
    }


def bench_seeding() -> dict:
    """Cost of the chunks that do seed new clusters. The history benchmark runs on a fixed camera where, once
    the first chunk is clustered, seeding rarely pays off; here a fresh stream runs through bigbuckbunny.mp4
    (animation with cuts, all 25 fps frames), where new content keeps arriving."""
    frames, _ = decode(sample_path("bigbuckbunny"), rate_hz=25.0, max_frames=400)
    tokens = lift(pixel_patch_tokens(frames), D_LLM)
    compressor = StreamingTokenDynamics(CompressorConfig(budget=K))
    centroids = torch.randn(D_LLM, K)
    seeding, plain, matmul = [], [], []
    for i in range(0, tokens.shape[0] - 3, FRAMES_PER_CHUNK):
        chunk = tokens[i:i + FRAMES_PER_CHUNK].contiguous()
        before, start = compressor.new_clusters, time.thread_time()
        compressor.update(chunk, np.arange(i, i + FRAMES_PER_CHUNK) / 25.0)
        elapsed = time.thread_time() - start
        if i:  # the first chunk runs the offline k-means
            (seeding if compressor.new_clusters > before else plain).append(elapsed)
        start = time.thread_time()
        chunk.reshape(-1, D_LLM) @ centroids
        matmul.append(time.thread_time() - start)
    mm = statistics.median(matmul)
    seed_ms = 1e3 * statistics.median(seeding) if seeding else None
    return {
        "chunks": len(seeding) + len(plain), "seeding_chunks": len(seeding),
        "new_clusters": compressor.new_clusters, "merges": compressor.merges,
        "seeding_cpu_ms": seed_ms, "plain_cpu_ms": 1e3 * statistics.median(plain) if plain else None,
        "matmul_cpu_ms": 1e3 * mm,
        "seeding_over_matmul": seed_ms / (1e3 * mm) if seed_ms else None,
    }


def streaming_fidelity(tokens: torch.Tensor, times: np.ndarray, config: CompressorConfig,
                       timings: list[float] | None = None) -> tuple[float, int]:
    """Stream the clip in chunks of 4 frames; fidelity of every token through the final key map and base.
    ``timings``, when given, receives each update's wall seconds."""
    compressor = StreamingTokenDynamics(config)
    for i in range(0, tokens.shape[0], FRAMES_PER_CHUNK):
        start = time.perf_counter()
        compressor.update(tokens[i:i + FRAMES_PER_CHUNK], times[i:i + FRAMES_PER_CHUNK])
        if timings is not None:
            timings.append(time.perf_counter() - start)
    base = torch.from_numpy(compressor.snapshot().base.copy())
    return fidelity_keymap(tokens, base, compressor.key_map()), base.shape[0]


def bench_fidelity(clips: dict[str, tuple[float, int]], budgets: list[int]) -> list[dict]:
    """Fidelity of every method at every budget, on every clip, with both token sources."""
    siglip = TinySiglip()
    rows = []
    for clip, (rate, max_frames) in clips.items():
        frames, times = decode(sample_path(clip), rate, max_frames)
        sources = {"pixel-patch-768": pixel_patch_tokens(frames), "tiny-siglip-64": siglip(frames)}
        for source, tokens in sources.items():
            for budget in budgets:
                config = CompressorConfig(budget=budget)
                counts = token_counts(frames.shape[0], budget)
                row = {"clip": clip, "source": source, "frames": int(frames.shape[0]), "budget": budget,
                       "tokens_in_196": counts.tokens_in, "compression_ratio_196": counts.compression_ratio}
                start = time.perf_counter()
                row["token_dynamics"], row["k_streaming"] = streaming_fidelity(tokens, times, config)
                row["time_s_token_dynamics"] = time.perf_counter() - start
                for method in CLIP_METHODS:
                    start = time.perf_counter()
                    row[method] = fidelity(tokens, reduce_clip(method, tokens, config))
                    row[f"time_s_{method}"] = time.perf_counter() - start
                row["streaming_over_offline"] = row["token_dynamics"] / row["offline_token_dynamics"]
                baselines = [row[m] for m in ("uniform", "pooling", "dycoke", "tome")]
                row["best_baseline"] = max(baselines)
                row["td_beats_baselines"] = row["token_dynamics"] > row["best_baseline"]
                rows.append(row)
    return rows


def bench_adaptive(rate_hz: float, max_frames: int) -> list[dict]:
    """Adaptive K in [12, 32] on vtest with tiny-SigLIP tokens: offline vs streaming per first-chunk rule, and
    what the streaming first chunk costs (elbow and silhouette fit every K in the range; merge_cost fits
    K = 32 once and merges the similar clusters, as every later chunk does). Offline has no merge step, so its
    merge_cost row is the elbow rule's fit."""
    frames, times = decode(sample_path("vtest"), rate_hz, max_frames)
    tokens = TinySiglip()(frames)
    rows = []
    for rule in ADAPTIVE_RULES:
        config = CompressorConfig(budget=32, adaptive=True, k_min=12, k_max=32, adaptive_rule=rule)
        offline = reduce_clip("offline_token_dynamics", tokens, config)
        timings: list[float] = []
        stream_fid, stream_k = streaming_fidelity(tokens, times, config, timings)
        rows.append({"rule": rule, "frames": int(frames.shape[0]), "offline_k": int(offline.tokens.shape[0]),
                     "offline_fidelity": fidelity(tokens, offline), "streaming_k": stream_k,
                     "streaming_fidelity": stream_fid, "first_chunk_ms": timings[0] * 1000,
                     "later_chunk_ms": float(np.median(timings[1:])) * 1000 if len(timings) > 1 else None})
    return rows


def print_report(result: dict) -> None:
    up = result["updates"]
    print(f"\nUpdate cost ({up['tokens']}; chunk {up['chunk_shape']}, K={up['k']}, torch threads "
          f"{result['torch_threads']}; medians of {up['window_updates_timed']} updates per row)")
    print(f"histories reached by {up['advance_updates']} real updates ({up['advance_frames_per_s_wall']:.0f} frames/s "
          f"wall incl. state copies); rows timed round-robin under the same load")
    print(f"{'history (chunks)':>17} {'cpu ms':>8} {'wall ms':>8} {'matmul cpu ms':>13} {'ratio':>6} "
          f"{'new/chunk':>9} {'merges/chunk':>12}")
    for history, row in up["history"].items():
        print(f"{history:>17} {row['cpu_ms']:>8.3f} {row['wall_ms']:>8.3f} {row['matmul_cpu_ms']:>13.3f} "
              f"{row['update_over_matmul_cpu']:>6.2f} {row['new_clusters_per_chunk']:>9.2f} {row['merges_per_chunk']:>12.2f}")
    hour = up["state_per_stream_hour"]
    seed = up["seeding"]
    if seed["seeding_chunks"]:
        # every chunk may seed (short half-life on changing content): then there are no other chunks to show
        plain = f"{seed['plain_cpu_ms']:.3f} ms" if seed["plain_cpu_ms"] is not None else "none"
        print(f"chunks that seed new clusters (bigbuckbunny, {seed['seeding_chunks']} of {seed['chunks']} chunks): "
              f"{seed['seeding_cpu_ms']:.3f} ms cpu = {seed['seeding_over_matmul']:.2f}x matmul "
              f"({seed['matmul_cpu_ms']:.3f} ms); other chunks {plain}")
    print(f"state after one stream-hour at 1 fps (3600 frames x 196 tokens, K=32): {hour['mb']:.3f} MB serialised "
          f"(full fp16 tokens would be {hour['full_fp16_gb']:.2f} GB)")
    methods = ("token_dynamics",) + CLIP_METHODS
    print("\nReconstruction fidelity (mean cosine of every token with its reconstruction / nearest kept token)")
    print(f"{'clip':>13} {'source':>16} {'T':>4} {'B':>3} " + " ".join(f"{m[:12]:>12}" for m in methods)
          + "  stream/off")
    for row in result["fidelity"]:
        print(f"{row['clip']:>13} {row['source']:>16} {row['frames']:>4} {row['budget']:>3} "
              + " ".join(f"{row[m]:>12.4f}" for m in methods) + f"  {row['streaming_over_offline']:>10.4f}")
    print("\nAdaptive K in [12, 32] (vtest, tiny-siglip-64): rule, offline K / fidelity, streaming K / fidelity")
    for row in result["adaptive"]:
        later = f"{row['later_chunk_ms']:.1f}" if row["later_chunk_ms"] is not None else "-"
        print(f"  {row['rule']:>10}: offline K={row['offline_k']:>2} {row['offline_fidelity']:.4f}; "
              f"streaming K={row['streaming_k']:>2} {row['streaming_fidelity']:.4f}; first chunk "
              f"{row['first_chunk_ms']:.1f} ms, later chunks {later} ms (median)")
    ls = result["long_stream"]
    print(f"\nLong stream ({ls['media_s'] / 3600:.2f} h of media at 1 frame/s, episodes of {ls['episode_s']} s from "
          f"{', '.join(ls['sources'])}; K={ls['K']}, half-life {ls['half_life_s']:.0f} s, segments of "
          f"{ls['segment_s']:.0f} s; {ls['stream_wall_s']:.0f} s to stream)")
    print("\n".join(long_stream_lines(ls)))
    print("\n" + "\n".join(result["summary"]))


def summarise(result: dict) -> list[str]:
    """One line per target: measured figure, target, met or missed."""
    up, rows = result["updates"], result["fidelity"]
    ratios = [r["streaming_over_offline"] for r in rows]
    at32 = [r for r in rows if r["budget"] == 32]
    flat, vs_mm, fps = up["last_over_first_cpu"], up["update_over_matmul_cpu"], up["frames_per_s_cpu"]
    mb = up["state_per_stream_hour"]["mb"]
    histories = list(up["history"])

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return [
        f"flat cost: update after {histories[-1]} / after {histories[0]} chunks = {flat:.3f} cpu "
        f"({up['last_over_first_wall']:.3f} wall) -> {verdict(flat <= 1.2)} (target <= 1.2)",
        f"vs matmul: {vs_mm:.2f}x (cpu time, median over all timed updates vs median matmul) -> "
        f"{verdict(vs_mm <= 3)} (target <= 3x)",
        f"throughput: {fps:.0f} frames/s cpu ({up['frames_per_s_wall']:.0f} wall) -> {verdict(fps >= 1000)} "
        f"(target >= 1000)",
        f"state per stream-hour: {mb:.3f} MB -> {verdict(mb <= 2)} (target <= 2 MB)",
        f"streaming/offline fidelity: min {min(ratios):.4f}, mean {statistics.fmean(ratios):.4f} -> "
        f"{verdict(min(ratios) >= 0.97)} (target >= 0.97 everywhere)",
        f"streaming Token Dynamics above every baseline at 32 tokens: {sum(r['td_beats_baselines'] for r in at32)}"
        f"/{len(at32)} -> {verdict(all(r['td_beats_baselines'] for r in at32))}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short pass: history up to 300 chunks, fewer frames, 6 minutes of long stream")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: CPU-time figures then cover all compute)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = BenchRun("compressor", args.quick)
    started = time.perf_counter()
    checkpoints = [10, 100, 300] if args.quick else [10, 100, 1000, 10000]
    clips = {"vtest": (0.5, 40), "bigbuckbunny": (3.0, 16)} if args.quick else \
        {"vtest": (2.0, 160), "bigbuckbunny": (8.0, 48)}
    result = {
        "mode": "quick" if args.quick else "full", "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
        "token_convention": "196 tokens/frame (14x14 grid, pooled LLaVA-OneVision convention)",
        "updates": {**bench_updates(checkpoints, window=30 if args.quick else 200), "seeding": bench_seeding()},
        "fidelity": bench_fidelity(clips, [16, 32, 64]),
        # quick: 16 frames (no verdict rests on it; every rule's offline fit tries each K on all of them)
        "adaptive": bench_adaptive(0.5, 16) if args.quick else bench_adaptive(*clips["vtest"]),
        # quick: 6 minutes of media in 1-minute episodes; full: 2 hours in 5-minute episodes and segments
        "long_stream": bench_long_stream(360, 60, 60.0, 1) if args.quick else bench_long_stream(7200, 300, 300.0, 3),
    }
    result["summary"] = summarise(result)
    result["wall_s"] = time.perf_counter() - started
    print_report(result)
    print(f"wall time {result['wall_s']:.1f} s")
    run.finish(json.loads(json.dumps(result, default=float)), args.json)  # numpy scalars as plain floats


if __name__ == "__main__":
    main()
