"""The loopback RTSP server's readiness: once RtspServer returns, a real client can open the stream at once.

The first open of a file served over RTSP used to fail now and then on a loaded machine ("Invalid data"):
the server said ready when its port answered, and built its media inside the first client's DESCRIBE,
which FFmpeg gave up on after its read timeout.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from scenes.scene import SceneSpec, make_scene
from scenes.video import write_scene
from stream.config import SourceConfig
from stream.sources import open_source
from testkit.rtsp_server import RtspServer, RtspServerError, describe, rtsp_server_available
from tests.helpers import wait_for

AVAILABLE, WHY = rtsp_server_available()
pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(not AVAILABLE, reason=WHY or "no RTSP server")]

SPEC = SceneSpec(seed=7, seconds=3, width=160, height=120, fps=10)
CONFIG = SourceConfig(open_timeout_s=5.0, read_timeout_s=2.0)
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rtsp") / "scene.mp4"
    write_scene(path, SPEC)
    return path


def assert_describes(url: str, times: int) -> None:
    for _ in range(times):
        status, sdp = describe(url, timeout_s=5.0)
        assert status == 200 and "m=video" in sdp and "H264" in sdp, (status, sdp)


def read_frames(url: str, count: int) -> list:
    """The first ``count`` frames of one open of ``url`` (its first open: no retry on failure)."""
    with open_source(url, CONFIG) as source:
        frames = [frame for _, frame in zip(range(count), source)]
    assert len(frames) == count and frames[0].image.shape == (120, 160, 3)
    return frames


@pytest.mark.parametrize("kind", ["file", "pattern"])
def test_every_client_is_answered_at_once_from_ready_on(kind, scene_file):
    """Given a server that just said ready, when clients DESCRIBE and leave one after another (the
    readiness probe, a prober) and sources open, read and leave, then every DESCRIBE gets 200 and an H.264
    SDP and every first open reads frames. (The media used to be built in the first DESCRIBE, after
    ready, and torn down asynchronously as each last client left: one arriving then was answered 503.)"""
    source_file = scene_file if kind == "file" else None
    with RtspServer(source_file=source_file, width=160, height=120, fps=10) as server:
        assert_describes(server.url, 3)
        read_frames(server.url, 3)
        assert_describes(server.url, 3)
        read_frames(server.url, 1)


def test_a_file_played_to_its_end_is_served_again_to_the_reconnecting_source(scene_file):
    """The media is held for the server's life, and a file's end still ends it: the source, which takes the
    end of a live stream for a disconnect, reconnects and gets the file from its start again (the held
    media does not stay at its end, sending nothing)."""
    scene = make_scene(SPEC)
    renders = np.stack([scene.render(i / SPEC.fps) for i in range(SPEC.num_frames)]).astype(np.int16)
    config = SourceConfig(open_timeout_s=5.0, read_timeout_s=2.0, reconnect_initial_s=0.1, reconnect_max_s=0.5)
    indices: list[int] = []
    with RtspServer(source_file=scene_file, width=160, height=120, fps=10) as server:
        with open_source(server.url, config) as source:
            frames = iter(source)

            def read() -> None:  # next() blocks while the stream is down: read in a helper thread
                for frame in frames:
                    errors = np.abs(renders - frame.image.astype(np.int16)).mean(axis=(1, 2, 3))
                    indices.append(int(errors.argmin()) if errors.min() < 8 else -1)

            threading.Thread(target=read, daemon=True).start()
            wait_for(lambda: source.status().reconnects >= 1 and len(indices) >= 2 and indices[-1] < max(indices) - 5,
                     DEADLINE_S, "the file replayed from its start after the reconnect")
    assert -1 not in indices, indices  # every frame is one of the scene's


def test_a_file_that_cannot_be_served_fails_start_naming_the_media(tmp_path):
    """A file that is not video fails RtspServer itself (not a client later), with the reason, at once."""
    bad = tmp_path / "not-video.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(RtspServerError, match="exited with code 3: cannot build or preroll the media"):
        RtspServer(source_file=bad, width=160, height=120, fps=10)


def test_describe_names_what_it_got_from_something_that_is_not_rtsp():
    """describe() against a server that answers something other than RTSP: a ValueError naming both."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer_http() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer_http, daemon=True).start()
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/stream"
        with pytest.raises(ValueError, match="expected an RTSP status line, got b'HTTP/1.1 200 OK'$"):
            describe(url, timeout_s=5.0)
