"""The memory worker's segments (sealed per span of media time, deleted with the stream) and its refusal of
a checkpoint made with another budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.config import StreamSpec, TransportConfig
from actors.errors import WindowUnavailable
from actors.workers.memory import MemoryWorker, checkpoint_file, segments_folder
from compressor.config import CompressorConfig
from compressor.segments import window_from_folder
from stream.codec import Kind, Message
from stream.transport import Socket
from tests.helpers import wait_for

TRANSPORT = TransportConfig(hwm=8, send_timeout_ms=200)


def tokens_msg(seq: int, frames: int = 4) -> Message:
    """Chunk ``seq``: 4 frames of [4, 4, 16] tokens at 1 frame per media second."""
    rng = np.random.default_rng(seq)
    return Message(Kind.TOKENS, "m", seq, {"sent_at": time.time()},
                   {"tokens": rng.standard_normal((frames, 4, 4, 16)).astype(np.float32),
                    "timestamps": np.arange(frames, dtype=np.float64) + seq * frames})


def test_memory_seals_segments_answers_windows_and_removes_them(tmp_path) -> None:
    # given a memory with 10 s segments, when 30 s of chunks arrive
    spec = StreamSpec("m", "synthetic://", compressor=CompressorConfig(budget=6, segment_s=10.0))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        for seq in range(8):
            assert push.send(tokens_msg(seq), timeout_ms=5000)
        wait_for(lambda: worker.status().chunks == 8, 60.0, "8 chunks applied")
        # then two segments are sealed and a window over the first 10 s is built from the folder alone
        folder = segments_folder(tmp_path, "m")
        assert len(list(folder.glob("*_*.seg"))) == 2
        window = window_from_folder(folder, 0.0, 9.0, 5)
        assert window.snapshot.t_start == 0.0 and window.snapshot.t_end == 9.0 and window.key_map.shape[0] == 10
        # and the worker hands that window's memory out itself (what the LLM answers from, on any node), with
        # the live memory's K and version; a window the stream never reached is refused, naming the span held
        mine = worker.window(0.0, 9.0)
        live = worker.status()
        assert (mine.t_start, mine.t_end, mine.version) == (0.0, 9.0, live.snapshot_version)
        assert mine.base.shape[0] <= 6
        assert np.array_equal(mine.base, window_from_folder(folder, 0.0, 9.0, 6).snapshot.base)
        with pytest.raises(WindowUnavailable, match="stream 'm'"):
            worker.window(100.0, 120.0)
    finally:
        push.close()
        worker.close(delete_checkpoint=True)
    # when the stream is removed, then its segments go with its checkpoint
    assert not folder.exists() and not checkpoint_file(tmp_path, "m").exists()


def test_checkpoint_with_another_budget_is_refused_and_kept_aside(tmp_path) -> None:
    # given a checkpoint made with budget 6
    spec = StreamSpec("m", "synthetic://", compressor=CompressorConfig(budget=6))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        assert push.send(tokens_msg(0), timeout_ms=5000)
        wait_for(lambda: worker.status().chunks == 1, 60.0, "1 chunk applied")
    finally:
        push.close()
        worker.close()
    old = checkpoint_file(tmp_path, "m").read_bytes()
    # when the stream comes back with budget 12, then the checkpoint is not continued: it is kept aside as
    # .bad (nothing lost) and the memory starts afresh with the new budget
    bigger = StreamSpec("m", "synthetic://", compressor=CompressorConfig(budget=12))
    again = MemoryWorker(bigger, str(tmp_path), TRANSPORT)
    try:
        assert not again.status().restored and again.compressor.frames_seen == 0
        assert checkpoint_file(tmp_path, "m").with_suffix(".bad").read_bytes() == old
    finally:
        again.close(delete_checkpoint=True)


def test_a_memory_without_segments_refuses_windows_by_name(tmp_path) -> None:
    spec = StreamSpec("m", "synthetic://", compressor=CompressorConfig(budget=6, segment_s=0.0))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    try:
        with pytest.raises(WindowUnavailable, match="expected segments"):
            worker.window(0.0, 5.0)
    finally:
        worker.close(delete_checkpoint=True)
