"""The training loss: the serving prompt with the memory spliced in, then the answer and <|im_end|>;
cross-entropy on the answer positions only, batched with right padding and an attention mask.

The prompt is built by `vlm.prompt.prompt_ids` with the model's own chat template, exactly as
`LlavaOnevision.generate` builds it at answer time, so the model learns the distribution it is asked from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compressor.attention import CrossDynamicsAttention, fuse_memory
from train.config import MemoryFormat
from train.memory import FrameSource, Memory, live_memory
from vlm.llava_onevision import LlavaOnevision
from vlm.prompt import prompt_ids, splice_visual

END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True)
class Example:
    """One (memory, question, answer) training example; `fused` says whether the memory's motion is fused
    into its base by the cross-dynamics attention (token_dynamics with the key map) or not (centroid-only,
    baselines, full tokens). `qa` is the scene question it came from (None for user data). With a trainable
    vision path `memory` is None and `source` gives the frames it is rebuilt from, with grad, every step."""

    memory: Memory | None
    question: str
    answer: str
    fused: bool
    category: str = "user"
    qa: object | None = None
    source: FrameSource | None = None

    @classmethod
    def of(cls, visual: Memory | FrameSource, question: str, answer: str, fmt: MemoryFormat, category: str = "user",
           qa: object | None = None) -> Example:
        """An example answered from a memory, or from frames when `visual` is a FrameSource (slow path)."""
        live = isinstance(visual, FrameSource)
        return cls(None if live else visual, question, answer, fmt.uses_dynamics, category, qa,
                   visual if live else None)

    def memory_for(self, vlm: LlavaOnevision) -> Memory:
        """The memory this example is answered from, on the model's device in its dtype."""
        memory = self.memory if self.source is None else live_memory(vlm, self.source)
        return memory.to(vlm.device, vlm.dtype)


def visual_inputs(memory: Memory, attention: CrossDynamicsAttention | None) -> torch.Tensor:
    """Memory -> visual tokens [K + R, D] (motion fused into the base by `attention` when given), through the
    pipeline's own differentiable `fuse_memory`."""
    return fuse_memory(memory.base, memory.motion, memory.recent, attention)


def _answer_ids(vlm: LlavaOnevision, answer: str) -> list[int]:
    ids = vlm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return ids + [vlm.tokenizer.convert_tokens_to_ids(END_OF_TURN)]


class QAObjective(nn.Module):
    """The whole trainable model (LLaVA-OneVision + cross-dynamics attention) as one module whose forward is
    the batch loss, so DDP synchronises every part's gradients in one place."""

    def __init__(self, vlm: LlavaOnevision, dynamics: CrossDynamicsAttention) -> None:
        super().__init__()
        self.vlm = vlm  # plain attribute: the tokenizer and prompt settings; its modules are registered below
        self.model = vlm.model
        self.dynamics = dynamics

    def forward(self, examples: Sequence[Example]) -> tuple[torch.Tensor, int]:
        """A batch of B examples -> (mean cross-entropy over all answer tokens, number of answer tokens)."""
        vlm, device = self.vlm, self.vlm.device
        embed = self.model.get_input_embeddings()
        rows, targets, positions = [], [], []
        for b, ex in enumerate(examples):
            visual = visual_inputs(ex.memory_for(vlm), self.dynamics if ex.fused else None)  # [N, D]
            prompt = prompt_ids(vlm.tokenizer, ex.question, vlm.video_marker, vlm.video_token_id, visual.shape[0],
                                vlm.chat_template)
            answer = _answer_ids(vlm, ex.answer)
            ids = torch.tensor(prompt + answer, device=device)  # [L_b]
            rows.append(splice_visual(embed(ids), ids, visual, vlm.video_token_id))  # [L_b, D]
            # logits at position p predict token p + 1: the answer's tokens are predicted from len(prompt) - 1 on
            positions += [(b, len(prompt) - 1 + j) for j in range(len(answer))]
            targets += answer
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[1], device=device, dtype=rows[0].dtype)  # [B, L, D]
        mask = torch.zeros(len(rows), length, device=device, dtype=torch.long)  # [B, L]; right padding
        for b, r in enumerate(rows):
            embeds[b, :r.shape[0]] = r
            mask[b, :r.shape[0]] = 1
        hidden = self.model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # [B, L, D]
        index = torch.tensor(positions, device=device)  # [A, 2]
        logits = self.model.lm_head(hidden[index[:, 0], index[:, 1]])  # [A, V]: only the answer positions
        loss = F.cross_entropy(logits.float(), torch.tensor(targets, device=device))
        return loss, len(targets)
