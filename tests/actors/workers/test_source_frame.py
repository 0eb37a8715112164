"""The source keeps its newest sampled frames by reference for the console (`SourceWorker.frame`)."""

from __future__ import annotations

import numpy as np

from actors.config import StreamSpec, TransportConfig
from actors.workers.source import SourceWorker
from stream.codec import Kind
from stream.transport import Socket

TRANSPORT = TransportConfig(hwm=8, send_timeout_ms=200)


def test_the_newest_frame_and_the_one_nearest_a_time_are_those_sent() -> None:
    # given a file-paced synthetic stream (2 Hz, 2 frames per chunk) whose chunks reach a sink
    sink = Socket.open("pull+bind:tcp://127.0.0.1:*", hwm=8, keys=TRANSPORT.keys)
    spec = StreamSpec("cam", "synthetic://?width=64&height=48&fps=10&seconds=3", sample_rate_hz=2.0,
                      frames_per_chunk=2, live=False)
    worker = SourceWorker(spec, 32, TRANSPORT, target=sink.peer_spec())
    try:
        sent = {}  # media s -> frame, until the end-of-stream message
        while (msg := sink.recv(5000)) is not None and msg.kind is Kind.FRAMES:
            sent.update(zip(msg.arrays["timestamps"].tolist(), msg.arrays["frames"]))
        # when the newest frame is asked for, then it is the last frame sent, as the encoder got it
        newest = worker.frame()
        assert newest["t"] == max(sent) == 2.5
        np.testing.assert_array_equal(newest["image"], sent[2.5])
        # and a time picks the nearest frame still kept (the last RECENT_CHUNKS chunks)
        assert worker.frame(at=1.1)["t"] == 1.0
        np.testing.assert_array_equal(worker.frame(at=1.1)["image"], sent[1.0])
        assert worker.frame(at=-5.0)["t"] == 0.0 and worker.frame(at=99.0)["t"] == 2.5
    finally:
        worker.close()
        sink.close()
