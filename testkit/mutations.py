"""Hostile wire messages: codec-valid messages whose meta (or kind) is wrong, for tests and fault runs.

Every message `hostile_messages` yields passes the codec (stream/codec.py) but must be refused by the actor
it is sent to, and counted as bad there: a known meta key holding a value of the wrong type or range, a
required key missing, or a message of a kind the actor does not take. Arrays are valid, so only the meta
or the kind is at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from stream.codec import Kind, Message

NAN, INF = float("nan"), float("inf")
# Not finite seconds >= 0 (None is left out: it means "absent", which is allowed).
BAD_SECONDS: tuple[Any, ...] = (True, -1, -0.5, NAN, INF, -INF, "1.5", "x", b"\xff", [], [1.0], {}, {"a": 1.0})
# Not an int in [0, 2**63) (a snapshot's version and counters).
BAD_COUNTS: tuple[Any, ...] = (True, -1, 1.5, NAN, INF, "1", b"", [], {}, None, 2**64 - 1)
BAD_TIMES: tuple[Any, ...] = (True, NAN, INF, -INF, "0", [], {}, None)  # media seconds: finite numbers
BAD_NAMES: tuple[Any, ...] = (1, None, [], {}, True, b"m")
BAD_TIMINGS: tuple[Any, ...] = ("fast", [], [["decode", 0.1]], 3.0,
                                *({"decode": v} for v in BAD_SECONDS),
                                {"": 0.1}, {"x" * 100: 0.1}, {f"s{i}": 0.1 for i in range(100)})


def _seconds_metas(base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("sent_at",):
        for value in BAD_SECONDS:
            yield {**base, key: value}
    for value in BAD_TIMINGS:
        yield {**base, "timings": value}


def frames_message(stream_id: str, seq: int, size: int, meta: dict[str, Any]) -> Message:
    """A valid one-frame chunk [1, size, size, 3] uint8 with `meta`."""
    return Message(Kind.FRAMES, stream_id, seq, meta,
                   {"frames": np.zeros((1, size, size, 3), np.uint8), "timestamps": np.zeros(1),
                    "arrivals": np.zeros(1)})


def tokens_message(stream_id: str, seq: int, grid: tuple[int, int], dim: int, meta: dict[str, Any]) -> Message:
    """A valid one-frame token chunk [1, gh, gw, D] float16 with `meta`."""
    return Message(Kind.TOKENS, stream_id, seq, meta,
                   {"tokens": np.zeros((1, *grid, dim), np.float16), "timestamps": np.zeros(1),
                    "arrivals": np.zeros(1)})


def snapshot_message(stream_id: str, seq: int, dim: int, meta: dict[str, Any]) -> Message:
    """A snapshot with valid arrays (K = 2 base tokens, no motion, R = 1) and `meta`."""
    return Message(Kind.SNAPSHOT, stream_id, seq, meta,
                   {"base": np.zeros((2, dim), np.float32), "motion": np.zeros((2, 0), np.float32),
                    "recent": np.zeros((1, dim), np.float32)})


def _snapshot_metas() -> Iterator[dict[str, Any]]:
    good = {"version": 1, "method": "token_dynamics", "t_start": 0.0, "t_end": 1.0, "frames_seen": 2,
            "tokens_seen": 392}
    for key in good:
        yield {k: v for k, v in good.items() if k != key}  # a required key missing
    for key, bad in (("version", BAD_COUNTS), ("frames_seen", BAD_COUNTS), ("tokens_seen", BAD_COUNTS),
                     ("t_start", BAD_TIMES), ("t_end", BAD_TIMES), ("method", BAD_NAMES)):
        for value in bad:
            yield {**good, key: value}
    for value in BAD_SECONDS:
        yield {**good, "lag_s": value}


def hostile_messages(target: str, stream_id: str, *, size: int = 0, grid: tuple[int, int] = (1, 1),
                     dim: int = 1) -> Iterator[Message]:
    """Messages the actor `target` ("encoder", "memory" or "llm") must count as bad, for `stream_id`.

    size: the encoder's frame size; grid, dim: the model's token grid and width (memory, llm).
    """
    base = {"sent_at": 1.0, "timings": {"decode": 0.01}}
    seq = 0
    if target == "encoder":
        for meta in _seconds_metas(base):
            seq += 1
            yield frames_message(stream_id, seq, size, meta)
        yield tokens_message(stream_id, seq + 1, grid, dim, base)  # wrong kinds
        yield snapshot_message(stream_id, seq + 2, dim, {})
        yield Message(Kind.STATUS, stream_id, seq + 3, {"state": "streaming"})
    elif target == "memory":
        for meta in _seconds_metas(base):
            seq += 1
            yield tokens_message(stream_id, seq, grid, dim, meta)
        yield frames_message(stream_id, seq + 1, 4, base)  # wrong kinds, and a stream that is not this one
        yield snapshot_message(stream_id, seq + 2, dim, {})
        yield Message(Kind.STATUS, stream_id, seq + 3, {"state": "streaming"})
        yield tokens_message(f"{stream_id}-other", seq + 4, grid, dim, base)
    elif target == "llm":
        for meta in _snapshot_metas():
            seq += 1
            yield snapshot_message(stream_id, seq, dim, meta)
        yield tokens_message(stream_id, seq + 1, grid, dim, base)  # wrong kinds
        yield frames_message(stream_id, seq + 2, 4, base)
        yield Message(Kind.EOS, stream_id, seq + 3, {"reason": "hostile"})
    else:
        raise ValueError(f"target: expected 'encoder', 'memory' or 'llm', got {target!r}")
