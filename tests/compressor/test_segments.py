"""Segments and window memories: sealing, restore, windows that draw only on their span, retention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.config import CompressorConfig
from compressor.errors import InvalidTokens
from compressor.metrics import fidelity_keymap
from compressor.offline import token_dynamics
from compressor.segments import OPEN, SegmentStore, WindowOutOfRange, window_from_folder
from tests.compressor.helpers import clustered_tokens, timestamps

CONFIG = CompressorConfig(budget=6, segment_s=10.0, half_life_s=30.0)


def content(seconds: int, seed: int) -> torch.Tensor:
    """``[2 * seconds, 4, 4, 16]`` tokens of 5 directions drawn from ``seed`` (2 frames per second)."""
    return clustered_tokens(2 * seconds, centres=5, seed=seed, noise=0.05)


def feed(store: SegmentStore, tokens: torch.Tensor, start_frame: int) -> None:
    for i in range(0, tokens.shape[0], 4):
        store.update(tokens[i:i + 4], timestamps(start_frame + i, tokens[i:i + 4].shape[0]))


def test_segments_sealed_every_span_and_open_one_restored(tmp_path) -> None:
    # given 25 s of video at 2 frames/s in chunks of 4 frames, segments of 10 s
    store = SegmentStore(tmp_path, CONFIG)
    feed(store, content(25, 0), 0)
    # then two segments are sealed (each sealed at the first chunk boundary past 10 s) and one is open
    spans = [(a, b) for a, b, _ in store.sealed()]
    assert spans == [(0.0, 11.5), (12.0, 23.5)] and (tmp_path / OPEN).exists()
    # when the store is reopened (actor restart), then it continues the open segment
    again = SegmentStore(tmp_path, CONFIG)
    feed(again, content(5, 1)[:4], 50)
    assert again.window(24.0, 26.0).snapshot.frames_seen == 5  # 24.0, 24.5 from before; 25.0..26.0 new
    # and a bad chunk changes nothing
    with pytest.raises(InvalidTokens):
        again.update(content(1, 1), np.array([0.0, 1.0]))  # time going backwards


def test_window_draws_only_on_its_span(tmp_path) -> None:
    # given 20 s of content A, then 20 s of unrelated content B
    store = SegmentStore(tmp_path, CONFIG)
    a, b = content(20, 1), content(20, 2)
    feed(store, a, 0)
    feed(store, b, 40)
    # when a window asks about the first 12 s only
    window = store.window(0.0, 12.0)
    # then its span, frames and tokens come from A alone: every base token is near one of A's directions
    snap = window.snapshot
    assert 0.0 <= snap.t_start and snap.t_end <= 12.0 and window.key_map.shape[0] == snap.frames_seen == 25
    assert snap.base.shape[0] <= CONFIG.base_budget and window.segments == 2
    base = torch.nn.functional.normalize(torch.from_numpy(snap.base.copy()), dim=1)
    a_dirs = torch.nn.functional.normalize(a.reshape(-1, 16), dim=1)
    b_dirs = torch.nn.functional.normalize(b.reshape(-1, 16), dim=1)
    assert float((base @ a_dirs.T).max(dim=1).values.min()) > 0.8
    assert float((base @ b_dirs.T).max(dim=1).values.max()) < float((base @ a_dirs.T).max(dim=1).values.min())
    # and it reconstructs its frames about as well as offline Token Dynamics fitted on them alone
    frames = a[:25]
    ours = fidelity_keymap(frames, torch.from_numpy(snap.base.copy()), window.key_map)
    offline = token_dynamics(frames, snap.base.shape[0]).reconstruct()
    reference = float(torch.nn.functional.cosine_similarity(offline, frames, dim=-1).mean())
    assert ours >= 0.97 * reference


def test_window_cost_bounded_by_its_segments(tmp_path) -> None:
    # given a long stream (12 segments), when a 10 s window is asked, then it reads at most 3 segments
    store = SegmentStore(tmp_path, CONFIG)
    feed(store, content(120, 3), 0)
    assert len(store.sealed()) >= 10
    assert store.window(60.0, 70.0).segments <= 3
    # a reader with only the folder builds the same memory
    assert np.array_equal(window_from_folder(tmp_path, 60.0, 70.0, CONFIG.base_budget).snapshot.base,
                          store.window(60.0, 70.0).snapshot.base)


def test_retention_in_time_and_bytes(tmp_path) -> None:
    # given segments kept for 25 s of media time
    store = SegmentStore(tmp_path, CompressorConfig(**{**CONFIG.to_dict(), "retention_s": 25.0}))
    feed(store, content(60, 4), 0)
    # then sealed segments that ended more than 25 s before the newest frame are gone
    newest = max(b for _, b, _ in store.sealed())
    assert all(t_end >= newest - 25.0 for _, t_end, _ in store.sealed())
    # and a window beyond retention is refused, naming what is held (no paths)
    with pytest.raises(WindowOutOfRange, match=r"expected a span the segments hold") as info:
        store.window(0.0, 5.0)
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(WindowOutOfRange, match="t_start <= t_end"):
        store.window(5.0, 1.0)
    # given a byte limit of about two segments, then only the newest ones stay
    size = max(path.stat().st_size for _, _, path in store.sealed())
    small = SegmentStore(tmp_path / "small", CompressorConfig(**{**CONFIG.to_dict(), "retention_bytes": 2 * size + 10}))
    feed(small, content(60, 4), 0)
    sealed = small.sealed()
    assert len(sealed) == 2 and sealed[-1][1] >= 48.0


def test_damaged_segment_files_refused_and_skipped(tmp_path) -> None:
    # given sealed segments on disk
    from compressor.errors import InvalidState
    from compressor.segments import decode_sealed
    from tests.compressor.test_state_files import mutate_bytes
    import random

    store = SegmentStore(tmp_path, CONFIG)
    feed(store, content(30, 5), 0)
    (_, _, first), (_, _, second) = store.sealed()[:2]
    good = first.read_bytes()
    before = decode_sealed(good)
    # when 300 damaged copies are read, then each is refused with the one error type, or reads the same
    rng = random.Random(2)
    for _ in range(300):
        try:
            part = decode_sealed(mutate_bytes(good, rng))
        except InvalidState:
            continue
        assert np.array_equal(part.key_map, before.key_map) and np.array_equal(part.sums, before.sums)
    # and a window over a damaged file still answers from the segments that are intact
    first.write_bytes(good[:-3])
    window = store.window(0.0, 30.0)
    assert window.segments == 2 and window.snapshot.t_start >= 12.0
