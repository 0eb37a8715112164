"""Defence in depth in the memory and the LLM (issue 22), on the plain workers: real sockets, real tiny model.

A forged chunk whose media time runs far ahead of the arrival clock is refused and never checkpointed, with
or without the deployment's keys; a stream whose every chunk is refused says `stalled` and why; a snapshot
that does not fit the model is refused and counted, and questions never reach the model with it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.config import LLMConfig, StreamSpec, TransportConfig
from actors.errors import StreamNotReady
from actors.status import SourceTelemetry, StreamStatus
from compressor.config import CompressorConfig
from stream.codec import Kind, Message
from stream.transport import Socket
from tests.helpers import wait_for
from vlm import ModelConfig

TRANSPORT = TransportConfig(hwm=8, send_timeout_ms=200)
DEADLINE_S = 60.0


def _tokens(seq: int, t0: float, t: int = 2) -> Message:
    rng = np.random.default_rng(seq)
    return Message(Kind.TOKENS, "cam", seq, {"sent_at": time.time(), "timings": {"encode": 0.01}},
                   {"tokens": rng.standard_normal((t, 4, 4, 16)).astype(np.float32),
                    "timestamps": t0 + np.arange(t, dtype=np.float64) * 0.1, "arrivals": np.full(t, time.time())})


@pytest.fixture
def memory(tmp_path):
    from actors.workers.memory import MemoryWorker

    spec = StreamSpec("cam", "synthetic://", live=True, compressor=CompressorConfig(budget=8))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    yield worker
    worker.close(delete_checkpoint=True)


def test_a_forged_far_ahead_chunk_changes_nothing_signed_or_not(memory, tmp_path) -> None:
    """Given a live stream with one chunk, when the bug-1 message (media time 1e7) comes from a plain socket
    and then signed with the deployment's keys, then neither is applied nor checkpointed, the unsigned one is
    a refused peer, and the stream's next real chunks still advance the memory."""
    from actors.workers.memory import checkpoint_file

    endpoint = memory.endpoints()["tokens"]
    with Socket.open(endpoint, hwm=8, keys=TRANSPORT.keys) as push, Socket.open(endpoint, hwm=8) as plain:
        assert push.send(_tokens(0, 0.0), timeout_ms=5000)
        wait_for(lambda: memory.status().chunks == 1, DEADLINE_S, "the first chunk")
        checkpoint = checkpoint_file(tmp_path, "cam").read_bytes()
        plain.send(_tokens(1, 1e7), timeout_ms=0)
        wait_for(lambda: memory.status().refused_peers >= 1, DEADLINE_S, "the plain peer refused")
        assert memory.status().bad_messages == 0 and memory.status().chunks == 1  # never reached a handler
        assert push.send(_tokens(1, 1e7), timeout_ms=5000)
        wait_for(lambda: memory.status().bad_messages == 1, DEADLINE_S, "the signed forgery refused")
        assert checkpoint_file(tmp_path, "cam").read_bytes() == checkpoint
        assert memory.status().snapshot_version == 1 and memory.status().stalled is None
        for seq in (1, 2):
            assert push.send(_tokens(seq, 0.2 * seq), timeout_ms=5000)
        status = wait_for(lambda: (s := memory.status()).chunks == 3 and s, DEADLINE_S, "real chunks applied")
        assert status.snapshot_version == 3 and status.t_end == pytest.approx(0.5)


def test_a_stream_whose_every_chunk_is_refused_reports_stalled(memory, monkeypatch) -> None:
    """Given a live stream, when every chunk after the first is refused for STALL_AFTER_S, then the memory
    says why and the stream's status is `stalled` (not `streaming`); an applied chunk clears it."""
    import actors.workers.memory as memory_module

    monkeypatch.setattr(memory_module, "STALL_AFTER_S", 1.0)
    with Socket.open(memory.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys) as push:
        assert push.send(_tokens(0, 5.0), timeout_ms=5000)
        wait_for(lambda: memory.status().chunks == 1, DEADLINE_S, "the first chunk")
        for seq in range(1, 4):  # time going backwards: every one refused
            assert push.send(_tokens(seq, 1.0), timeout_ms=5000)
            time.sleep(0.5)
        telemetry = wait_for(lambda: (s := memory.status()).stalled and s, DEADLINE_S, "stalled")
        assert "refused" in telemetry.stalled
        status = StreamStatus.join("cam", "synthetic://", True, "token_dynamics", 2.0,
                                   SourceTelemetry(state="streaming"), telemetry, 10.0)
        assert status.state == "stalled" and status.state_reason == telemetry.stalled
        assert push.send(_tokens(4, 5.5), timeout_ms=5000)
        wait_for(lambda: memory.status().chunks == 2 and memory.status().stalled is None, DEADLINE_S,
                 "the stall cleared by an applied chunk")


def _snapshot(version: int, width: int, k: int = 4, dtype=np.float32) -> Message:
    from compressor.snapshot import Snapshot

    snap = Snapshot(version, "token_dynamics", np.ones((k, width), np.float32), np.zeros((k, 0), np.float32),
                    np.zeros((0, width), np.float32), 0.0, 1.0, 2, 2 * k)
    meta, arrays = snap.to_wire()
    return Message(Kind.SNAPSHOT, "cam", version, meta, {name: a.astype(dtype) for name, a in arrays.items()})


def test_the_llm_refuses_snapshots_that_do_not_fit_and_unsigned_ones() -> None:
    """Given the LLM worker, when snapshots of the wrong width, dtype or K arrive signed, and a well-formed one
    arrives unsigned, then none is kept (counted as unfit / refused peers) and a question gets StreamNotReady
    (a 409/503 upstream, never a 500); a fitting signed snapshot is then answered from."""
    from actors.workers.llm import LLMWorker

    worker = LLMWorker(ModelConfig(path="tiny", max_new_tokens=3), LLMConfig(max_concurrent=1), TRANSPORT)
    width = worker.vlm.hidden_size
    worker.set_streams(["cam"])
    try:
        with Socket.open(worker.endpoint(), hwm=8, keys=TRANSPORT.keys) as pub, \
                Socket.open(worker.endpoint(), hwm=8) as plain:
            unfit = [_snapshot(1, width + 1), _snapshot(2, width, dtype=np.float64),
                     _snapshot(3, width, k=worker.prompt_cap + 1)]

            def sent_all() -> bool:
                for msg in unfit:
                    pub.send(msg, timeout_ms=0)
                plain.send(_snapshot(123456789, width), timeout_ms=0)
                time.sleep(0.2)
                stats = worker.stats()
                return stats["unfit_snapshots"] >= 3 and stats["refused_peers"] >= 1

            wait_for(sent_all, DEADLINE_S, "unfit snapshots and the unsigned peer counted")
            with pytest.raises(StreamNotReady):
                worker.ask("cam", "What moves?")
            assert worker.snapshots() == {}
            wait_for(lambda: pub.send(_snapshot(5, width), timeout_ms=0) and "cam" in worker.snapshots(),
                     DEADLINE_S, "a fitting snapshot kept")
            events = list(worker.ask("cam", "What moves?", max_tokens=2))
            assert events[-1]["type"] == "done" and events[-1]["snapshot_version"] == 5
    finally:
        worker.close()
