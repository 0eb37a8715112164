"""The training loss: the serving prompt with the memory spliced in, then the answer and <|im_end|>;
cross-entropy on the answer positions only, batched with right padding and an attention mask.

The prompt is built by `vlm.prompt.prompt_ids` with the model's own chat template, exactly as
`LlavaOnevision.generate` builds it at answer time, so the model learns the distribution it is asked from.

The dense signal: an example whose memory tokens have targets (train/oracle.py `token_targets`: per token the
first answer token of its object's shape, colour, zone, direction and entry second, background tokens naming
"nothing") adds, with weight `aux_weight`, the cross-entropy of each memory token's own last hidden state,
read through the language model's output head, against each of those words. So every example carries about
K x 5 labels instead of the one answer, and each token's state comes to say in words what it holds, which the
answer then only has to find and copy. The motion words (zone, direction, entry second) are asked a second time,
with weight `motion_weight`, of the fused tokens as the language model receives them: only the cross-dynamics
attention can put them there, and a gradient that has crossed every layer of the language model reached it too
weakly to teach it (measured: on oracle memories the tokens named their zone 0.31 of the time after 600 steps,
0.68 with this loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compressor.attention import CrossDynamicsAttention, fuse_memory
from train.formats import MemoryFormat
from train.memory import FrameSource, Memory, live_memory
from train.oracle import IGNORE, MOTION_COLUMNS
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
    targets: torch.Tensor | None = None
    focus: torch.Tensor | None = None

    @classmethod
    def of(cls, visual: Memory | FrameSource, question: str, answer: str, fmt: MemoryFormat, category: str = "user",
           qa: object | None = None, targets: torch.Tensor | None = None,
           focus: torch.Tensor | None = None) -> Example:
        """An example answered from a memory, or from frames when `visual` is a FrameSource (slow path);
        `targets` [K, A] int64: answer words per base token for the auxiliary loss; `focus` [F] int64: the base
        tokens the answer depends on, for the attention loss (None: no such loss for this example)."""
        live = isinstance(visual, FrameSource)
        return cls(None if live else visual, question, answer, fmt.uses_dynamics, category, qa,
                   visual if live else None, targets, focus)

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


def _word_loss(logits: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Logits [M, V] of M tokens, target words [M, A] (IGNORE: none) -> the mean cross-entropy of every word
    (multi-label: each token's one distribution is asked for each of its A words)."""
    return F.cross_entropy(logits.unsqueeze(1).expand(-1, words.shape[1], -1).flatten(0, 1), words.reshape(-1),
                           ignore_index=IGNORE)


class QAObjective(nn.Module):
    """The whole trainable model (LLaVA-OneVision + cross-dynamics attention) as one module whose forward is
    the batch loss, so DDP synchronises every part's gradients in one place.

    Losses (weights: 1, `aux_weight`, `motion_weight`, `focus_weight`):
      answer: cross-entropy of the answer tokens (and <|im_end|>);
      aux:    each memory token with targets names its object's words from its last hidden state (module docstring);
      motion: each fused memory token names its object's motion words (zone, direction, entry second) as it
              enters the language model, through the output head: the cross-dynamics attention's own signal;
      focus:  at the position that writes the answer's first token, head 0 of every layer but the first puts
              its attention on the memory tokens the answer depends on (``Example.focus``): -log of the share
              it gives them. The retrieval the answer needs is then taught directly instead of being found
              after a long plateau. Needs the eager attention (the weights are not returned otherwise), which
              this module switches on while it trains and off again with ``serving()``.
    """

    def __init__(self, vlm: LlavaOnevision, dynamics: CrossDynamicsAttention, aux_weight: float = 0.0,
                 focus_weight: float = 0.0, motion_weight: float = 0.0) -> None:
        super().__init__()
        self.vlm = vlm  # plain attribute: the tokenizer and prompt settings; its modules are registered below
        self.model = vlm.model
        self.dynamics = dynamics
        self.aux_weight, self.focus_weight, self.motion_weight = aux_weight, focus_weight, motion_weight
        self.last = {"aux": 0.0, "focus": 0.0, "motion": 0.0}  # the latest batch's auxiliary losses (for the metrics log)
        self._prompts: dict[tuple[str, int], list[int]] = {}  # (question, visual tokens) -> prompt ids
        self._attention = self.model.config.text_config._attn_implementation
        if focus_weight:
            self.model.set_attn_implementation("eager")

    def serving(self) -> None:
        """Back to the attention implementation the model serves with (before saving it)."""
        self.model.set_attn_implementation(self._attention)

    def _prompt(self, question: str, num_visual: int) -> list[int]:
        key = (question, num_visual)
        if key not in self._prompts:  # the chat template costs more than a small model's step per example
            vlm = self.vlm
            self._prompts[key] = prompt_ids(vlm.tokenizer, question, vlm.video_marker, vlm.video_token_id,
                                            num_visual, vlm.chat_template)
        return self._prompts[key]

    def forward(self, examples: Sequence[Example]) -> tuple[torch.Tensor, int]:
        """A batch of B examples -> (answer cross-entropy + aux_weight x aux + motion_weight x motion +
        focus_weight x focus, number of answer tokens)."""
        vlm, device = self.vlm, self.vlm.device
        self.last = dict.fromkeys(self.last, 0.0)
        embed = self.model.get_input_embeddings()
        rows, targets, positions = [], [], []
        token_positions, token_targets = [], []  # [(b, position)], [[A] targets] of memory tokens with targets
        fused_tokens, motion_targets = [], []  # [[K, D] fused base], [[K, 3] motion words] of fused memories
        focus_rows = []  # (b, answer position, positions of the focus tokens)
        for b, ex in enumerate(examples):
            visual = visual_inputs(ex.memory_for(vlm), self.dynamics if ex.fused else None)  # [N, D]
            prompt = self._prompt(ex.question, visual.shape[0])
            answer = _answer_ids(vlm, ex.answer)
            ids = torch.tensor(prompt + answer, device=device)  # [L_b]
            rows.append(splice_visual(embed(ids), ids, visual, vlm.video_token_id))  # [L_b, D]
            # logits at position p predict token p + 1: the answer's tokens are predicted from len(prompt) - 1 on
            positions += [(b, len(prompt) - 1 + j) for j in range(len(answer))]
            targets += answer
            where = (ids == vlm.video_token_id).nonzero().flatten()  # [N] visual positions, base tokens first
            if self.aux_weight and ex.targets is not None:
                token_positions += [(b, int(p)) for p in where[:ex.targets.shape[0]]]
                token_targets.append(ex.targets[:len(where)])
            if self.motion_weight and ex.targets is not None and ex.fused:
                fused_tokens.append(visual[:ex.targets.shape[0]])
                motion_targets.append(ex.targets[:, MOTION_COLUMNS])
            if self.focus_weight and ex.focus is not None and len(ex.focus):
                focus_rows.append((b, len(prompt) - 1, where[ex.focus.to(device)]))
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[1], device=device, dtype=rows[0].dtype)  # [B, L, D]
        mask = torch.zeros(len(rows), length, device=device, dtype=torch.long)  # [B, L]; right padding
        for b, r in enumerate(rows):
            embeds[b, :r.shape[0]] = r
            mask[b, :r.shape[0]] = 1
        out = self.model.model(inputs_embeds=embeds, attention_mask=mask, output_attentions=bool(focus_rows))
        hidden = out.last_hidden_state  # [B, L, D]
        index = torch.tensor(positions, device=device)  # [A, 2]
        logits = self.model.lm_head(hidden[index[:, 0], index[:, 1]])  # [A, V]: only the answer positions
        loss = F.cross_entropy(logits.float(), torch.tensor(targets, device=device))
        if token_positions:
            at = torch.tensor(token_positions, device=device)  # [M, 2]
            word_logits = self.model.lm_head(hidden[at[:, 0], at[:, 1]]).float()  # [M, V]
            aux = _word_loss(word_logits, torch.cat(token_targets).to(device))
            self.last["aux"] = float(aux.detach())
            loss = loss + self.aux_weight * aux
        if fused_tokens:
            fused_logits = self.model.lm_head(torch.cat(fused_tokens)).float()  # [M, V]
            motion = _word_loss(fused_logits, torch.cat(motion_targets).to(device))
            self.last["motion"] = float(motion.detach())
            loss = loss + self.motion_weight * motion
        if focus_rows:
            layers = out.attentions[1:] or out.attentions  # [B, H, L, L] per layer; the first cannot know yet
            shares = [layer[b, 0, p, keys].float().sum() for layer in layers for b, p, keys in focus_rows]
            focus = -torch.log(torch.stack(shares).clamp(min=1e-6)).mean()
            self.last["focus"] = float(focus.detach())
            loss = loss + self.focus_weight * focus
        return loss, len(targets)
