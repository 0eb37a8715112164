"""The learning-rate schedule every stage uses: linear warm-up, then cosine decay to a tenth of the peak."""

from __future__ import annotations

import math

FLOOR = 0.1  # the decay ends at this share of the peak rate


def warmup_cosine(step: int, total: int, peak: float, warmup_steps: int) -> float:
    """The learning rate at optimiser step `step` (0-based) of `total`: rises linearly to `peak` over
    `warmup_steps`, then falls along a cosine to FLOOR * peak at `total` (and stays there past it)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return peak * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))
