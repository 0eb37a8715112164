"""Many streams in one stream host (actors/workers/host.py): one stream's poison message, crash or corrupt
checkpoint leaves the others advancing with nothing lost, and the crashed one comes back from its checkpoint."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.config import StreamSpec, TransportConfig
from actors.workers.host import StreamHost
from actors.workers.memory import checkpoint_file
from compressor.config import CompressorConfig
from stream.codec import Kind, Message
from stream.transport import Socket
from tests.helpers import wait_for

TRANSPORT = TransportConfig(hwm=8, send_timeout_ms=200)


def tokens_msg(stream_id: str, seq: int) -> Message:
    """Chunk ``seq`` of ``stream_id``: 4 frames of [4, 4, 16] tokens, 1 frame per media second."""
    rng = np.random.default_rng(seq)
    return Message(Kind.TOKENS, stream_id, seq, {"sent_at": time.time()},
                   {"tokens": rng.standard_normal((4, 4, 4, 16)).astype(np.float32),
                    "timestamps": np.arange(4, dtype=np.float64) + seq * 4})


def spec(stream_id: str) -> StreamSpec:
    return StreamSpec(stream_id, "synthetic://", compressor=CompressorConfig(budget=6))


@pytest.fixture
def host(tmp_path):
    h = StreamHost(str(tmp_path), TRANSPORT, supervise_s=0.1)
    yield h
    h.close()


def chunks_of(host: StreamHost, sid: str) -> int:
    return host.call(sid, "memory", "status").chunks


def test_poison_and_crash_in_one_stream_leave_the_others_advancing(host):
    # given three streams' memories in one host, each fed by its own socket
    pushes = {sid: Socket.open(host.add_memory(spec(sid))["tokens"], hwm=8, keys=TRANSPORT.keys)
              for sid in ("a", "b", "c")}
    try:
        for seq in range(3):
            for sid, push in pushes.items():
                assert push.send(tokens_msg(sid, seq), timeout_ms=5000)
        wait_for(lambda: all(chunks_of(host, s) == 3 for s in pushes), 60.0, "3 chunks in every stream")
        # when b gets a poison message and c's loop crashes on its next chunk
        assert pushes["b"].send(Message(Kind.TOKENS, "b", 3, {"sent_at": time.time()},
                                        {"tokens": np.zeros((2, 2), np.float32)}), timeout_ms=5000)

        def boom(*args, **kwargs):
            raise RuntimeError("a bug in one stream's update")

        crashed = host.worker("c", "memory")
        crashed.compressor.update = boom
        assert pushes["c"].send(tokens_msg("c", 3), timeout_ms=5000)
        wait_for(lambda: host.restarts()["c"]["memory"] == 1, 30.0, "c's memory built again")
        # then a and b advance meanwhile and after, nothing of theirs lost; b counted the poison
        for seq in range(3, 8):
            assert pushes["a"].send(tokens_msg("a", seq), timeout_ms=5000)
            assert pushes["b"].send(tokens_msg("b", seq), timeout_ms=5000)
            assert pushes["c"].send(tokens_msg("c", seq + 1), timeout_ms=5000)  # c goes on after the lost one
        wait_for(lambda: chunks_of(host, "a") == 8 and chunks_of(host, "b") == 8, 60.0, "a and b at 8 chunks")
        assert host.call("b", "memory", "status").bad_messages == 1
        assert host.restarts()["a"] == {"source": 0, "memory": 0} == host.restarts()["b"]
        # and c came back from its checkpoint on the same port: its 3 chunks kept, the 5 new ones applied
        assert host.worker("c", "memory") is not crashed
        wait_for(lambda: chunks_of(host, "c") == 8, 60.0, "c restored and advancing")
    finally:
        for push in pushes.values():
            push.close()


def test_a_corrupt_checkpoint_is_set_aside_by_its_stream_alone(tmp_path, host):
    push = Socket.open(host.add_memory(spec("good"))["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        assert push.send(tokens_msg("good", 0), timeout_ms=5000)
        wait_for(lambda: chunks_of(host, "good") == 1, 60.0, "good checkpointed")
    finally:
        push.close()
    checkpoint_file(tmp_path, "bad").write_bytes(b"not a checkpoint")
    host.remove("good")
    # when both start in one host, then bad starts fresh (its file kept aside) and good restores its state
    host.add_memory(spec("bad"))
    host.add_memory(spec("good"))
    assert chunks_of(host, "bad") == 0 and checkpoint_file(tmp_path, "bad").with_suffix(".bad").exists()
    assert host.call("good", "memory", "status").chunks == 1


def test_a_crashed_source_is_built_again_while_its_neighbour_keeps_sending(host):
    # given two live sources in one host pushing to one sink
    sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=64, keys=TRANSPORT.keys)
    try:
        for sid in ("s1", "s2"):
            live = StreamSpec(sid, "synthetic://?width=64&height=64&fps=10", sample_rate_hz=5.0, frames_per_chunk=1,
                              live=True)
            host.add_source(live, 32, f"push+connect:{sink.endpoint}")
        seen: dict[str, int] = {"s1": 0, "s2": 0}

        def drain(until: float) -> None:
            while time.monotonic() < until:
                msg = sink.recv(100)
                if msg is not None and msg.kind is Kind.FRAMES:
                    seen[msg.stream_id] += 1

        drain(time.monotonic() + 2.0)
        assert seen["s1"] > 0 and seen["s2"] > 0
        # when s1's loop crashes
        crashed = host.worker("s1", "source")

        def boom(*args, **kwargs):
            raise RuntimeError("a bug in one stream's source")

        crashed._deliver = boom
        wait_for(lambda: host.restarts()["s1"]["source"] == 1, 30.0, "s1's source built again")
        before = dict(seen)
        drain(time.monotonic() + 2.0)
        # then s2 never stopped and s1 sends again, from a new worker
        assert seen["s2"] > before["s2"] and seen["s1"] > before["s1"]
        assert host.restarts()["s2"]["source"] == 0 and host.worker("s1", "source") is not crashed
    finally:
        sink.close()


def test_calls_name_what_is_hosted(host):
    host.add_memory(spec("x"))
    with pytest.raises(KeyError, match="expected a hosted source"):
        host.call("x", "source", "status")
    with pytest.raises(ValueError, match="expected a public worker method"):
        host.call("x", "memory", "_run")
    with pytest.raises(ValueError, match="expected no memory hosted yet"):
        host.add_memory(spec("x"))
