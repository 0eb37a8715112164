"""The "now" motion features: latest position and presence, recent velocity, absolute times, extent."""

from __future__ import annotations

import numpy as np

from compressor.motion import MOTION_FEATURES, MotionStats, motion_features


def _moving_block(frames: int, start_col: int, step: int, stop_after: int | None = None) -> np.ndarray:
    """Key map [T, 8, 8]: cluster 1 is a 2x2 block moving right by ``step`` cells per frame (then still)."""
    key_map = np.zeros((frames, 8, 8), dtype=np.int64)
    for t in range(frames):
        moves = t if stop_after is None else min(t, stop_after)
        col = start_col + step * moves
        key_map[t, 3:5, col:col + 2] = 1
    return key_map


def _feature(features: np.ndarray, name: str, row: int = 1) -> float:
    return float(features[row, MOTION_FEATURES.index(name)])


def test_recent_velocity_points_the_way_it_moves_and_decays_when_it_stops() -> None:
    times = np.arange(8) * 0.5                                   # 2 frames per second
    moving = motion_features(_moving_block(8, 0, 1), 2, times)
    assert _feature(moving, "vel_col_now") > 0.1                 # grid units per second, to the right
    assert abs(_feature(moving, "vel_row_now")) < 1e-9
    stopped = motion_features(_moving_block(12, 0, 1, stop_after=3), 2, np.arange(12) * 0.5)
    assert abs(_feature(stopped, "vel_col_now")) < 0.2 * _feature(moving, "vel_col_now")


def test_position_and_presence_now() -> None:
    key_map = _moving_block(4, 0, 2)
    features = motion_features(key_map, 2, np.arange(4, dtype=float))
    assert _feature(features, "present_now") == 1.0
    assert np.isclose(_feature(features, "col_now"), 7 / 8)      # cells 6 and 7: centres 6.5/8 and 7.5/8
    assert np.isclose(_feature(features, "coverage_now"), 4 / 64)
    gone = key_map.copy()
    gone[-1] = 0                                                  # not in the last frame
    features = motion_features(gone, 2, np.arange(4, dtype=float))
    assert _feature(features, "present_now") == 0.0 and _feature(features, "coverage_now") == 0.0
    assert np.isclose(_feature(features, "age_s"), 1.0)


def test_absolute_times_in_media_seconds() -> None:
    key_map = np.zeros((6, 4, 4), dtype=np.int64)
    key_map[2:5, 0, 0] = 1                                        # present in frames 2..4
    features = motion_features(key_map, 2, 100.0 + np.arange(6) * 2.0)
    assert np.isclose(_feature(features, "first_seen_s"), 4.0)
    assert np.isclose(_feature(features, "last_seen_s"), 8.0)
    assert np.isclose(_feature(features, "span_s"), 10.0)


def test_extent_is_the_size_not_the_motion() -> None:
    """A fast-moving 2x2 block has a large overall spread but the same within-frame extent as a still one."""
    still = motion_features(_moving_block(6, 2, 0), 2)
    moving = motion_features(_moving_block(6, 0, 1), 2)
    assert np.isclose(_feature(still, "extent_col"), _feature(moving, "extent_col"))
    assert _feature(moving, "col_std") > _feature(still, "col_std")


def test_chunked_updates_equal_one_update_for_the_now_features() -> None:
    key_map = _moving_block(9, 0, 1, stop_after=5).reshape(9, 64)
    times = np.arange(9) * 0.5
    whole, parts = MotionStats(2, (8, 8)), MotionStats(2, (8, 8))
    whole.update(key_map, times, 0)
    for start in range(0, 9, 4):
        parts.update(key_map[start:start + 4], times[start:start + 4], start)
    order = np.arange(2)
    assert np.allclose(whole.features(order, 9, 0.0, 4.0), parts.features(order, 9, 0.0, 4.0))
