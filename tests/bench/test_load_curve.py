"""bench/load_curve.py's reading of its samples: which stretch of lag the autoscaler acted on."""

from __future__ import annotations

from bench.load_curve import held_over_since


def _samples(lags: list[float | None]) -> list[dict]:
    return [{"t": float(t), "worst_lag_s": lag} for t, lag in enumerate(lags)]


def test_the_stretch_is_the_last_one_over_the_bound_long_enough_before_the_add() -> None:
    # over 2 s at 1-2 (too short), 4-9 (held 5 s), under at 10, over again at 12-13 (too short)
    lags = [0.1, 3.0, 3.0, 0.5, 2.5, 4.0, None, 9.0, 3.0, 2.1, 1.0, 0.2, 5.0, 5.0]
    assert held_over_since(_samples(lags), until_t=13, bound_s=2.0, hold_s=5.0) == 4.0
    # a gap (no lag) neither extends nor breaks the run; an add before the run ends still sees its start
    assert held_over_since(_samples(lags), until_t=9, bound_s=2.0, hold_s=5.0) == 4.0
    assert held_over_since(_samples(lags), until_t=8, bound_s=2.0, hold_s=5.0) is None  # held 4 s only by then
    assert held_over_since(_samples([0.1] * 10), until_t=9, bound_s=2.0, hold_s=0.0) is None
