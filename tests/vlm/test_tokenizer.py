"""Tokenizers built in code: bytes (the test model's) and byte-level BPE learned from a corpus (the scene
model's): any text round-trips, learned words are single tokens, and the result is the same on every run."""

from __future__ import annotations

import pytest

from vlm.tokenizer import SPECIAL_TOKENS, bpe_tokenizer, byte_level_tokenizer, printable_ids

CORPUS = ["Which way is the green cross moving?\nleft", "What colour is the star?\nred"] * 20


@pytest.fixture(scope="module")
def bpe():
    return bpe_tokenizer(CORPUS, 400)


def test_bpe_learns_corpus_words_as_single_tokens(bpe):
    assert bpe.tokenize("Which way is the green cross moving?") == \
        ["Which", "Ġway", "Ġis", "Ġthe", "Ġgreen", "Ġcross", "Ġmoving", "?"]
    assert bpe.tokenize("left") == ["left"]  # an answer opens its line: the word without a leading space


@pytest.mark.parametrize("text", ["hello Wörld 123", "tabs\tand\nnewlines", "émoji 🎥 ok", ""])
def test_any_text_round_trips(bpe, text):
    for tokenizer in (bpe, byte_level_tokenizer()):
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_bpe_is_deterministic_and_keeps_the_special_tokens(bpe):
    again = bpe_tokenizer(CORPUS, 400)
    assert again.get_vocab() == bpe.get_vocab()
    for token in SPECIAL_TOKENS:
        assert bpe.tokenize(f"a{token}b")[1] == token


def test_printable_ids_decode_to_printable_ascii_and_exclude_specials(bpe):
    for tokenizer in (bpe, byte_level_tokenizer()):
        ids = printable_ids(tokenizer)
        assert all(32 <= ord(c) < 127 for i in ids for c in tokenizer.decode([i]))
        assert not set(ids) & set(tokenizer.all_special_ids)
        assert tokenizer.convert_tokens_to_ids("<video>") not in ids
    assert len(printable_ids(byte_level_tokenizer())) == 95  # space to '~'
    assert bpe.convert_tokens_to_ids("Ġgreen") in printable_ids(bpe)
