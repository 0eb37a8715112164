"""The plain classes the Ray actors wrap: an Encoder batching frames across streams, an Answerer
streaming answers from visual tokens. No Ray here, so both are tested on their own."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from vlm.base import InputError, Question, VisionLanguageModel
from vlm.frames import check_frames
from vlm.stops import StopMatcher, check_stops

#: Shown with every answer of a random-weight model, so nobody mistakes its output for an answer.
NOT_MEANINGFUL = "random-weight model: the answer is not meaningful (configure a real checkpoint for real answers)"


class Encoder:
    """Frames from many streams -> visual tokens, in as few vision-tower passes as the batch size allows."""

    def __init__(self, model: VisionLanguageModel, batch_frames: int = 32) -> None:
        if batch_frames < 1:
            raise InputError(f"batch_frames: expected >= 1, got {batch_frames}")
        self.model = model
        self.batch_frames = batch_frames

    def encode(self, batch: Sequence[tuple[str, np.ndarray]]) -> list[tuple[str, torch.Tensor]]:
        """[(stream_id, frames uint8 [T_i, H, W, 3])] -> [(stream_id, tokens [T_i, gh, gw, D])], input order.

        Frames of equal size (the pipeline resizes every stream to model.image_size) are concatenated
        and encoded together, batch_frames at a time; differently sized frames go in separate passes.
        """
        checked = [(stream_id, check_frames(frames)) for stream_id, frames in batch]
        tokens: list[torch.Tensor | None] = [None] * len(checked)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, (_, frames) in enumerate(checked):
            by_size.setdefault(tuple(frames.shape[1:3]), []).append(i)
        for members in by_size.values():
            frames = torch.cat([checked[i][1] for i in members])  # [sum T_i, H, W, 3]
            encoded = torch.cat([self.model.encode_frames(part) for part in frames.split(self.batch_frames)])
            for i, part in zip(members, encoded.split([checked[i][1].shape[0] for i in members])):
                tokens[i] = part
        return [(stream_id, t) for (stream_id, _), t in zip(checked, tokens)]


class PromptTooLong(InputError):
    """The prompt (template + visual tokens + the conversation) has more tokens than the configured cap."""


class Answerer:
    """Questions about one snapshot's visual tokens -> streamed events in the LLM actor's format.

    max_prompt_tokens: prompts longer than this are refused before any compute (PromptTooLong); None = no cap.
    """

    def __init__(self, model: VisionLanguageModel, max_tokens_limit: int = 512,
                 max_prompt_tokens: int | None = None) -> None:
        self.model = model
        self.max_tokens_limit = max_tokens_limit
        self.max_prompt_tokens = max_prompt_tokens

    def stream(
        self,
        visual: torch.Tensor | np.ndarray,
        messages: Question,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Visual tokens [N, D] + a question or chat messages -> events:

        {"type": "delta", "text": str} per piece, then one {"type": "done", "usage": {...}, "finish_reason",
        "model", "meaningful", "ttft_s", "prefill_s", "decode_s", "text", **extra} (extra: e.g. the
        snapshot's "span" and "snapshot_version"); a random-weight model's done event adds "note".
        ttft_s counts from this call (prompt building included) to the first text piece.
        stop: up to 4 strings; the answer ends before the first of them (not included), finish_reason "stop".
        Raises InputError / PlaceholderMismatch (ValueErrors) before the first event for bad input, and
        PromptTooLong (an InputError naming the cap) for a prompt over `max_prompt_tokens`.
        """
        started = time.perf_counter()
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"max_tokens: expected >= 1, got {max_tokens}")
        try:
            stops = check_stops(stop)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        limit = min(max_tokens or self.max_tokens_limit, self.max_tokens_limit)
        visual = torch.as_tensor(visual) if isinstance(visual, np.ndarray) else visual
        if self.max_prompt_tokens is not None:
            # Counted before any compute: a long prompt would hold the model for the whole prefill.
            length = self.model.count_prompt_tokens(int(visual.shape[0]), messages)
            if length > self.max_prompt_tokens:
                raise PromptTooLong(f"prompt: expected at most {self.max_prompt_tokens} tokens (visual tokens "
                                    f"included), got {length}; shorten the conversation")
        generation = self.model.generate(visual, messages, max_new_tokens=limit, temperature=temperature)
        return self._events(generation, started, extra or {}, StopMatcher(stops))

    def _events(self, generation, started: float, extra: dict[str, Any],
                matcher: StopMatcher) -> Iterator[dict[str, Any]]:
        ttft_s, shown = None, []
        pieces = iter(generation)
        while not matcher.stopped:
            piece = next(pieces, None)
            text = matcher.feed(piece) if piece is not None else matcher.flush()
            if text:
                ttft_s = ttft_s if ttft_s is not None else time.perf_counter() - started
                shown.append(text)
                yield {"type": "delta", "text": text}
            if piece is None:
                break
        # Stopped: the rest is never decoded (the generation is lazy; dropping it frees the model).
        done = {
            "type": "done",
            "usage": dict(generation.usage),
            "finish_reason": "stop" if matcher.stopped else generation.finish_reason,
            "model": self.model.name,
            "meaningful": self.model.meaningful,
            "ttft_s": ttft_s if ttft_s is not None else time.perf_counter() - started,
            "prefill_s": generation.prefill_s,
            "decode_s": generation.decode_s,
            "text": "".join(shown),
            **extra,
        }
        if not self.model.meaningful:
            done["note"] = NOT_MEANINGFUL
        yield done
