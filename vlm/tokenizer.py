"""Tokenizers built in code, for tiny models that must work with no files and no network."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vlm.prompt import CHATML_TEMPLATE

#: Special tokens in Qwen2 / LLaVA-OneVision spelling, so prompts look like the real model's.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")


def _wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """256 byte tokens (any text encodes, no unknown token) + SPECIAL_TOKENS; ChatML chat template (saved
    with the tokenizer for other tools; the model uses its family's template).

    No merges: one token per byte keeps the vocabulary (and the tiny model's output layer) small.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return _wrap(core)


def bpe_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE learned from `corpus` (deterministic for a given corpus): all 256 bytes stay tokens, so
    any text still encodes, and the corpus's frequent words become single tokens.

    Why: a from-scratch model reading one token per byte spends its few layers assembling words, and its
    answers ("green", "top left") span several tokens of which only the first carries the choice. Word-sized
    tokens leave the layers for reading the visual memory and make an answer's first token the answer.
    """
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # splits on words, then bytes
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus, trainer)
    return _wrap(core)


def printable_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of the non-special tokens that decode to printable ASCII only (space to '~'), ascending; a model
    limited to them emits readable text instead of control bytes and broken UTF-8."""
    special = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    out = []
    for token, i in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if i not in special and text and all(32 <= ord(c) < 127 for c in text):
            out.append(i)
    return sorted(out)
