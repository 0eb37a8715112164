"""A real RTSP server (gst-rtsp-server) on 127.0.0.1: streaming, kill/restart, freeze, bad URLs, UDP.

Every test polls with a deadline; the server helper signals only the process it started.
"""

from __future__ import annotations

import threading
import time

import pytest

from stream.config import SourceConfig
from stream.frames import SourceState
from testkit.rtsp_server import RtspServer, RtspServerError, free_port, rtsp_server_available
from stream.sources import SourceError, open_source
from stream.timestamps import ResumePoint

AVAILABLE, WHY = rtsp_server_available()
pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(not AVAILABLE, reason=WHY or "no RTSP server")]

# Small and quick so the tests stay light on a shared 2-core machine.
# Read timeout 2 s: short enough for a quick freeze test, long enough that a busy machine never trips it.
FAST = SourceConfig(open_timeout_s=5.0, read_timeout_s=2.0, reconnect_initial_s=0.1, reconnect_max_s=0.5)
DEADLINE_S = 30.0


def until(condition, what: str, timeout_s: float = DEADLINE_S, step=None):
    """Poll ``condition()`` (optionally advancing with ``step()``) until true or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        step() if step else time.sleep(0.02)


@pytest.fixture
def server():
    with RtspServer(width=320, height=240, fps=15) as srv:
        yield srv


def test_frames_arrive_with_increasing_timestamps(server):
    assert server.url.startswith("rtsp://127.0.0.1:")
    with open_source(server.url, FAST) as source:
        assert source.live and source.policy.value == "drop_oldest"
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 20:
                break
    status = source.status()
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert frames[0].image.shape == (240, 320, 3)
    assert (status.codec, status.width, status.height, status.reconnects) == ("h264", 320, 240, 0)
    assert status.state is SourceState.ENDED  # closed by the context manager


def test_a_resumed_camera_clock_goes_on_from_the_memory_counting_the_outage(server):
    """A source started again on a stream whose memory holds media time 500 s, whose newest frame arrived 3 s
    ago: the camera's own clock starts near 0, so its frames are stepped on from 500 s by the wall time since
    (not replayed as 0.. s, which the memory would refuse)."""
    resume = ResumePoint(500.0, arrival=time.time() - 3.0, seq=12)
    with open_source(server.url, FAST, resume=resume) as source:
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 10:
                break
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[0] >= 503.0
    assert pts[0] == pytest.approx(500.0 + frames[0].arrival - resume.arrival, abs=1.0)  # the outage, no more


def test_kill_and_restart_reconnects(server):
    with open_source(server.url, FAST) as source:
        frames = iter(source)
        before = next(frames)
        server.kill()
        until(lambda: source.status().reconnect_attempts >= 1, "the source to notice the dead server")
        assert source.status().state in (SourceState.RECONNECTING, SourceState.CONNECTING)
        first_new = source.status().decoded  # frames from here on come from the new session
        server.start()
        after = next(frames)
        while after.index < first_new:
            after = next(frames)  # skip frames decoded (flushed) before the reconnect
        status = source.status()
    assert after.pts > before.pts
    # one reconnection that got frames again (however many attempts it took); the newest error stays, timed
    assert status.reconnects == 1 and status.reconnect_attempts >= 1 and status.last_error
    assert status.last_error_at <= status.state_since  # the error came before streaming resumed
    assert any("treated as a disconnect" in e.detail for e in status.events)
    states = [e.state.value for e in status.events]
    assert states.index("reconnecting") < len(states) - 1 - states[::-1].index("streaming")


def test_a_camera_that_does_not_answer_its_first_open_in_time_is_named_as_such(server):
    """A frozen server accepts the connection but never describes its stream: FFmpeg calls that invalid data.
    The error says what it means for a camera (no playable stream in time), not only FFmpeg's words."""
    server.freeze()
    try:
        with pytest.raises(SourceError, match="not a playable stream within 2 s"):
            next(iter(open_source(server.url, FAST)))
    finally:
        server.resume()


def test_freeze_times_out_then_recovers_after_resume(server):
    with open_source(server.url, FAST) as source:
        frames = iter(source)
        next(frames)
        server.freeze()
        try:
            until(lambda: source.status().reconnect_attempts >= 1, "a read timeout on the frozen server")
            assert "no data for 2 s" in source.status().last_error
        finally:
            server.resume()
        assert source.status().reconnects == 0  # tried, not reconnected yet
        frame = next(frames)
        until(lambda: source.status().state is SourceState.STREAMING, "streaming again", step=lambda: next(frames))
        assert frame.pts > 0 and source.status().reconnects == 1


def test_a_frozen_camera_is_not_streaming_within_its_read_timeout_and_recovers(server):
    """Issue 22: a SIGSTOPped camera used to stay `streaming` for two or more read timeouts (FFmpeg hands out
    a queued packet when its read is interrupted, and each packet restarts PyAV's timer). The stall watchdog
    says `reconnecting` one read timeout after the last packet; after SIGCONT frames flow again."""
    config = SourceConfig(**{**FAST.__dict__, "read_timeout_s": 3.0})
    with open_source(server.url, config) as source:
        frames = iter(source)
        until(lambda: source.status().state is SourceState.STREAMING and source.status().decoded >= 10,
              "steady streaming", step=lambda: next(frames))
        server.freeze()
        frozen_at = time.time()
        try:
            until(lambda: source.status().state is not SourceState.STREAMING, "a non-streaming state")
            status = source.status()
        finally:
            server.resume()
        stall = next(e for e in status.events if e.time >= frozen_at and e.state is not SourceState.STREAMING)
        # the last packet came at the freeze or a little after (what the socket held): one read timeout plus
        # the watchdog's tick and this loaded machine's scheduling, never the two or more timeouts of before
        assert stall.time - frozen_at < config.read_timeout_s + 1.5, (stall, frozen_at)
        assert "read stalled: no data for 3 s" in stall.detail
        decoded = status.decoded
        until(lambda: source.status().state is SourceState.STREAMING and source.status().decoded > decoded + 5,
              "streaming again after SIGCONT", step=lambda: next(frames))
        assert source.status().reconnects >= 1


@pytest.mark.parametrize("make_url, error", [
    (lambda srv: f"rtsp://127.0.0.1:{free_port()}/stream", "Connection refused"),
    (lambda srv: srv.url.replace("/stream", "/no-such-mount"), "404|Not Found|Server returned"),
])
def test_wrong_url_or_closed_port_fails_fast(server, make_url, error):
    source = open_source(make_url(server), FAST)
    started = time.monotonic()
    with pytest.raises(SourceError, match=error):
        next(iter(source))
    assert time.monotonic() - started < 10
    assert source.status().state is SourceState.FAILED


def test_retry_first_open_waits_for_a_camera_that_comes_up():
    port = free_port()
    config = SourceConfig(**{**FAST.__dict__, "retry_first_open": True})
    with open_source(f"rtsp://127.0.0.1:{port}/stream", config) as source:
        frames = iter(source)
        got = []  # next() blocks until the camera is up: call it from a helper thread
        reader = threading.Thread(target=lambda: got.append(next(frames)), daemon=True)
        reader.start()
        until(lambda: source.status().reconnect_attempts >= 2, "retries against the closed port")
        assert source.status().state in (SourceState.RECONNECTING, SourceState.CONNECTING)
        with RtspServer(port=port, width=320, height=240, fps=15):
            reader.join(DEADLINE_S)
            assert got and source.status().state is SourceState.STREAMING


def test_udp_transport(server):
    config = SourceConfig(**{**FAST.__dict__, "transport": "udp"})
    with open_source(server.url, config) as source:
        frames = iter(source)
        first, second = next(frames), next(frames)
    assert second.pts > first.pts and first.image.shape == (240, 320, 3)


def test_server_serves_a_file_and_reports_bad_input(video_files):
    with RtspServer(source_file=video_files["mp4"][0], width=160, height=120, fps=30) as srv:
        with open_source(srv.url, FAST) as source:
            frame = next(iter(source))
        assert frame.image.shape == (120, 160, 3) and srv.running
    with pytest.raises(FileNotFoundError):
        RtspServer(source_file="/no/such/file.mp4")
    with RtspServer(width=160, height=120) as first:
        with pytest.raises(RtspServerError, match="exited|not listening"):
            RtspServer(port=first.port, width=160, height=120, start_timeout_s=1.0)
