"""The interface every VLM family implements, and the errors its methods raise (all ValueErrors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from vlm.decoding import Generation

#: A conversation in the OpenAI chat shape: [{"role": "user", "content": "..." | [parts]}, ...].
Messages = Sequence[dict[str, Any]]
#: A bare question string is shorthand for a one-message user conversation.
Question = str | Messages


class PlaceholderMismatch(ValueError):
    """The prompt holds a different number of visual placeholders than there are visual tokens."""


class InputError(ValueError):
    """Frames, visual tokens or messages have the wrong type, dtype or shape (message: expected vs actual)."""


@runtime_checkable
class VisionLanguageModel(Protocol):
    """One VLM family behind one interface: frames -> visual tokens, visual tokens + question -> text.

    Attributes:
        name:        model name reported to clients ("tiny-llava-onevision", "llava-onevision:<dir>").
        meaningful:  False for random-weight models: their answers are text-shaped noise, not answers.
        hidden_size: D, the width of visual tokens (= the LLM embedding size).
        context_tokens: the most tokens (prompt + answer) the language model attends over.
        grid:        (gh, gw) visual tokens per frame after the family's pooling ((14, 14) for LLaVA-OV).
        image_size:  S, the encoder input resolution (384 for LLaVA-OV; small for tiny models).
        device, dtype: where the weights live.
    """

    name: str
    meaningful: bool
    hidden_size: int
    context_tokens: int
    grid: tuple[int, int]
    image_size: int
    device: torch.device
    dtype: torch.dtype

    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Frames uint8 [T, H, W, 3] RGB -> visual tokens [T, gh, gw, D] in the model dtype (one forward pass)."""
        ...

    def memory_tokens(self, snapshot: Any) -> torch.Tensor:
        """A stream memory (``compressor.Snapshot``) -> the visual tokens [N, D] this model reads for it."""
        ...

    def generate(
        self,
        visual: torch.Tensor,
        question: Question,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Generation:
        """Answer `question` from visual tokens [N, D]; iterate the result for text pieces as they are decoded."""
        ...

    def count_prompt_tokens(self, num_visual: int, question: Question) -> int:
        """Prompt length in tokens (chat template + `num_visual` visual tokens + the question)."""
        ...

    def save_pretrained(self, directory: str) -> None:
        """Write weights, tokenizer and preprocessing settings so that `load_vlm` can load them back."""
        ...
