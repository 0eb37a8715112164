"""How an answer and a stream's status read on a terminal, shared by the ``tokdyn`` CLI and the demo (neither
imports the other for it)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from actors.status import StreamStatus


def print_answer(events: Iterable[dict[str, Any]], out: TextIO = sys.stdout) -> dict[str, Any]:
    """Print delta texts as they arrive; return the final "done" event."""
    done: dict[str, Any] = {}
    for event in events:
        if event["type"] == "delta":
            out.write(event["text"])
            out.flush()
        else:
            done = event
    out.write("\n")
    return done


def format_span(done: dict[str, Any]) -> str:
    """One line about an answer's "done" event: snapshot version, media span, visual tokens, finish."""
    span = done.get("span") or {}
    return (f"[snapshot v{done.get('snapshot_version')}, media {span.get('t_start', 0):.1f}-"
            f"{span.get('t_end', 0):.1f} s, {done.get('usage', {}).get('visual_tokens')} visual tokens, "
            f"{done.get('finish_reason')}]")


def status_line(s: StreamStatus) -> str:
    """One line of a stream's telemetry (the URL is redacted already)."""
    return (f"{s.stream_id:<12} {s.state:<12} frames {s.frames_in or 0:>6}  "
            f"chunks {s.chunks_compressed or 0:>4}  tokens {s.tokens_held or 0}/"
            f"{s.tokens_seen or 0} ({s.compression_ratio or 0:.0f}x)  lag {s.lag_s or 0:.2f}s  "
            f"drops {s.dropped or 0}  gaps {s.sequence_gaps or 0}  reconnects {s.reconnects or 0}  {s.url}")
