"""Yes/no answers to many questions over one memory, with one prefill of the memory (prefix reuse).

Every rule's prompt is the same chat template with the same K visual tokens and only the question differs,
which comes last. So the longest common prefix of the rules' token ids (system turn, the K visual tokens,
often the start of the questions) is run once, its KV cache repeated over a batch of the rules, and only each
rule's own suffix (its question and the assistant header, about 10-25 tokens, right-padded to the longest)
runs on top of it, in one batched forward pass. The answer is the next-token logit of "yes" against "no" at
each rule's last real position (right padding never reaches it: attention is causal), which is cheap and
deterministic, and gives a margin as a confidence.

Works on any model with the LLaVA-OneVision attributes of vlm/llava_onevision.py (model, tokenizer,
video_marker, video_token_id, chat_template); uses only its public attributes and vlm.prompt.
"""

from __future__ import annotations

from typing import Any

import torch

from vlm.prompt import prompt_ids, splice_visual

YES, NO = "yes", "no"
IDS_CACHED = 4096  # prompts whose token ids are kept (rules x distinct memory sizes)
REQUIRED = ("model", "tokenizer", "video_marker", "video_token_id", "chat_template")


def single_token(tokenizer: Any, word: str) -> int:
    """The token id of `word` as an answer's first token (its first piece when the tokenizer splits it)."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"answer word {word!r}: expected at least one token, got none")
    return int(ids[0])


class RuleScorer:
    """Scores yes/no questions over visual tokens [N, D] of one snapshot; `margins` is the batched path."""

    def __init__(self, vlm: Any) -> None:
        missing = [name for name in REQUIRED if not hasattr(vlm, name)]
        if missing:
            raise TypeError(f"rule scoring: expected a LLaVA-OneVision-like model, got one without {missing}")
        self.vlm = vlm
        self.yes_id = single_token(vlm.tokenizer, YES)
        self.no_id = single_token(vlm.tokenizer, NO)
        self._ids_cache: dict[tuple[int, str], list[int]] = {}

    def _ids(self, num_visual: int, question: str) -> list[int]:
        """The prompt's token ids, cached: a rule's prompt is the same on every snapshot (the chat template's
        rendering costs more than a tiny model's prefill of it)."""
        key = (num_visual, question)
        ids = self._ids_cache.get(key)
        if ids is None:
            v = self.vlm
            ids = prompt_ids(v.tokenizer, question, v.video_marker, v.video_token_id, num_visual, v.chat_template)
            if len(self._ids_cache) >= IDS_CACHED:
                self._ids_cache.clear()
            self._ids_cache[key] = ids
        return ids

    def _embeds(self, ids: list[int], visual: torch.Tensor) -> torch.Tensor:
        """ids (with exactly visual.shape[0] placeholders) -> embeddings [L, D] with the visual tokens in."""
        device = self.vlm.model.device
        tensor = torch.tensor(ids, device=device)
        embeds = self.vlm.model.get_input_embeddings()(tensor)
        return splice_visual(embeds, tensor, visual.to(device), self.vlm.video_token_id)

    def _margin(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., V] -> logit(yes) - logit(no) [...]."""
        return (logits[..., self.yes_id] - logits[..., self.no_id]).float()

    def margins(self, visual: torch.Tensor, questions: list[str]) -> list[float]:
        """logit("yes") - logit("no") after each question, over ONE prefill of the shared prefix. > 0: yes."""
        if not questions:
            return []
        all_ids = [self._ids(int(visual.shape[0]), q) for q in questions]
        shared = min(len(ids) for ids in all_ids) - 1  # every rule keeps at least one token of its own
        for ids in all_ids[1:]:
            shared = next((i for i in range(shared) if ids[i] != all_ids[0][i]), shared)
        if all_ids[0][:shared].count(self.vlm.video_token_id) != visual.shape[0]:
            raise ValueError("rule prompts: expected every visual placeholder in the shared prefix, got the "
                             "questions before the memory (check the chat template)")
        model = self.vlm.model
        with torch.inference_mode():
            prefix = self._embeds(all_ids[0][:shared], visual).unsqueeze(0)  # [1, P, D]
            cache = model(inputs_embeds=prefix, use_cache=True, logits_to_keep=1).past_key_values
            suffixes = [ids[shared:] for ids in all_ids]
            width = max(len(s) for s in suffixes)
            pad = suffixes[0][-1]  # any id: positions after a row's last real token never reach it
            batch = torch.tensor([s + [pad] * (width - len(s)) for s in suffixes], device=model.device)  # [R, W]
            if len(questions) > 1:
                cache.batch_repeat_interleave(len(questions))
            embeds = model.get_input_embeddings()(batch)  # [R, W, D]
            last = torch.tensor([len(s) - 1 for s in suffixes], device=model.device)
            keep = torch.unique(last)  # the positions whose logits are needed, [U]
            logits = model(inputs_embeds=embeds, past_key_values=cache, use_cache=True, logits_to_keep=keep).logits
            column = torch.searchsorted(keep, last)  # row r's last position within `keep`
            picked = logits[torch.arange(len(questions), device=model.device), column]  # [R, V]
            return self._margin(picked).tolist()

    def margins_separately(self, visual: torch.Tensor, questions: list[str]) -> list[float]:
        """The same answers with one full prefill per question (the baseline prefix reuse is measured against)."""
        out = []
        with torch.inference_mode():
            for question in questions:
                embeds = self._embeds(self._ids(int(visual.shape[0]), question), visual).unsqueeze(0)
                logits = self.vlm.model(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[0, -1]
                out.append(float(self._margin(logits)))
        return out
