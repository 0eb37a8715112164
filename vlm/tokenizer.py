"""A byte-level tokenizer built in code, for tiny models that must work with no files and no network."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vlm.prompt import CHATML_TEMPLATE

#: Special tokens in Qwen2 / LLaVA-OneVision spelling, so prompts look like the real model's.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """256 byte tokens (any text encodes, no unknown token) + SPECIAL_TOKENS; ChatML chat template (saved
    with the tokenizer for other tools; the model uses its family's template).

    No merges: one token per byte keeps the vocabulary (and the tiny model's output layer) small.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def printable_ascii_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of the byte tokens for printable ASCII (space to '~'); a random model limited to them emits
    readable noise instead of control bytes and broken UTF-8."""
    return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(chr(c))[0]) for c in range(32, 127)]
