"""Token-by-token generation from prompt embeddings with a KV cache, streamed as text pieces."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch

# Byte-level tokenizers decode an unfinished multi-byte character as U+FFFD; hold such text back until
# the next token completes it, so that every streamed piece is final.
_INCOMPLETE = "\ufffd"


class Generation(Iterator[str]):
    """Text pieces of one answer, streamed; the figures are final once iteration has ended.

    Nothing runs until the first `next()`: prefill happens then, so a caller may create the
    generation on one thread and drain it on another.

    Attributes:
        usage:          {"prompt_tokens", "visual_tokens", "completion_tokens", "total_tokens"}
                        (prompt_tokens includes the visual tokens; completion_tokens includes the stop token).
        finish_reason:  "stop" (end-of-turn token) or "length" (max_new_tokens reached); None while running.
        ttft_s:         seconds from the start of prefill to the first generated token.
        prefill_s:      seconds in the prefill forward pass (None before it ran).
        decode_s:       seconds in the token-by-token loop after the first token.
        text:           the pieces yielded so far, joined.
        token_ids:      the generated token ids (stop token excluded).
    """

    def __init__(
        self,
        forward: Callable[..., torch.Tensor],
        embed: Callable[[torch.Tensor], torch.Tensor],
        decode: Callable[[list[int]], str],
        prompt_embeds: torch.Tensor,
        *,
        visual_tokens: int,
        stop_ids: set[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        allowed_ids: torch.Tensor | None = None,
    ) -> None:
        """
        Args:
            forward:        (inputs_embeds [1, L, D], past) -> (logits [1, V] of the last position, past).
            embed:          token ids [1, 1] -> embeddings [1, 1, D].
            decode:         generated ids -> text (special tokens skipped).
            prompt_embeds:  [1, L, D] the whole prompt, visual tokens already spliced in.
            stop_ids:       end-of-turn token ids.
            temperature:    0 = greedy (deterministic); > 0 samples with a generator seeded by `seed`.
            allowed_ids:    [V] bool mask of the ids that may be generated, or None for all.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature: expected >= 0, got {temperature}")
        self._forward, self._embed, self._decode = forward, embed, decode
        self._prompt = prompt_embeds
        self._stop_ids = stop_ids
        self._max_new_tokens = max_new_tokens
        self._temperature = temperature
        self._allowed = allowed_ids
        self._rng = torch.Generator(device=prompt_embeds.device).manual_seed(seed)
        prompt_tokens = int(prompt_embeds.shape[1])
        self.usage = {
            "prompt_tokens": prompt_tokens,
            "visual_tokens": visual_tokens,
            "completion_tokens": 0,
            "total_tokens": prompt_tokens,
        }
        self.finish_reason: str | None = None
        self.ttft_s: float | None = None
        self.prefill_s: float | None = None
        self.decode_s = 0.0
        self.text = ""
        self.token_ids: list[int] = []
        self._pieces = self._run()

    def __next__(self) -> str:
        return next(self._pieces)

    def _pick(self, logits: torch.Tensor) -> int:
        """logits [1, V] -> next token id (greedy or sampled)."""
        logits = logits.float()
        if self._allowed is not None:
            logits = logits.masked_fill(~self._allowed, float("-inf"))
        if self._temperature == 0:
            return int(logits.argmax(-1))
        probs = torch.softmax(logits / self._temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._rng))

    def _step(self, inputs: torch.Tensor, past: object) -> tuple[int, object]:
        """inputs: prompt embeddings [1, L, D] or the previous token id [1, 1] -> (next id, cache)."""
        # inference_mode per step, never across a yield: the caller's code must not run inside it.
        with torch.inference_mode():
            embeds = self._embed(inputs) if inputs.dtype == torch.long else inputs
            logits, past = self._forward(embeds, past)
        return self._pick(logits), past

    def _emit(self, final: bool) -> str:
        decoded = self._decode(self.token_ids)
        if not final and decoded.endswith(_INCOMPLETE):
            return ""
        piece = decoded[len(self.text):]
        self.text += piece
        return piece

    def _run(self) -> Iterator[str]:
        started = time.perf_counter()
        token, past = self._step(self._prompt, None)
        self.prefill_s = self.ttft_s = time.perf_counter() - started
        loop_started = time.perf_counter()
        while True:
            self.usage["completion_tokens"] += 1
            self.usage["total_tokens"] += 1
            if token in self._stop_ids:
                self.finish_reason = "stop"
                break
            self.token_ids.append(token)
            piece = self._emit(final=False)
            if piece:
                yield piece
            if len(self.token_ids) >= self._max_new_tokens:
                self.finish_reason = "length"
                break
            token, past = self._step(torch.tensor([[token]], device=self._prompt.device), past)
        self.decode_s = time.perf_counter() - loop_started
        piece = self._emit(final=True)
        if piece:
            yield piece
