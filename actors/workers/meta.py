"""Reading the `meta` of a wire message without trusting it.

The codec (stream/codec.py) guarantees only that `meta` is a msgpack map of plain values; any key may hold
a value of any type (a string, a list, NaN, 1e308). The actors read the stage timings, the send time and
(the LLM) the lag from it, all through here: a key that is absent is fine (None / {}), a key that is
present with anything but finite, non-negative seconds makes the whole message bad (BadMeta, a
ValueError), so the actor counts it with its other bad messages and skips it, instead of raising later or
folding garbage into its telemetry.
"""

from __future__ import annotations

import math
from typing import Any

MAX_STAGES = 32  # stage names a message may carry (the pipeline uses 4-6)
MAX_STAGE_CHARS = 32


class BadMeta(ValueError):
    """A message's meta holds a known key with a value of the wrong type or range."""


def seconds(value: Any) -> float | None:
    """`value` as finite, non-negative seconds, or None (bools, strings, NaN, inf, negatives)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def optional_seconds(meta: dict[str, Any], key: str) -> float | None:
    """`meta[key]` as seconds; None when absent (or null). BadMeta for any other value."""
    value = meta.get(key)
    if value is None:
        return None
    s = seconds(value)
    if s is None:
        raise BadMeta(f"meta.{key}: expected finite seconds >= 0, got {value!r:.60}")
    return s


def timings_of(meta: dict[str, Any]) -> dict[str, float]:
    """`meta["timings"]` ({stage name: seconds}); {} when absent. BadMeta unless a small map of names
    (1..MAX_STAGE_CHARS characters) to finite seconds >= 0."""
    raw = meta.get("timings")
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_STAGES:
        raise BadMeta(f"meta.timings: expected a map of up to {MAX_STAGES} stages, got {raw!r:.60}")
    out: dict[str, float] = {}
    for stage, value in raw.items():
        s = seconds(value)
        if not isinstance(stage, str) or not 0 < len(stage) <= MAX_STAGE_CHARS or s is None:
            raise BadMeta(f"meta.timings: expected stage names -> finite seconds >= 0, got {stage!r:.40}: "
                          f"{value!r:.40}")
        out[stage] = s
    return out


def with_transport(meta: dict[str, Any], received: float) -> dict[str, float]:
    """The message's timings with this hop's transport time (from `meta["sent_at"]`, the sender's wall
    clock, to `received`; 0 for a sender whose clock runs ahead) added to "transport". Raises BadMeta."""
    timings = timings_of(meta)
    sent = optional_seconds(meta, "sent_at")
    hop = max(0.0, received - sent) if sent is not None else 0.0
    timings["transport"] = timings.get("transport", 0.0) + hop
    return timings
