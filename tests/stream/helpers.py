"""Shared test helpers for stream tests (plain functions and constants, no fixtures)."""

from __future__ import annotations

from stream.synthetic import SyntheticVideo

SMALL = SyntheticVideo(width=160, height=120, fps=30, seconds=2)
# (suffix, encoder): H.264/mp4, VP9/webm, H.264/mkv, MPEG-4 part 2/avi
FORMATS = [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mkv", "libx264"), ("avi", "mpeg4")]


def reference_selection(timestamps: list[float], rate_hz: float) -> list[float]:
    """Independent statement of the rule: the first frame at or after each grid point t0 + k / rate
    (within half a millisecond: container rounding), and after a gap the grid resumes past the kept frame."""
    kept, t0 = [], timestamps[0]
    k = 0
    for t in timestamps:
        if t >= t0 + k / rate_hz - 5e-4:
            kept.append(t)
            while t0 + k / rate_hz <= t + 5e-4:
                k += 1
    return kept
