"""Chat prompts with visual placeholders, and splicing visual tokens into the prompt embeddings."""

from __future__ import annotations

from typing import Any

import torch

from vlm.base import InputError, PlaceholderMismatch, Question

ROLES = ("system", "user", "assistant")

#: Qwen's default system prompt.
SYSTEM_PROMPT = "You are a helpful assistant."

# ChatML with Qwen's default system prompt: the "qwen_1_5" conversation format LLaVA-OneVision was trained
# with (visual tokens, a newline, then the question, in the user turn).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _text_of(content: Any, where: str) -> str:
    """Message content (a string or OpenAI content parts) -> its text; non-text parts are skipped."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or "type" not in part:
                raise InputError(f"{where}.content[{i}]: expected a dict with a 'type', got {part!r:.80}")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise InputError(f"{where}.content[{i}].text: expected a string, got {part.get('text')!r:.80}")
                texts.append(part["text"])
        return "\n".join(texts)
    raise InputError(f"{where}.content: expected a string or a list of parts, got {type(content).__name__}")


def normalise_messages(question: Question, strip: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """A question string or OpenAI-style messages -> [{"role", "content": str}], ending with a user turn.

    `strip` lists marker strings (e.g. "<video>") removed from the text, so that a user typing a
    marker cannot add a placeholder that has no visual token behind it.
    """
    if isinstance(question, str):
        question = [{"role": "user", "content": question}]
    if not isinstance(question, (list, tuple)) or not question:
        raise InputError(f"messages: expected a question string or a non-empty list, got {question!r:.80}")
    messages = []
    for i, message in enumerate(question):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(f"messages[{i}]: expected a dict with role in {ROLES}, got {message!r:.80}")
        text = _text_of(message.get("content", ""), f"messages[{i}]")
        for marker in strip:
            text = text.replace(marker, "")
        messages.append({"role": message["role"], "content": text})
    if messages[-1]["role"] != "user":
        raise InputError(f"messages[-1].role: expected 'user' (the question), got {messages[-1]['role']!r}")
    return messages


def prompt_ids(
    tokenizer: Any, question: Question, marker: str, marker_id: int, num_visual: int, template: str = CHATML_TEMPLATE
) -> list[int]:
    """Chat template, then `num_visual` visual placeholders, then the question -> token ids.

    The placeholders open the last user turn: the visual memory belongs with the question it answers.
    `template` is a Jinja chat template over messages with string content.
    """
    messages = normalise_messages(question, strip=(marker,))
    messages[-1] = {"role": "user", "content": f"{marker}\n{messages[-1]['content']}"}
    text = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if ids.count(marker_id) != 1:
        raise PlaceholderMismatch(
            f"chat template rendered {ids.count(marker_id)} {marker!r} markers, expected 1 (check the template)"
        )
    at = ids.index(marker_id)
    return ids[:at] + [marker_id] * num_visual + ids[at + 1:]


def splice_visual(embeds: torch.Tensor, ids: torch.Tensor, visual: torch.Tensor, placeholder_id: int) -> torch.Tensor:
    """Put visual tokens [N, D] at the placeholder positions of text embeddings [L, D] (ids [L]) -> [L, D].

    Raises PlaceholderMismatch when the prompt does not hold exactly N placeholders.
    """
    if embeds.ndim != 2 or ids.shape != embeds.shape[:1]:
        raise InputError(
            f"embeds [L, D] and ids [L]: expected matching L, got {tuple(embeds.shape)} and {tuple(ids.shape)}"
        )
    if visual.ndim != 2 or visual.shape[1] != embeds.shape[1]:
        raise InputError(f"visual tokens: expected [N, {embeds.shape[1]}], got {tuple(visual.shape)}")
    mask = ids == placeholder_id  # [L]
    placeholders = int(mask.sum())
    if placeholders != visual.shape[0]:
        raise PlaceholderMismatch(
            f"visual placeholders in the prompt: {placeholders}, visual tokens given: {visual.shape[0]}; "
            "they must be equal"
        )
    out = embeds.clone()
    out[mask] = visual.to(embeds.dtype)
    return out
