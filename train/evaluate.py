"""Held-out accuracy by greedy generation through the path the server answers with:
`model.generate(visual, question)` on the memory's visual tokens, then `scenes.questions.is_correct`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from compressor.attention import CrossDynamicsAttention
from scenes.questions import is_correct
from train.objective import Example, visual_inputs
from vlm.llava_onevision import LlavaOnevision

MAX_ANSWER_TOKENS = 24  # scene answers are a few words or a number


def answer(vlm: LlavaOnevision, dynamics: CrossDynamicsAttention | None, example: Example) -> str:
    """The model's greedy answer to one example, as the LLM actor would produce it."""
    with torch.no_grad():
        visual = visual_inputs(example.memory_for(vlm), dynamics if example.fused else None)  # [K + R, D]
    generation = vlm.generate(visual, example.question, max_new_tokens=MAX_ANSWER_TOKENS, temperature=0.0)
    return "".join(generation).strip()


def accuracy(vlm: LlavaOnevision, dynamics: CrossDynamicsAttention | None,
             examples: Sequence[Example]) -> dict[str, float]:
    """{"accuracy": overall, "accuracy/<category>": per category, "eval_questions": n} over scene examples."""
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    was_training = vlm.model.training
    vlm.model.eval()
    try:
        for ex in examples:
            ok = is_correct(answer(vlm, dynamics, ex), ex.qa)
            right[ex.category] += ok
            total[ex.category] += 1
    finally:
        vlm.model.train(was_training)
    n = sum(total.values())
    out = {"accuracy": sum(right.values()) / n if n else 0.0, "eval_questions": float(n)}
    out.update({f"accuracy/{c}": right[c] / total[c] for c in sorted(total)})
    return out
