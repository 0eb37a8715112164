"""bench/gpu.py: --quick writes every field of the GPU run on this CPU without Ray, PyAV or pyzmq; and the CUDA-only
paths it runs on a GPU (tests marked gpu: they skip without CUDA)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import gpu_sections
from bench.capacity import capacity_from_report
from compressor.config import CompressorConfig
from compressor.registry import make_stream_compressor
from compressor.streaming import StreamingTokenDynamics
from vlm import ModelConfig, load_vlm

ROOT = Path(__file__).resolve().parents[2]
# Runs bench/gpu.py as a script with Ray, PyAV and pyzmq unimportable, as on the bare GPU machine.
BLOCKED_RUN = """
import importlib.abc, runpy, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("ray", "av", "zmq"):
            raise ImportError(f"{name} is not on the GPU machine")
sys.meta_path.insert(0, Blocked())
sys.argv = ["bench/gpu.py", *sys.argv[1:]]
sys.path[0] = "bench"
runpy.run_path("bench/gpu.py", run_name="__main__")
"""
# Every field the run writes, per section ("device" and "sections" included).
FIELDS = {
    "device": {"type", "name", "capability", "memory_gib", "cuda", "torch", "transformers"},
    "matmul_peak": {"n", "dtype", "rounds", "flops_per_s"},
    "vision": {"config", "text_hidden", "dtype", "build_s", "flops_per_frame", "tokens_per_frame", "rows", "best",
               "h2d"},
    "compressor": {"budget", "dim", "chunk", "chunks_timed", "rate_hz", "chunk_span_s", "republish_s", "cpu_update_ms",
                   "gpu_update_ms", "gpu_speedup", "memory_actor_cpu_ms", "snapshot_bytes"},
    "language_model": {"config", "dtype", "build_s", "reps", "compact_visual_tokens", "full_visual_tokens",
                       "compact_prompt_tokens", "full_prompt_tokens", "ttft_compact_ms", "ttft_full_ms",
                       "full_vs_compact", "decode_tokens", "decode_tokens_per_s"},
    "training": {"config", "configured_steps", "rows", "tiny_configured_steps_h"},
    "cuda_tests": {"runner", "reason", "exit_code", "counts", "tests"},
    "capacity": {"replica", "seconds_per_frame", "batch", "streams_per_replica", "streams_per_gpu", "bound_by",
                 "growth", "assumptions"},
}
NEEDS_A_GPU = [("device", "capability"), ("device", "memory_gib"), ("device", "cuda"), ("vision", "h2d"),
               ("compressor", "gpu_update_ms"), ("compressor", "gpu_speedup"), ("capacity", "streams_per_gpu"),
               ("training", "tiny_configured_steps_h")]  # the last: --quick trains at batch 8, not the config's 32


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("gpu") / "gpu.json"
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN, "--quick", "--json", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(path.read_text())


def test_quick_run_writes_every_field_with_nulls_where_a_gpu_is_needed(quick_report: dict) -> None:
    """Given this CPU and no Ray, PyAV or pyzmq, when bench/gpu.py --quick runs, then every section ran, each
    wrote every field, and the fields that need a GPU are null."""
    assert {name: s["status"] for name, s in quick_report["sections"].items()} == {k: "ok" for k in FIELDS
                                                                                   if k != "device"}
    for section, fields in FIELDS.items():
        assert set(quick_report[section]) == fields, section
    for section, field in NEEDS_A_GPU:
        assert quick_report[section][field] is None, (section, field)
    assert [r["batch"] for r in quick_report["vision"]["rows"]] == [8, 16]
    assert all(r["fraction_of_peak"] > 0 for r in quick_report["vision"]["rows"])
    assert quick_report["language_model"]["full_visual_tokens"] == 16 * 196
    assert len(quick_report["training"]["rows"]) == 2
    assert quick_report["capacity"]["streams_per_replica"]["effective"] > 0


def test_the_cuda_tests_are_collected_and_skip_cleanly_here(quick_report: dict) -> None:
    """Every test marked gpu was collected in the quick run (no file failed to import without Ray, PyAV or
    pyzmq), and without CUDA each one skipped."""
    from bench.gpu import CUDA_TEST_FILES

    marked = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                    if "mark.gpu" in p.read_text())
    assert marked == sorted(CUDA_TEST_FILES)
    tests = quick_report["cuda_tests"]["tests"]
    assert len(tests) >= 8 and quick_report["cuda_tests"]["counts"]["error"] == 0
    if not torch.cuda.is_available():
        assert {t["outcome"] for t in tests} == {"skipped"}


def test_sampling_constants_match_the_pipeline() -> None:
    from actors.workers.memory import REPUBLISH_S
    from bench.pipeline import FRAMES_PER_CHUNK, RATE_HZ

    assert (gpu_sections.RATE_HZ, gpu_sections.FRAMES_PER_CHUNK, gpu_sections.REPUBLISH_S) == \
        (RATE_HZ, FRAMES_PER_CHUNK, REPUBLISH_S)


def test_capacity_uses_the_measured_frames_per_second() -> None:
    """Given a report whose vision path ran at 500 frames/s, then the capacity model's seconds per frame is 2 ms
    and its assumptions name the card as measured."""
    report = {"device": {"name": "card"}, "matmul_peak": {"flops_per_s": 7e14},
              "vision": {"flops_per_frame": 6.4e11, "best": {"batch": 32, "flops_per_s": 500 * 6.4e11}},
              "compressor": {"snapshot_bytes": 118_000, "memory_actor_cpu_ms": 6.0, "rate_hz": 2.0,
                             "chunk_span_s": 2.0, "republish_s": 1.0}}
    model = capacity_from_report(report)
    assert model["seconds_per_frame"] == pytest.approx(0.002)
    assert model["streams_per_replica"]["encoder"] == pytest.approx(0.7 / (2.0 * 0.002))
    assert any("measured" in a["basis"] and "card" in a["basis"] for a in model["assumptions"])


# ---- CUDA-only paths (skip without CUDA) -------------------------------------------------------------------------

def _chunks(count: int, dim: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random tokens [4, 14, 14, dim] float32 with their media times, `count` chunks."""
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((4, 14, 14, dim), dtype=np.float32), 2.0 * i + np.arange(4) / 2.0)
            for i in range(count)]


@pytest.mark.gpu
def test_compressor_state_follows_cuda_chunks_and_restores_onto_cuda() -> None:
    """Given CUDA chunks, the centroid state lives on the GPU, snapshots are CPU float32, and a checkpoint
    restored onto the GPU goes on exactly as the uninterrupted stream."""
    chunks = _chunks(4)
    whole = make_stream_compressor(CompressorConfig(budget=8))
    for tokens, stamps in chunks:
        whole.update(torch.from_numpy(tokens).cuda(), stamps)
    assert whole.sums.is_cuda and whole.centroids.is_cuda
    snapshot = whole.snapshot()
    assert isinstance(snapshot.base, np.ndarray) and snapshot.base.dtype == np.float32
    half = make_stream_compressor(CompressorConfig(budget=8))
    for tokens, stamps in chunks[:2]:
        half.update(torch.from_numpy(tokens).cuda(), stamps)
    restored = StreamingTokenDynamics.from_bytes(half.to_bytes(), device="cuda")
    assert restored.sums.is_cuda
    for tokens, stamps in chunks[2:]:
        restored.update(torch.from_numpy(tokens).cuda(), stamps)
    assert restored.to_bytes() == whole.to_bytes()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compressor_takes_half_precision_cuda_chunks(dtype: torch.dtype) -> None:
    full, low = make_stream_compressor(CompressorConfig(budget=8)), make_stream_compressor(CompressorConfig(budget=8))
    for tokens, stamps in _chunks(3):
        full.update(torch.from_numpy(tokens).cuda(), stamps)
        low.update(torch.from_numpy(tokens).cuda().to(dtype), stamps)
    assert low.snapshot().base.dtype == np.float32 and low.snapshot().base.shape == (8, 32)
    assert (low.key_map() == full.key_map()).mean() > 0.9


@pytest.mark.gpu
def test_tiny_model_runs_on_cuda_in_float16() -> None:
    model = load_vlm(ModelConfig(path="tiny", device="cuda", dtype="float16"))
    tokens = model.encode_frames(np.zeros((2, 112, 112, 3), dtype=np.uint8))
    assert tokens.is_cuda and tokens.dtype == torch.float16 and torch.isfinite(tokens).all()
    generation = model.generate(tokens.reshape(-1, 128)[:16], "What is there?", max_new_tokens=4)
    assert "".join(generation) == generation.text


@pytest.mark.gpu
def test_pinned_frames_encode_as_pageable_ones() -> None:
    model = load_vlm(ModelConfig(path="tiny", device="cuda", dtype="bfloat16"))
    frames = torch.randint(0, 256, (3, 120, 160, 3), dtype=torch.uint8)
    assert torch.equal(model.encode_frames(frames.pin_memory()), model.encode_frames(frames.numpy()))


@pytest.mark.gpu
def test_memory_tokens_with_dynamics_come_on_the_model_device_and_dtype() -> None:
    """A snapshot of a CPU stream -> the model's visual tokens: motion fused by the cross-dynamics attention in
    bfloat16 on the GPU, K rows of the model's width."""
    model = load_vlm(ModelConfig(path="tiny", device="cuda", dtype="bfloat16"))
    model.attach_dynamics()
    compressor = make_stream_compressor(CompressorConfig(budget=8))
    for tokens, stamps in _chunks(2, dim=128):
        compressor.update(tokens, stamps)
    visual = model.memory_tokens(compressor.snapshot())
    assert visual.is_cuda and visual.dtype == torch.bfloat16 and visual.shape == (8, 128)
