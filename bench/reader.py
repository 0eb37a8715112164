"""How many training steps the shipped model's language side needs to read a *clean* memory.

    python bench/reader.py [--quick] [--json PATH]

A diagnostic for the shipped model's accuracy (README, "Answers"): it separates "the language model cannot
learn to read a memory in the steps we can afford" from "the vision tower does not put shapes and colours
into the memory". The memory here is ideal: K = 32 tokens, of which 2-5 are objects, each the sum of a fixed
random vector for its shape and one for its colour (plus Gaussian noise of std `NOISE` per dimension), and
the rest background tokens drawn N(0, 1). Questions are the scene suite's content questions in both
directions ("The star is what colour?", "Which shape is red?"), answered through the server's path
(greedy `generate`) and scored like the scene suite. The model is the shipped training config's (tiny
LLaVA-OneVision, 4 language layers, scene tokenizer, configs/train-default.yaml's optimiser), trained from
scratch on these examples only, batch 32. Reported: held-out accuracy every `every` steps against chance.

--quick: 250 steps, 32 questions every 50 steps (< 60 s). Full: 1,500 steps, 64 questions every 100.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # bench/compressor.py would shadow the compressor package

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from scenes.questions import QA  # noqa: E402
from scenes.shapes import COLOURS, SHAPES  # noqa: E402
from train.config import load_train_config  # noqa: E402
from train.evaluate import accuracy  # noqa: E402
from train.loop import lr_at  # noqa: E402
from train.memory import Memory  # noqa: E402
from train.model import load_model, make_dynamics, set_trainable  # noqa: E402
from train.objective import Example, QAObjective  # noqa: E402

K = 32
NOISE = 0.5  # std per dimension of the noise on an object token (its shape + colour vectors have std 1)


class CleanMemories:
    """Content questions about ideal memories: objects = shape vector + colour vector among background tokens."""

    def __init__(self, dim: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.shape_vec = torch.randn(len(SHAPES), dim, generator=g)  # [S, D]
        self.colour_vec = torch.randn(len(COLOURS), dim, generator=g)  # [C, D]
        self.dim, self.rng, self.g = dim, np.random.default_rng(seed), g

    def example(self) -> Example:
        n = int(self.rng.integers(2, 6))
        shapes, colours = self.rng.permutation(len(SHAPES))[:n], self.rng.permutation(len(COLOURS))[:n]
        base = torch.randn(K, self.dim, generator=self.g)  # [K, D] background
        for slot, s, c in zip(self.rng.permutation(K)[:n], shapes, colours):
            base[slot] = self.shape_vec[s] + self.colour_vec[c] + NOISE * torch.randn(self.dim, generator=self.g)
        i = int(self.rng.integers(n))
        if self.rng.random() < 0.5:
            question, answer = f"The {SHAPES[shapes[i]]} is what colour?", COLOURS[colours[i]]
        else:
            question, answer = f"Which shape is {COLOURS[colours[i]]}?", SHAPES[shapes[i]]
        memory = Memory(base, base.new_zeros(K, 0), base.new_zeros(0, self.dim), 0.0, 1.0)
        return Example(memory, question, answer, fused=False, category="content",
                       qa=QA(question, answer, "content", 1.0))


def main(argv: list[str] | None = None) -> dict:
    args = bench_parser(__doc__, "250 steps, 32 questions every 50 (< 60 s)").parse_args(argv)
    steps, every, asked = (250, 50, 32) if args.quick else (1500, 100, 64)
    run = BenchRun("reader", args.quick, started=STARTED)
    config = load_train_config("train-default")
    torch.manual_seed(config.seed)
    vlm = load_model(config.model, config.seed, "cpu")
    dynamics = make_dynamics(vlm, config.seed)
    params = set_trainable(vlm, dynamics, config.freeze)
    objective = QAObjective(vlm, dynamics)
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    train, held_out = CleanMemories(vlm.hidden_size, seed=1), CleanMemories(vlm.hidden_size, seed=1)
    held_out.rng, held_out.g = np.random.default_rng(2), torch.Generator().manual_seed(2)  # same vectors, new draws
    tests = [held_out.example() for _ in range(asked)]
    chance = 100 * (1 / len(COLOURS) + 1 / len(SHAPES)) / 2
    rows = []
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, config)
        loss, _ = objective([train.example() for _ in range(config.batch_size)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()
        if step % every == 0:
            acc = 100 * accuracy(vlm, dynamics, tests)["accuracy"]
            rows.append({"step": step, "loss": float(loss.detach()), "accuracy": acc, "chance": chance,
                         "s": time.perf_counter() - STARTED})
            print(f"  step {step}: loss {rows[-1]['loss']:.3f}, accuracy {acc:.1f} %", flush=True)
    print_table([("step", "d"), ("loss", ".3f"), ("accuracy %", ".1f"), ("chance %", ".1f")],
                [[r["step"], r["loss"], r["accuracy"], r["chance"]] for r in rows])
    return run.finish({"rows": rows, "noise": NOISE, "k": K, "batch_size": config.batch_size,
                       "questions": asked, "model": "configs/train-default.yaml's model, from scratch"}, args.json)


if __name__ == "__main__":
    main()
