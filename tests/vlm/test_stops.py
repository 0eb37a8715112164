"""OpenAI `stop` over streamed pieces: nothing from a stop string on is released, whatever the split."""

from __future__ import annotations

import pytest

from vlm.stops import StopMatcher, check_stops


def _run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    return out, matcher.stopped


@pytest.mark.parametrize("split", range(1, 8))
def test_every_split_of_the_text_gives_the_same_answer(split):
    text = "the cat sat. END and more"
    pieces = [text[i:i + split] for i in range(0, len(text), split)]
    assert _run(pieces, ["END"]) == ("the cat sat. ", True)
    assert _run(pieces, ["zzz"]) == (text, False)  # a stop that never comes: everything, nothing held back
    assert _run(pieces, ["zzz", " sat"]) == ("the cat", True)  # the earliest of several


def test_a_partial_match_is_held_then_released():
    matcher = StopMatcher(["abc"])
    assert matcher.feed("xa") == "x"  # "a" may start "abc"
    assert matcher.feed("b") == ""
    assert matcher.feed("d") == "abd"  # it did not
    assert matcher.flush() == "" and not matcher.stopped


@pytest.mark.parametrize("bad", [["a"] * 5, [""], ["x" * 300], [3]])
def test_bad_stops_are_refused(bad):
    with pytest.raises(ValueError, match="stop"):
        check_stops(bad)
