"""ZeroMQ helpers: addresses, PUSH/PULL and PUB/SUB, timeouts, bad-message floods, two processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from stream.codec import Kind, Message, chunk_to_message, encode, eos, message_to_chunk
from stream.frames import Chunk
from stream.transport import Address, AddressError, Gap, SequenceTracker, Socket, parse_address

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec, expected", [
    ("push+bind:tcp://127.0.0.1:*", Address("push", "bind", "tcp://127.0.0.1:*")),
    ("sub+connect:tcp://node-3.cluster:5555", Address("sub", "connect", "tcp://node-3.cluster:5555")),
    ("pull+connect:tcp://[::1]:5555", Address("pull", "connect", "tcp://[::1]:5555")),
    ("pub+bind:ipc:///tmp/tokdyn-snap.sock", Address("pub", "bind", "ipc:///tmp/tokdyn-snap.sock")),
    ("pull+bind:inproc://chunks", Address("pull", "bind", "inproc://chunks")),
])
def test_parse_address(spec, expected):
    assert parse_address(spec) == expected and str(expected) == spec


@pytest.mark.parametrize("spec, error", [
    ("req+bind:tcp://127.0.0.1:*", "expected"),
    ("push:tcp://127.0.0.1:5", "expected"),
    ("push+bind:udp://127.0.0.1:5", "expected"),
    ("push+connect:tcp://127.0.0.1:*", "real port"),
    ("push+bind:tcp://127.0.0.1:70000", "1..65535"),
    ("push+bind:tcp://127.0.0.1", "expected"),
])
def test_parse_address_errors(spec, error):
    with pytest.raises(AddressError, match=error):
        parse_address(spec)


@pytest.fixture
def pair():
    """A bound PULL (ephemeral port) and a PUSH connected to it."""
    pull = Socket.open("pull+bind:tcp://127.0.0.1:*")
    push = Socket.open(pull.peer_spec())
    yield push, pull
    push.close()
    pull.close()


def test_push_pull_roundtrip_reports_ephemeral_port(pair):
    push, pull = pair
    assert pull.endpoint.startswith("tcp://127.0.0.1:") and not pull.endpoint.endswith("*")
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    chunk = Chunk("cam", 0, frames, np.arange(4) / 2, np.arange(4) + 100.0)
    assert push.send(chunk_to_message(chunk), timeout_ms=1000)
    out = message_to_chunk(pull.recv(timeout_ms=5000))
    assert np.array_equal(out.frames, frames) and np.array_equal(out.timestamps, chunk.timestamps)


def test_recv_timeout_and_send_timeout_without_peer():
    with Socket.open("pull+bind:tcp://127.0.0.1:*") as pull:
        started = time.monotonic()
        assert pull.recv(timeout_ms=50) is None
        assert time.monotonic() - started < 2.0
    with Socket.open("push+bind:tcp://127.0.0.1:*") as lonely:  # no peer: nowhere to queue
        assert lonely.send(eos("s", 0), timeout_ms=20) is False
        assert lonely.stats.send_timeouts == 1


def test_close_never_hangs_with_queued_messages():
    port = zmq.Context.instance().socket(zmq.PUSH)  # find a port nobody listens on
    free = port.bind_to_random_port("tcp://127.0.0.1")
    port.close(linger=0)
    push = Socket.open(f"push+connect:tcp://127.0.0.1:{free}", hwm=4)
    for seq in range(4):
        push.send(Message(Kind.TOKENS, "s", seq, {}, {"x": np.zeros(10_000, np.float32)}), timeout_ms=100)
    started = time.monotonic()
    push.close()
    push.close()  # idempotent
    assert time.monotonic() - started < 1.0


def test_pub_sub_newest_per_stream():
    with Socket.open("pub+bind:tcp://127.0.0.1:*") as pub, Socket.open("sub+connect:" + pub.endpoint) as sub:
        # Subscriptions propagate asynchronously: publish a probe until one arrives (deadline, no fixed sleep).
        deadline = time.monotonic() + 10
        while sub.recv(timeout_ms=20) is None:
            assert time.monotonic() < deadline, "SUB never received from PUB"
            pub.send(Message(Kind.STATUS, "probe", 0))
        for seq in range(1, 6):
            pub.send(Message(Kind.SNAPSHOT, "a", seq, {"version": seq}))
        for seq in range(1, 4):
            pub.send(Message(Kind.SNAPSHOT, "b", seq, {"version": seq}))
        newest: dict[str, Message] = {}
        while set(newest) < {"a", "b"} or newest["a"].seq < 5 or newest["b"].seq < 3:
            assert time.monotonic() < deadline, f"got {newest}"
            newest.update(sub.recv_newest(timeout_ms=100))
        assert newest["a"].meta == {"version": 5} and newest["b"].meta == {"version": 3}


def test_ten_thousand_bad_messages_interleaved_with_good(pair):
    """Every good message arrives, in order; every bad one is counted and skipped; the receiver lives on."""
    push, pull = pair
    raw = push.raw
    good_frames = encode(Message(Kind.TOKENS, "s", 0, {}, {"x": np.arange(600, dtype=np.float32)}))
    bad_kinds = [[b"garbage"], [good_frames[0]], [good_frames[0], b"short"], [b"\x81\xa1v\x01"],
                 [good_frames[0], good_frames[1], b"extra"], [b""]]
    rng = np.random.default_rng(1)
    received: list[int] = []
    sent_good = 0
    for i in range(10_000):
        raw.send_multipart(bad_kinds[i % len(bad_kinds)])
        if rng.random() < 0.02:
            push.send(Message(Kind.TOKENS, "s", sent_good, {}, {"x": np.arange(600, dtype=np.float32)}))
            sent_good += 1
        if i % 8 == 7:  # drain as we go so the sender never blocks on the high-water mark
            while (msg := pull.recv(timeout_ms=0)) is not None:
                received.append(msg.seq)
    deadline = time.monotonic() + 30
    while len(received) < sent_good and time.monotonic() < deadline:
        msg = pull.recv(timeout_ms=100)
        if msg is not None:
            received.append(msg.seq)
    while pull.stats.bad < 10_000 and time.monotonic() < deadline:
        pull.recv(timeout_ms=100)
    assert received == list(range(sent_good)) and sent_good > 100
    assert pull.stats.bad == 10_000 and pull.stats.received == sent_good


def test_sequence_tracker_gaps_restarts_and_eos():
    tracker = SequenceTracker()
    for seq in (0, 1, 2, 5):
        tracker.observe(Message(Kind.TOKENS, "a", seq))
    assert list(tracker.gaps) == [Gap("a", 3, 5)] and tracker.missing("a") == 2
    assert tracker.observe(Message(Kind.TOKENS, "b", 0)) is None  # streams are independent
    restart = tracker.observe(Message(Kind.TOKENS, "a", 0))
    assert restart == Gap("a", 6, 0) and restart.missing == 0
    tracker.observe(eos("a", 1))
    assert "a" in tracker.ended
    assert tracker.observe(Message(Kind.TOKENS, "a", 0)) is None and "a" not in tracker.ended


SENDER = """
import sys, numpy as np
from stream.codec import chunk_to_message, eos
from stream.frames import Chunk
from stream.transport import Socket
push = Socket.open(sys.argv[1])
for seq in (0, 1, 2, 4):  # seq 3 never sent: the receiver must report the gap
    frames = np.full((2, 32, 32, 3), seq, np.uint8)
    push.send(chunk_to_message(Chunk("cam", seq, frames, np.array([seq, seq + .5]), np.zeros(2))), timeout_ms=10000)
push.send(eos("cam", 5, "done"), timeout_ms=10000)
push.close(linger_ms=10000)  # deliver what is queued before exiting
"""


def test_two_processes_exchange_chunks_gap_and_eos():
    with Socket.open("pull+bind:tcp://127.0.0.1:*") as pull:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen([sys.executable, "-c", SENDER, pull.peer_spec()], env=env, cwd=ROOT)
        try:
            tracker, chunks = SequenceTracker(), []
            deadline = time.monotonic() + 60
            while "cam" not in tracker.ended:
                assert time.monotonic() < deadline, "no end-of-stream from the child process"
                msg = pull.recv(timeout_ms=200)
                if msg is None:
                    continue
                tracker.observe(msg)
                if msg.kind is Kind.FRAMES:
                    chunks.append(message_to_chunk(msg))
            assert [c.seq for c in chunks] == [0, 1, 2, 4]
            assert all(int(c.frames[0, 0, 0, 0]) == c.seq for c in chunks)
            assert list(tracker.gaps) == [Gap("cam", 3, 4)] and tracker.missing("cam") == 1
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
