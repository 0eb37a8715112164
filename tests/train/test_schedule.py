"""The learning-rate schedule: linear warm-up to the peak, cosine decay to a tenth of it at the last step."""

from __future__ import annotations

import pytest

from train.schedule import FLOOR, warmup_cosine


def test_rises_linearly_then_decays_to_the_floor_and_stays_there():
    lrs = [warmup_cosine(step, 100, 1.0, 10) for step in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warm-up: (step + 1) / 10
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))  # never rises again
    assert lrs[55] == pytest.approx(FLOOR + (1 - FLOOR) / 2)  # half-way through the decay
    assert lrs[100] == pytest.approx(FLOOR) and lrs[119] == pytest.approx(FLOOR)


def test_no_warm_up_starts_at_the_peak():
    assert warmup_cosine(0, 50, 3e-3, 0) == pytest.approx(3e-3)
