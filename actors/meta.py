"""Reading the `meta` of a wire message without trusting it.

The codec (stream/codec.py) guarantees only that `meta` is a msgpack map of plain values; any key may be
missing or hold a value of any type (a string, a list, NaN, 1e308). The actors read two things from it,
the stage timings and the send time, and both go through here, so one odd header can skew no counter and
raise nothing: values that are not finite, non-negative seconds are dropped.
"""

from __future__ import annotations

import math
from typing import Any

MAX_STAGES = 32  # stage names a message may carry (the pipeline uses 4-5); the rest are dropped
MAX_STAGE_CHARS = 32


def seconds(value: Any) -> float | None:
    """`value` as finite, non-negative seconds, or None (bools, strings, NaN, inf, negatives)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def timings_of(meta: dict[str, Any]) -> dict[str, float]:
    """The valid entries of `meta["timings"]` ({stage name: seconds}); {} when it is absent or not a map."""
    raw = meta.get("timings")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for stage, value in raw.items():
        s = seconds(value)
        if isinstance(stage, str) and 0 < len(stage) <= MAX_STAGE_CHARS and s is not None:
            out[stage] = s
            if len(out) == MAX_STAGES:
                break
    return out


def transport_s(meta: dict[str, Any], received: float) -> float:
    """Seconds from `meta["sent_at"]` (sender's wall clock) to `received`; 0 when sent_at is unusable or
    in the future (clock skew between nodes)."""
    sent = seconds(meta.get("sent_at"))
    return max(0.0, received - sent) if sent is not None else 0.0


def with_transport(meta: dict[str, Any], received: float) -> dict[str, float]:
    """The message's valid timings with this hop's transport time added to its "transport" entry."""
    timings = timings_of(meta)
    timings["transport"] = timings.get("transport", 0.0) + transport_s(meta, received)
    return timings
