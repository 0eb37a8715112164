"""The measurements of bench/gpu.py, one function per section; each takes a Plan (sizes, device, dtype) and a
deadline (time.perf_counter() value) that its timing loops stop at, and returns a JSON-ready dict.

Needs only torch, transformers, numpy (and msgpack through stream.codec): no Ray, PyAV or pyzmq, so it runs on a
bare GPU machine. Every figure on a CUDA device is taken between torch.cuda.synchronize() calls.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

from bench.capacity import vision_flops_per_frame
from bench.common import random_llava_onevision
from compressor.config import CompressorConfig
from compressor.motion import MOTION_FEATURES
from compressor.registry import make_stream_compressor
from stream.codec import Kind, Message, encode
from vlm.llava_onevision import LlavaOnevision, TinySize, tiny_config
from vlm.prompt import prompt_ids, splice_visual
from vlm.tokenizer import byte_level_tokenizer

# The pipeline's sampling (bench/pipeline.py RATE_HZ, FRAMES_PER_CHUNK) and the memory's idle re-publish period
# (actors/workers/memory.py REPUBLISH_S): copied, because importing them loads Ray and pyzmq;
# tests/bench/test_gpu.py checks they still agree.
RATE_HZ, FRAMES_PER_CHUNK, REPUBLISH_S = 2.0, 4, 1.0
CHUNK_SPAN_S = FRAMES_PER_CHUNK / RATE_HZ
BUDGET = 32  # K, the memory's base tokens
GRID = 14  # visual tokens per side after 2x2 pooling: 196 a frame
FULL_FRAMES = 16  # the full-token side of the time-to-first-token comparison: 16 x 196 = 3136 tokens
QUESTION = "What did the person in the red coat do after walking past the parked car?"
# Qwen2-0.5B as LLaVA-OneVision-0.5B carries it.
QWEN2_0_5B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, rope_theta=1_000_000.0)


@dataclass(frozen=True)
class Plan:
    """What one run measures, at which sizes, where.

    vision: the vision tower's config (real: SigLIP-so400m as LLaVA-OneVision runs it, transformers'
    LlavaOnevisionConfig default: 1152 wide, 26 of so400m's 27 layers, 16 heads, MLP 4304, 384 px / 14 px);
    text: Qwen2Config keyword arguments of the language model; batches: frames per encode_frames call.
    """

    quick: bool
    device: torch.device
    dtype: torch.dtype
    vision: SiglipVisionConfig
    text: dict[str, Any]
    batches: tuple[int, ...]
    vision_reps: int
    matmul_n: int
    compressor_chunks: int
    ttft_reps: int
    decode_tokens: int
    train_steps: int
    real_train_batch: int
    tiny_train_batch: int | None  # None: the configured batch_size


def make_plan(quick: bool, device: torch.device) -> Plan:
    """--quick: tiny shapes on the CPU in float32 (the code paths, not the figures); else real sizes in bf16."""
    if quick:
        tiny = tiny_config(300, 298, 299, TinySize())
        text = {k: getattr(tiny.text_config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                           "num_key_value_heads", "intermediate_size")}
        return Plan(True, device, torch.float32, tiny.vision_config, {**text, "vocab_size": 300}, batches=(8, 16),
                    vision_reps=3, matmul_n=256, compressor_chunks=8, ttft_reps=2, decode_tokens=8, train_steps=1,
                    real_train_batch=2, tiny_train_batch=8)
    return Plan(False, device, torch.bfloat16, LlavaOnevisionConfig().vision_config, QWEN2_0_5B,
                batches=(8, 16, 32, 64), vision_reps=10, matmul_n=8192, compressor_chunks=40, ttft_reps=10,
                decode_tokens=128, train_steps=5, real_train_batch=8,
                tiny_train_batch=None)

def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(fn: Callable[[], object], device: torch.device, reps: int, deadline: float) -> list[float]:
    """Seconds of each of up to `reps` calls of `fn` (at least one), stopping early once `deadline` passes."""
    times = []
    for _ in range(reps):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return times


def llava(plan: Plan, text: dict[str, Any], vision: SiglipVisionConfig) -> LlavaOnevision:
    """A random-weight LlavaOnevision (byte tokenizer) of `vision` + Qwen2(`text`) on the plan's device/dtype."""
    tokenizer = byte_level_tokenizer()
    video_id = tokenizer.convert_tokens_to_ids("<video>")
    config = LlavaOnevisionConfig(vision_config=vision.to_dict(), text_config=Qwen2Config(**text),
                                  image_token_index=video_id - 1, video_token_index=video_id,
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    model = random_llava_onevision(config, plan.dtype).to(plan.device)
    return LlavaOnevision(model, tokenizer, name="llava-onevision-random", meaningful=False)


def matmul_peak(plan: Plan, deadline: float) -> dict[str, Any]:
    """FLOP/s of an [n, n] x [n, n] product in the plan's dtype (best of timed rounds of 10): the peak the
    device reaches in practice, which the vision path's FLOP/s is divided by."""
    n = plan.matmul_n
    a, b = (torch.randn(n, n, device=plan.device).to(plan.dtype) for _ in range(2))
    torch.matmul(a, b)  # kernel choice
    times = timed_calls(lambda: [torch.matmul(a, b) for _ in range(10)], plan.device, 20, deadline)
    return {"n": n, "dtype": str(plan.dtype).removeprefix("torch."), "rounds": len(times),
            "flops_per_s": 10 * 2 * n**3 / min(times)}


def vision(plan: Plan, deadline: float, peak_flops: float | None) -> dict[str, Any]:
    """Frames/s of `LlavaOnevision.encode_frames` (preprocess + vision tower + projector + 2x2 pooling) at each
    batch on random uint8 frames already on the device, its FLOP/s and share of the matmul peak; and the
    host-to-device copy of a batch of frames from pageable and from pinned memory (CUDA only)."""
    started = time.perf_counter()
    model = llava(plan, {**plan.text, "num_hidden_layers": 1, "vocab_size": 300}, plan.vision)
    build_s = time.perf_counter() - started
    size = plan.vision.image_size
    frames = torch.randint(0, 256, (max(plan.batches), size, size, 3), dtype=torch.uint8)
    on_device = frames.to(plan.device)
    flops = vision_flops_per_frame(plan.vision, plan.text["hidden_size"])
    tokens_per_frame = model.grid[0] * model.grid[1]
    rows = []
    for batch in plan.batches:
        model.encode_frames(on_device[:batch])  # allocations, kernel choice
        times = timed_calls(lambda: model.encode_frames(on_device[:batch]), plan.device, plan.vision_reps, deadline)
        fps = batch / statistics.median(times)
        rows.append({"batch": batch, "calls": len(times), "frames_per_s": fps, "tokens_per_s": fps * tokens_per_frame,
                     "flops_per_s": fps * flops,
                     "fraction_of_peak": None if not peak_flops else fps * flops / peak_flops})
        if time.perf_counter() > deadline:
            break
    h2d = None
    if plan.device.type == "cuda":
        pinned = frames.pin_memory()
        h2d = {"bytes": frames.nbytes}
        for name, source in (("pageable", frames), ("pinned", pinned)):
            times = timed_calls(lambda: source.to(plan.device, non_blocking=True), plan.device, 10, deadline)
            h2d[f"{name}_gb_per_s"] = frames.nbytes / min(times) / 1e9
    config = {k: getattr(plan.vision, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                   "intermediate_size", "image_size", "patch_size")}
    return {"config": config, "text_hidden": plan.text["hidden_size"], "dtype": str(plan.dtype).removeprefix("torch."),
            "build_s": build_s, "flops_per_frame": flops, "tokens_per_frame": tokens_per_frame, "rows": rows,
            "best": max(rows, key=lambda r: r["frames_per_s"]), "h2d": h2d}


def _chunks(count: int, dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` chunks of random tokens [FRAMES_PER_CHUNK, GRID, GRID, dim] float32 with their media times [T]."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((FRAMES_PER_CHUNK, GRID, GRID, dim), dtype=np.float32),
             i * CHUNK_SPAN_S + np.arange(FRAMES_PER_CHUNK) / RATE_HZ) for i in range(count)]


def _update_ms(chunks: list, device: torch.device, deadline: float, memory_actor: bool = False) -> list[float]:
    """Milliseconds per compressor update (memory_actor: + checkpoint bytes + snapshot, what the memory actor
    runs per chunk) over `chunks`, the first quarter untimed; tokens are on `device` before each update."""
    compressor = make_stream_compressor(CompressorConfig(budget=BUDGET))
    inputs = [(torch.from_numpy(t).to(device), s) for t, s in chunks]
    warm, times = len(chunks) // 4, []
    for i, (tokens, stamps) in enumerate(inputs):
        sync(device)
        started = time.perf_counter()
        compressor.update(tokens, stamps)
        if memory_actor:
            compressor.to_bytes()
            compressor.snapshot()
        sync(device)
        if i >= warm:
            times.append(1000 * (time.perf_counter() - started))
        if time.perf_counter() > deadline and len(times) >= 3:
            break
    return times


def compressor(plan: Plan, deadline: float) -> dict[str, Any]:
    """The streaming Token Dynamics update at K=32, D = the language model's width, per chunk of 4 x 14 x 14
    tokens: median ms on the CPU and with tokens and state on the GPU (the same chunks), the memory actor's CPU
    ms per chunk and one snapshot's bytes on the wire (the capacity model's inputs)."""
    dim = plan.text["hidden_size"]
    chunks = _chunks(plan.compressor_chunks, dim)
    cpu = _update_ms(chunks, torch.device("cpu"), deadline)
    actor = _update_ms(chunks, torch.device("cpu"), deadline, memory_actor=True)
    gpu = _update_ms(chunks, plan.device, deadline) if plan.device.type == "cuda" else None
    snapshot = make_stream_compressor(CompressorConfig(budget=BUDGET))
    for tokens, stamps in chunks[:2]:
        snapshot.update(tokens, stamps)
    meta, arrays = snapshot.snapshot().to_wire()
    wire = encode(Message(Kind.SNAPSHOT, "cam", 1, meta, arrays))
    cpu_ms = statistics.median(cpu)
    gpu_ms = None if gpu is None else statistics.median(gpu)
    return {"budget": BUDGET, "dim": dim, "chunk": [FRAMES_PER_CHUNK, GRID, GRID], "chunks_timed": len(cpu),
            "rate_hz": RATE_HZ, "chunk_span_s": CHUNK_SPAN_S, "republish_s": REPUBLISH_S,
            "cpu_update_ms": cpu_ms, "gpu_update_ms": gpu_ms,
            "gpu_speedup": None if gpu_ms is None else cpu_ms / gpu_ms,
            "memory_actor_cpu_ms": statistics.median(actor),
            "snapshot_bytes": sum(memoryview(part).nbytes for part in wire)}


def _decode_tokens_per_s(model: LlavaOnevision, visual: torch.Tensor, tokens: int) -> float:
    """Greedy decode with the KV cache after the prompt of `visual` [K, D], through the model's forward as
    vlm.decoding.Generation calls it (last position's logits only), without text decoding or stop tokens:
    generated tokens per second at batch 1."""
    ids = torch.tensor(prompt_ids(model.tokenizer, QUESTION, model.video_marker, model.video_token_id,
                                  visual.shape[0], model.chat_template), device=model.device)  # [L]
    embed = model.model.get_input_embeddings()
    with torch.inference_mode():
        embeds = splice_visual(embed(ids), ids, visual.to(model.device, model.dtype), model.video_token_id)  # [L, D]
        out = model.model(inputs_embeds=embeds[None], use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)  # [1, 1]
        sync(model.device)
        started = time.perf_counter()
        for _ in range(tokens):
            out = model.model(inputs_embeds=embed(token), past_key_values=out.past_key_values, use_cache=True,
                              logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(model.device)
    return tokens / (time.perf_counter() - started)


def language_model(plan: Plan, deadline: float) -> dict[str, Any]:
    """Time to first token through `LlavaOnevision.generate` (chat template, visual tokens spliced, prefill, first
    token) from K=32 visual tokens and from 16 frames of full tokens (16 x 196), interleaved, medians; then
    greedy decode tokens/s at batch 1 after the K=32 prompt."""
    started = time.perf_counter()
    model = llava(plan, plan.text, make_plan(True, plan.device).vision)  # the vision tower is not used here
    build_s = time.perf_counter() - started
    dim = plan.text["hidden_size"]
    sides = {"compact": torch.randn(BUDGET, dim), "full": torch.randn(FULL_FRAMES * GRID * GRID, dim)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    prompt_tokens = {}

    def first_token(name: str) -> float:
        """Seconds from the generate() call to the first generated token (the id is read on the host)."""
        started = time.perf_counter()
        generation = model.generate(sides[name], QUESTION, max_new_tokens=1)
        for _ in generation:
            pass
        prompt_tokens[name] = generation.usage["prompt_tokens"]
        return time.perf_counter() - started

    for name in sides:
        first_token(name)  # warm-up: allocations, kernel choice
    for _ in range(plan.ttft_reps):
        for name in sides:
            times[name].append(first_token(name))
        if time.perf_counter() > deadline:
            break
    ttft = {name: 1000 * statistics.median(ts) for name, ts in times.items()}
    in_time = time.perf_counter() < deadline
    decode = _decode_tokens_per_s(model, sides["compact"], plan.decode_tokens) if in_time else None
    return {"config": {k: v for k, v in plan.text.items() if k != "rope_theta"},
            "dtype": str(plan.dtype).removeprefix("torch."), "build_s": build_s, "reps": len(times["compact"]),
            "compact_visual_tokens": BUDGET, "full_visual_tokens": FULL_FRAMES * GRID * GRID,
            "compact_prompt_tokens": prompt_tokens["compact"], "full_prompt_tokens": prompt_tokens["full"],
            "ttft_compact_ms": ttft["compact"], "ttft_full_ms": ttft["full"],
            "full_vs_compact": ttft["full"] / ttft["compact"], "decode_tokens": plan.decode_tokens,
            "decode_tokens_per_s": decode}


def _examples(vocab: int, dim: int, count: int) -> list:
    """`count` training examples shaped like the scene pool's: a K=32 memory (random base [K, D], motion
    [K, F], no recent tokens), a scene question, a one-word answer, and where the trainer's Example has them
    (it is changing under way), aux targets [K, 5] and 2 focus tokens."""
    from train.memory import Memory
    from train.objective import Example

    generator = torch.Generator().manual_seed(0)
    memory = Memory(torch.randn(BUDGET, dim, generator=generator), torch.zeros(BUDGET, len(MOTION_FEATURES)),
                    torch.zeros(0, dim), 0.0, 30.0)
    extra = {"targets": torch.randint(0, vocab, (BUDGET, 5), generator=generator), "focus": torch.tensor([0, 1])}
    extra = {k: v for k, v in extra.items() if k in {f.name for f in dataclasses.fields(Example)}}
    return [Example(memory, "What colour is the circle?", "red", True, **extra) for _ in range(count)]


def _step_s(vlm: LlavaOnevision, config: Any, batch: int, steps: int, deadline: float) -> list[float]:
    """Seconds per optimiser step of `tokdyn train`'s loop (QAObjective with the config's loss weights, the
    config's frozen parts, AdamW, gradient clipping) on `batch` synthetic examples; one untimed step first."""
    from train.model import make_dynamics, set_trainable
    from train.objective import QAObjective

    dynamics = make_dynamics(vlm, 0)
    params = set_trainable(vlm, dynamics, tuple(config.freeze))
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    weights = {k: getattr(config, k) for k in ("aux_weight", "focus_weight", "motion_weight") if hasattr(config, k)}
    objective = QAObjective(vlm, dynamics, **weights)
    examples = _examples(len(vlm.tokenizer), vlm.hidden_size, batch)

    def step() -> None:
        loss, _ = objective(examples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()

    step()
    return timed_calls(step, vlm.device, steps, deadline)


def training(plan: Plan, deadline: float) -> dict[str, Any]:
    """Optimiser steps of configs/train-default.yaml's trainer: its tiny model (as configured: sizes, tokenizer,
    dtype) at its batch size (--quick: 8), and LLaVA-OneVision at real size (plan's shapes and dtype) at a small
    batch. Examples/s per row; for the tiny model at its batch size, the hours its configured steps (main +
    curriculum) would take."""
    from train.config import load_train_config
    from train.model import load_model

    config = load_train_config("train-default")
    total_steps = (config.steps or 0) + sum(stage.steps or 0 for stage in getattr(config, "curriculum", ()))
    tiny = load_model(config.model, seed=0, device=str(plan.device))
    rows = []
    real = "tiny shapes (quick)" if plan.quick else "real size"
    tiny_batch = plan.tiny_train_batch or config.batch_size
    for label, vlm, batch in (("tiny (train-default)", tiny, tiny_batch), (real, None, plan.real_train_batch)):
        if time.perf_counter() > deadline:
            break
        if vlm is None:
            vlm = llava(plan, plan.text, plan.vision)
            vlm.model.train()
        times = _step_s(vlm, config, batch, plan.train_steps, deadline)
        s_per_step = statistics.median(times)
        rows.append({"model": label, "dtype": str(vlm.dtype).removeprefix("torch."), "batch": batch,
                     "steps": len(times), "s_per_step": s_per_step, "examples_per_s": batch / s_per_step,
                     "parameters": sum(p.numel() for p in vlm.model.parameters())})
        del vlm
    at_config = rows[0] if rows and tiny_batch == config.batch_size else None  # not with --quick's smaller batch
    return {"config": "configs/train-default.yaml", "configured_steps": total_steps, "rows": rows,
            "tiny_configured_steps_h": None if at_config is None else total_steps * at_config["s_per_step"] / 3600}
