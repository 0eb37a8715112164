"""Training cost of the tiny LLaVA-OneVision on this machine, to size a `tokdyn train` run.

Measured in one process with the trainer's own pieces (train/: scene token cache, memories by the pipeline's
streaming compressor, the QA loss on the serving prompt, AdamW), without Ray (Ray Train adds a fixed start-up
cost, not a per-step one):
- cache: seconds to build the example pool per minute of scene (render, resize, frozen vision tower, every
  memory format chunk by chunk, questions), per format set;
- step: seconds per optimiser step and examples per second, per memory format and batch size, wall and CPU
  time (CPU time is steadier on a shared machine). Threads: --threads (default 2, the machine's cores).

    .venv/bin/python bench/train.py --quick --json /tmp/train.json
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import torch

from bench.common import BenchRun, bench_parser, print_table
from train.config import DataConfig, ModelInit, SceneData
from train.formats import MemoryFormat
from train.model import load_model, make_dynamics, set_trainable
from train.objective import QAObjective
from train.scene_data import build_scene_pool, scene_specs


def time_steps(objective: QAObjective, optimizer: torch.optim.Optimizer, examples: list, batch: int, steps: int,
               rng: np.random.Generator) -> tuple[float, float]:
    """(wall s, CPU s) per optimiser step, after one warm-up step."""
    def step() -> None:
        loss, _ = objective([examples[i] for i in rng.integers(0, len(examples), batch)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = bench_parser(__doc__, "1 short scene, 2 steps per row (< 60 s on a quiet machine)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    run = BenchRun("train", args.quick)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vlm = load_model(ModelInit(), seed=0, device="cpu")
    dynamics = make_dynamics(vlm, 0)
    formats = (MemoryFormat(budget=32), MemoryFormat(method="full", frames=16))
    scenes, seconds, steps = (1, 20.0, 2) if args.quick else (4, 60.0, 10)
    data = DataConfig(scenes=SceneData(count=scenes, seconds=(seconds, seconds), width=320, height=240, snapshots=4))
    cache_rows = []
    for label, fmts in (("token_dynamics@32", formats[:1]), ("token_dynamics@32 + full@16f", formats)):
        pool = build_scene_pool(vlm, scene_specs(data, 0), fmts, data, seed=0)
        cache_rows.append((label, pool.media_s / 60, pool.build_s, 60 * pool.build_s / pool.media_s,
                           len(pool.by_format[0])))
    print_table([("formats", ""), ("scene min", ".1f"), ("build s", ".1f"), ("s / scene-min", ".2f"),
                 ("questions", "d")], cache_rows)

    optimizer = torch.optim.AdamW(set_trainable(vlm, dynamics, ("vision", "projector")), lr=1e-3)
    objective = QAObjective(vlm, dynamics)
    rng = np.random.default_rng(0)
    step_rows = []
    for f, fmt in enumerate(formats):
        for batch in ((16, 32) if fmt.method != "full" else (4, 8)):
            wall, cpu = time_steps(objective, optimizer, pool.by_format[f], batch, steps, rng)
            step_rows.append((fmt.name, batch, pool.by_format[f][0].memory.num_visual, wall, cpu, batch / wall))
    print_table([("format", ""), ("batch", "d"), ("visual tok", "d"), ("s / step", ".3f"), ("CPU s / step", ".3f"),
                 ("examples / s", ".1f")], step_rows)
    run.finish({"threads": args.threads,
                "cache": [dict(zip(("formats", "scene_minutes", "build_s", "s_per_scene_minute", "questions"), r))
                          for r in cache_rows],
                "steps": [dict(zip(("format", "batch", "visual_tokens", "s_per_step", "cpu_s_per_step",
                                    "examples_per_s"), r)) for r in step_rows]}, args.json)


if __name__ == "__main__":
    main()
