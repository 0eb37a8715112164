"""Full tokens against the Token Dynamics memory, each read by a model trained on it for the same wall time.

The paper's comparison at this machine's scale. Two readers start from the same point: the shipped model's
vision tower and projector (frozen, as in every reading stage of the recipe) with its language model
re-initialised the way the tiny family initialises it (normal(0, initializer_range), norms 1, seeded) and a new
cross-dynamics attention (the identity until trained). One trains on `token_dynamics@32` memories with the dense
losses the recipe uses (aux, motion, focus: configs/train-default.yaml); the other on every token of 4 frames
sampled uniformly over the memory's span (`full@4f`, 4 x 196 = 784 tokens: there is no key map, so it gets the
answer loss only, which is what a model reading raw tokens has). Both draw questions of the same training scenes
(6 snapshots each, one question per category per snapshot), batch 32, AdamW at lr 1e-3 (constant after 100
warm-up steps), for the same wall time of optimiser steps (`--minutes` each; building each example pool is timed
apart). Then each answers the held-out suite from its own format, greedily, scored as bench/qa.py scores.

Rows: format, visual tokens, optimiser steps, examples seen, pool build seconds, training seconds, held-out
accuracy overall and per category, and chance for the suite's mix of questions. The shipped model (hours of
training on Token Dynamics memories) is bench/qa.py's figure; this bench isolates what one unit of training
compute buys each memory format.

    .venv/bin/python bench/full_tokens.py [--quick] [--minutes 10] [--scenes 192] [--json PATH]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from compressor.attention import CrossDynamicsAttention  # noqa: E402
from scenes.questions import CATEGORIES, chance  # noqa: E402
from train.config import load_train_config  # noqa: E402
from train.data import build_eval_examples  # noqa: E402
from train.evaluate import accuracy  # noqa: E402
from train.formats import FULL, MemoryFormat  # noqa: E402
from train.model import load_model, set_trainable  # noqa: E402
from train.objective import QAObjective  # noqa: E402
from train.scene_data import build_scene_pool, scene_specs  # noqa: E402
from vlm.llava_onevision import LlavaOnevision  # noqa: E402

SHIPPED = "vlm/weights/scenes-tiny"
FORMATS = (MemoryFormat(method="token_dynamics", budget=32), MemoryFormat(method=FULL, frames=4))
BATCH = 32
LR = 1e-3
WARMUP_STEPS = 100
FIRST_SEED = 105000  # training scenes no run of the recipe has used (configs/train-*.yaml: 100000-102383)


def fresh_reader(vlm: LlavaOnevision, seed: int) -> CrossDynamicsAttention:
    """Re-initialise the language model (embeddings, layers, output head) as the tiny family initialises it
    and attach a new cross-dynamics attention; the vision tower and projector keep their trained weights."""
    torch.manual_seed(seed)
    std = vlm.model.config.text_config.initializer_range
    with torch.no_grad():
        for module in (*vlm.model.model.language_model.modules(), vlm.model.lm_head):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif type(module).__name__.endswith("RMSNorm"):
                module.weight.fill_(1.0)
    return vlm.attach_dynamics(seed=seed)


def train_for(vlm: LlavaOnevision, dynamics: CrossDynamicsAttention, fmt: MemoryFormat, examples: list,
              seconds: float, seed: int) -> tuple[int, float]:
    """AdamW steps on batches of `examples` until `seconds` of wall time have gone; (steps, seconds taken)."""
    dense = fmt.uses_dynamics  # aux / motion / focus need a key map; full tokens have none
    objective = QAObjective(vlm, dynamics, aux_weight=float(dense), focus_weight=float(dense),
                            motion_weight=float(dense))
    optimizer = torch.optim.AdamW(set_trainable(vlm, dynamics, ("vision", "projector")), lr=LR, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    vlm.model.train()
    started, step = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for group in optimizer.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / WARMUP_STEPS)
        loss, _ = objective([examples[i] for i in rng.integers(0, len(examples), BATCH)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 1.0)
        optimizer.step()
        step += 1
    objective.serving()
    return step, time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__, "10 s of training per format on 3 scenes, 16 held-out questions (< 60 s here)")
    parser.add_argument("--model", default=SHIPPED, help="checkpoint whose vision tower and projector are kept")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall time per format")
    parser.add_argument("--scenes", type=int, default=192, help="training scenes (both formats ask the same ones)")
    args = parser.parse_args()
    run = BenchRun("full_tokens", args.quick)
    torch.set_num_threads(2)
    seconds, scenes, suite, limit = (10.0, 3, "heldout-small", 16) if args.quick \
        else (60.0 * args.minutes, args.scenes, "heldout", 0)
    rows, results = [], []
    for f, fmt in enumerate(FORMATS):
        config = load_train_config(
            "train-default", model={"init": str(Path(args.model).resolve()), "dtype": "float32", "device": "cpu"},
            formats=[{"method": fmt.method, "budget": fmt.budget, "frames": fmt.frames}],
            eval={"suite": suite, "every_steps": 0, "max_questions": limit, "format": 0},
            settings=[f"data.scenes.count={scenes}", f"data.scenes.first_seed={FIRST_SEED}"])
        vlm = load_model(config.model, 0, "cpu")
        dynamics = fresh_reader(vlm, seed=0)
        pool = build_scene_pool(vlm, scene_specs(config.data, config.seed), config.formats, config.data,
                                config.seed, targets=fmt.uses_dynamics)
        examples = pool.by_format[0]
        steps, trained_s = train_for(vlm, dynamics, fmt, examples, seconds, seed=f)
        heldout = build_eval_examples(vlm, config)
        scored = accuracy(vlm, dynamics if fmt.uses_dynamics else None, heldout)
        asked = {c: sum(ex.category == c for ex in heldout) for c in CATEGORIES}
        guess = 100.0 * sum(chance(c) * n for c, n in asked.items()) / max(len(heldout), 1)
        per_category = {c: 100.0 * scored[f"accuracy/{c}"] for c in CATEGORIES if f"accuracy/{c}" in scored}
        results.append({"format": fmt.name, "visual_tokens": examples[0].memory.num_visual, "steps": steps,
                        "examples_seen": steps * BATCH, "training_examples": len(examples),
                        "pool_build_s": pool.build_s, "train_s": trained_s, "accuracy": 100.0 * scored["accuracy"],
                        "per_category": per_category, "questions": len(heldout), "chance": guess})
        r = results[-1]
        rows.append([r["format"], r["visual_tokens"], r["steps"], r["examples_seen"], r["pool_build_s"],
                     r["train_s"], r["accuracy"], r["chance"]] + [per_category.get(c) for c in CATEGORIES])
    print_table([("format", ""), ("visual tok", "d"), ("steps", "d"), ("examples", "d"), ("pool s", ".0f"),
                 ("train s", ".0f"), ("acc %", ".1f"), ("chance %", ".1f")] + [(c, ".0f") for c in CATEGORIES], rows)
    run.finish({"suite": suite, "training_scenes": scenes, "seconds_per_format": seconds, "batch": BATCH, "lr": LR,
                "model": args.model, "formats": results}, args.json)


if __name__ == "__main__":
    main()
