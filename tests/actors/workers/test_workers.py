"""The plain workers behind the actors, without Ray: real ZeroMQ sockets, real tiny model, real sources."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from actors.config import EncoderConfig, StreamSpec, TransportConfig
from actors.workers.encoder import EncoderWorker
from actors.workers.source import SourceWorker
from vlm import ModelConfig
from stream.codec import Kind, Message, eos
from stream.synthetic import SyntheticVideo, write_video
from stream.timestamps import ResumePoint
from stream.curve import secure
from stream.transport import Socket
from tests.helpers import wait_for

TRANSPORT = TransportConfig(hwm=8, send_timeout_ms=200)
TINY = ModelConfig(path="tiny")
DEADLINE_S = 60.0


def recv_until(sock: Socket, count: int, kind: Kind | None = None, deadline_s: float = DEADLINE_S) -> list[Message]:
    """Messages from `sock` (optionally of one kind) until `count` arrived; fails at the deadline."""
    got: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages before the deadline"
        msg = sock.recv(200)
        if msg is not None and (kind is None or msg.kind is kind):
            got.append(msg)
    return got


@pytest.fixture(scope="module")
def encoder():
    worker = EncoderWorker(TINY, EncoderConfig(batch_frames=8, max_wait_ms=20), TRANSPORT)
    yield worker
    worker.close()


def test_source_pushes_sampled_chunks_then_eos() -> None:
    """Given a 4 s synthetic source (not live) at 10 fps sampled at 2 Hz, 4 frames per chunk,
    when the worker runs, then the encoder side receives 2 chunks of resized frames, then an EOS."""
    sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=8, keys=TRANSPORT.keys)
    spec = StreamSpec("cam", "synthetic://?width=64&height=48&fps=10&seconds=4", sample_rate_hz=2.0,
                      frames_per_chunk=4, live=False)
    worker = SourceWorker(spec, 32, TRANSPORT, target=sink.peer_spec())
    try:
        frames = recv_until(sink, 2, Kind.FRAMES)
        assert [m.seq for m in frames] == [0, 1]
        assert frames[0].arrays["frames"].shape == (4, 32, 32, 3)
        np.testing.assert_allclose(frames[0].arrays["timestamps"], [0.0, 0.5, 1.0, 1.5])
        assert recv_until(sink, 1, Kind.EOS)[0].stream_id == "cam"
        status = worker.status()
        assert status.chunks_sent == 2 and status.frames_sampled == 8 and status.state == "ended"
    finally:
        worker.close()
        sink.close()


def test_a_resumed_source_goes_on_after_the_memory_with_its_sequence() -> None:
    """Given a source started on a stream whose memory holds up to 1.0 s and expects chunk 7 next, then its
    first chunk is seq 7 and starts a sampling period after 1.0 s (not at 0 s and seq 0, which the memory
    would refuse)."""
    sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=8, keys=TRANSPORT.keys)
    spec = StreamSpec("cam", "synthetic://?width=64&height=48&fps=10&seconds=4", sample_rate_hz=2.0,
                      frames_per_chunk=2, live=False)
    worker = SourceWorker(spec, 32, TRANSPORT, target=sink.peer_spec(), resume=ResumePoint(1.0, seq=7))
    try:
        frames = recv_until(sink, 3, Kind.FRAMES)
        assert [m.seq for m in frames] == [7, 8, 9]
        np.testing.assert_allclose(frames[0].arrays["timestamps"], [1.5, 2.0])
        assert recv_until(sink, 1, Kind.EOS)[0].seq == 10
    finally:
        worker.close()
        sink.close()


def test_source_chunks_carry_their_decoder_time(tmp_path) -> None:
    """Given an H.264 file (every frame decoded, one in 5 kept), when the worker pushes its chunks, then each
    chunk's timings carry the decoder seconds since the previous chunk; a synthetic stream's carry none."""
    path = tmp_path / "cam.mp4"
    write_video(path, SyntheticVideo(width=64, height=48, fps=10, seconds=4).frames(), fps=10)
    sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=8, keys=TRANSPORT.keys)
    workers = [SourceWorker(StreamSpec(name, url, sample_rate_hz=2.0, frames_per_chunk=4, live=False), 32,
                            TRANSPORT, target=sink.peer_spec())
               for name, url in (("file", str(path)), ("drawn", "synthetic://?width=64&height=48&fps=10&seconds=4"))]
    try:
        chunks = recv_until(sink, 4, Kind.FRAMES)
        decode = {(m.stream_id, m.seq): m.meta["timings"].get("decode") for m in chunks}
        assert decode[("file", 0)] > 0 and decode[("file", 1)] > 0
        assert decode[("drawn", 0)] is None and decode[("drawn", 1)] is None
    finally:
        for worker in workers:
            worker.close()
        sink.close()


def test_source_reports_a_bad_url_without_crashing() -> None:
    spec = StreamSpec("bad", "/no/such/file.mp4", live=False)
    worker = SourceWorker(spec, 32, TRANSPORT, target="push+connect:tcp://127.0.0.1:9")
    wait_for(lambda: worker.status().state == "failed", DEADLINE_S, "the source to fail")
    assert "no/such/file" in worker.status().last_error
    worker.close()


def _frames_msg(stream_id: str, seq: int, size: int, t: int = 2) -> Message:
    rng = np.random.default_rng(seq)
    return Message(Kind.FRAMES, stream_id, seq, {"sent_at": time.time(), "timings": {"source": 0.0}},
                   {"frames": rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8),
                    "timestamps": np.arange(t, dtype=np.float64) + seq * t,
                    "arrivals": np.full(t, time.time())})


def test_encoder_batches_streams_and_routes_tokens_per_stream(encoder: EncoderWorker) -> None:
    """Given two streams routed to two sinks, when chunks of both arrive, then each sink gets only its
    stream's tokens [T, gh, gw, D] with its timestamps, and a malformed chunk is counted, not fatal."""
    info = encoder.info()
    size, (gh, gw), dim = info["image_size"], info["grid"], info["hidden_size"]
    sinks = {sid: Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=8, keys=TRANSPORT.keys) for sid in ("a", "b")}
    encoder.set_routes({sid: s.peer_spec() for sid, s in sinks.items()})
    src = Socket.open(info["frames_endpoint"], hwm=8, keys=TRANSPORT.keys)
    try:
        garbage = zmq.Context.instance().socket(zmq.PUSH)
        secure(garbage, TRANSPORT.keys, server=False)  # a peer with the keys, sending garbage
        garbage.connect(info["frames_endpoint"].split(":", 1)[1])
        garbage.send_multipart([b"\x00not msgpack", b"junk"])  # not even a message: counted at the socket
        bad = Message(Kind.FRAMES, "a", 99, {}, {"frames": np.zeros((2, size + 1, size, 3), np.uint8)})
        for msg in (bad, _frames_msg("a", 0, size), _frames_msg("b", 0, size), _frames_msg("a", 1, size)):
            assert src.send(msg, timeout_ms=5000)
        got_a = recv_until(sinks["a"], 2, Kind.TOKENS)
        got_b = recv_until(sinks["b"], 1, Kind.TOKENS)
        assert [m.seq for m in got_a] == [0, 1] and [m.stream_id for m in got_b] == ["b"]
        assert got_a[1].arrays["tokens"].shape == (2, gh, gw, dim)
        np.testing.assert_array_equal(got_a[1].arrays["timestamps"], [2.0, 3.0])
        assert got_a[0].meta["timings"]["encode"] > 0
        # the malformed chunk + the garbage; the garbage came over its own connection, so it may be read last
        wait_for(lambda: encoder.stats()["bad_chunks"] == 2, DEADLINE_S, "both bad chunks counted")
        assert encoder.stats()["streams"]["a"]["frames"] == 4
    finally:
        garbage.close(linger=0)
        src.close()
        for s in sinks.values():
            s.close()


def test_encoder_keeps_a_streams_end_behind_its_last_chunk(encoder: EncoderWorker) -> None:
    """Given a batch holding a stream's last chunk and then its EOS (a file that ended), when it is encoded,
    then the EOS comes out after that chunk's tokens: ahead of them the memory would count a lost chunk."""
    size = encoder.info()["image_size"]
    out = encoder._encode([_frames_msg("a", 4, size), eos("a", 5, "end of file"), _frames_msg("b", 0, size)])
    assert [(m.kind, m.stream_id, m.seq) for m in out] == [(Kind.TOKENS, "a", 4), (Kind.EOS, "a", 5),
                                                           (Kind.TOKENS, "b", 0)]


def _tokens_msg(stream_id: str, seq: int, t: int = 2, d: int = 16, grid: int = 4) -> Message:
    rng = np.random.default_rng(seq)
    return Message(Kind.TOKENS, stream_id, seq, {"sent_at": time.time(), "timings": {"encode": 0.01}},
                   {"tokens": rng.standard_normal((t, grid, grid, d)).astype(np.float32),
                    "timestamps": np.arange(t, dtype=np.float64) + seq * t, "arrivals": np.full(t, time.time())})


def test_memory_checkpoints_every_chunk_publishes_and_restores(tmp_path) -> None:
    """Given a memory worker, when token chunks (and one bad message) arrive, then it publishes versioned
    snapshots, its checkpoint equals its state, and a new worker restores exactly that state."""
    from actors.workers.memory import MemoryWorker, checkpoint_file, state_digest
    from compressor.config import CompressorConfig
    from compressor.snapshot import Snapshot

    spec = StreamSpec("m", "synthetic://", compressor=CompressorConfig(budget=8))
    sub = Socket.open("sub+bind:tcp://127.0.0.1:*", hwm=64, keys=TRANSPORT.keys)
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT, publish_to=[sub.peer_spec()])
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        assert push.send(Message(Kind.TOKENS, "m", 0, {}, {"tokens": np.zeros((2, 3), np.float32)}), 5000)
        for seq in range(3):
            assert push.send(_tokens_msg("m", seq), timeout_ms=5000)
        snaps = []
        deadline = time.monotonic() + DEADLINE_S
        while not snaps or snaps[-1].version < 3:
            assert time.monotonic() < deadline, "no snapshot of version 3"
            msg = sub.recv(200)
            if msg is not None:
                snaps.append(Snapshot.from_wire(msg.meta, msg.arrays))
        assert snaps[-1].frames_seen == 6 and snaps[-1].t_end == 5.0 and snaps[-1].tokens_held <= 8
        status = worker.status()
        assert status.bad_messages == 1 and status.chunks == 3 and status.compression_ratio >= 96 / 8
        assert status.sequence_gaps == 0  # the bad message took seq 0 again: a restart, not a loss
        resume = worker.resume_point()  # where a source started again on this stream goes on from
        assert (resume.t, resume.seq) == (5.0, 3) and time.time() - 60 < resume.arrival <= time.time()
        digest = worker.state_digest()
        endpoint = worker.endpoints()["tokens"]
        assert digest == state_digest(checkpoint_file(tmp_path, "m").read_bytes())
    finally:
        push.close()
        worker.close()
    again = MemoryWorker(spec, str(tmp_path), TRANSPORT, publish_to=[sub.peer_spec()])
    try:
        assert again.status().restored and again.state_digest() == digest
        assert again.resume_point() == resume  # when it arrived and the next seq, from the .resume file
        assert again.endpoints()["tokens"] == endpoint  # same port again: the encoder's queue reaches it
        # the restored snapshot is re-published without new input (a restarted LLM gets it)
        msg = sub.recv(int(DEADLINE_S * 1000))
        while msg is not None and msg.seq < 3:
            msg = sub.recv(int(DEADLINE_S * 1000))
        assert msg is not None and msg.seq == 3
    finally:
        again.close(delete_checkpoint=True)
        sub.close()
    assert not checkpoint_file(tmp_path, "m").exists() and not checkpoint_file(tmp_path, "m").with_suffix(
        ".resume").exists()


@pytest.mark.parametrize("resume_file", [b'{"t": 4.0, "arrival": 1.0, "seq": 9}', b'{"t": 5.0, "arr', b"\xff",
                                         b'{"t": 5.0, "arrival": "x", "seq": true}'])
def test_memory_restored_without_a_matching_resume_file_still_resumes_at_its_newest_frame(tmp_path,
                                                                                        resume_file) -> None:
    """Given a checkpoint whose .resume file is from an older chunk (a crash between the two writes), torn, or
    not what this program writes, when the memory restores, then it resumes at the state's newest frame with
    arrival and seq unknown, as if the file were missing."""
    from actors.workers.memory import MemoryWorker, checkpoint_file
    from compressor.config import CompressorConfig

    spec = StreamSpec("r", "synthetic://", compressor=CompressorConfig(budget=8))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        for seq in range(3):
            assert push.send(_tokens_msg("r", seq), timeout_ms=5000)
        wait_for(lambda: worker.status().chunks == 3, DEADLINE_S, "3 chunks compressed")
    finally:
        push.close()
        worker.close()
    checkpoint_file(tmp_path, "r").with_suffix(".resume").write_bytes(resume_file)
    again = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    try:
        assert again.resume_point() == ResumePoint(5.0)
    finally:
        again.close(delete_checkpoint=True)


def test_memory_counts_chunks_lost_on_the_way_as_sequence_gaps(tmp_path) -> None:
    """Given a memory worker, when chunks 0, 1, 4 arrive (2 and 3 were dropped on the way), then its
    telemetry counts 2 lost chunks and it compresses the 3 that came."""
    from actors.workers.memory import MemoryWorker
    from compressor.config import CompressorConfig

    spec = StreamSpec("g", "synthetic://", compressor=CompressorConfig(budget=8))
    worker = MemoryWorker(spec, str(tmp_path), TRANSPORT)
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        for seq in (0, 1, 4):
            assert push.send(_tokens_msg("g", seq), timeout_ms=5000)
        status = wait_for(lambda: (s := worker.status()).chunks == 3 and s, DEADLINE_S, "3 chunks compressed")
        assert status.sequence_gaps == 2 and status.bad_messages == 0
    finally:
        push.close()
        worker.close(delete_checkpoint=True)


def test_memory_status_never_counts_tokens_ahead_of_its_snapshot(tmp_path, monkeypatch) -> None:
    """Given a memory worker in the middle of applying a chunk (held at its checkpoint write), when its status
    is read, then tokens seen and the snapshot version both still describe the last published snapshot: a
    reader that sees more tokens also sees a newer snapshot (the API's /metrics promised that and once broke)."""
    import threading

    import actors.workers.memory as memory
    from compressor.config import CompressorConfig

    entered, release = threading.Semaphore(0), threading.Event()
    write = memory.write_atomic

    def held_write(path, data, **kwargs):
        if path.suffix == ".ckpt":
            entered.release()
            assert release.wait(DEADLINE_S)
        write(path, data, **kwargs)

    monkeypatch.setattr(memory, "write_atomic", held_write)
    worker = memory.MemoryWorker(StreamSpec("h", "synthetic://", compressor=CompressorConfig(budget=8)),
                                 str(tmp_path), TRANSPORT)
    push = Socket.open(worker.endpoints()["tokens"], hwm=8, keys=TRANSPORT.keys)
    try:
        assert push.send(_tokens_msg("h", 0), timeout_ms=5000)
        assert entered.acquire(timeout=DEADLINE_S)  # chunk 0 is in the compressor, not yet published
        mid = worker.status()
        assert (mid.tokens_seen, mid.snapshot_version) == (0, None)
        release.set()
        first = wait_for(lambda: (s := worker.status()).snapshot_version == 1 and s, DEADLINE_S, "snapshot 1")
        release.clear()
        assert push.send(_tokens_msg("h", 1), timeout_ms=5000)
        assert entered.acquire(timeout=DEADLINE_S)
        mid = worker.status()
        assert (mid.tokens_seen, mid.snapshot_version) == (first.tokens_seen, 1) and first.tokens_seen > 0
        release.set()
        second = wait_for(lambda: (s := worker.status()).snapshot_version == 2 and s, DEADLINE_S, "snapshot 2")
        assert second.tokens_seen == 2 * first.tokens_seen
    finally:
        release.set()
        push.close()
        worker.close(delete_checkpoint=True)


def test_llm_answers_from_one_snapshot_and_knows_unknown_and_unready_streams() -> None:
    from actors.errors import StreamNotFound, StreamNotReady
    from actors.workers.llm import LLMWorker
    from actors.config import LLMConfig
    from compressor.snapshot import Snapshot

    worker = LLMWorker(ModelConfig(path="tiny", max_new_tokens=5), LLMConfig(max_concurrent=2), TRANSPORT)
    pub = Socket.open(worker.endpoint(), hwm=8, keys=TRANSPORT.keys)
    try:
        worker.set_streams(["s"])
        with pytest.raises(StreamNotFound, match="stream 'x'"):
            worker.ask("x", "hi")
        with pytest.raises(StreamNotReady):
            worker.ask("s", "hi")
        dim = worker.vlm.hidden_size
        rng = np.random.default_rng(0)
        snap = Snapshot(version=7, method="token_dynamics", base=rng.standard_normal((6, dim)),
                        motion=np.zeros((6, 4)), recent=np.zeros((0, dim)), t_start=1.0, t_end=9.5,
                        frames_seen=12, tokens_seen=2352)
        meta, arrays = snap.to_wire()
        deadline = time.monotonic() + DEADLINE_S
        while "s" not in worker.snapshots() or not worker.store.bad_snapshots:
            assert time.monotonic() < deadline, "snapshot never arrived"
            pub.send(Message(Kind.SNAPSHOT, "junk", 0, {}, {"junk": np.zeros(2)}))  # bad snapshot: counted
            pub.send(Message(Kind.SNAPSHOT, "s", 7, meta, arrays))
            time.sleep(0.05)
        events = list(worker.ask("s", [{"role": "user", "content": "What happened?"}], max_tokens=4))
        done = events[-1]
        assert done["type"] == "done" and done["snapshot_version"] == 7
        assert done["span"] == {"t_start": 1.0, "t_end": 9.5} and done["usage"]["visual_tokens"] == 6
        worker.set_streams([])  # removed: its memory no longer answers
        with pytest.raises(StreamNotFound):
            worker.ask("s", "hi")
    finally:
        pub.close()
        worker.close()
